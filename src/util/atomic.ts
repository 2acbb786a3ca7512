// Atomic file writes: a reader either sees the old file or the complete new one, never a half.
// The bytes go to a temp file in the same folder (same file system, so rename is atomic), the
// file is fsynced, renamed over the target, and the folder is fsynced so the rename survives a
// power cut. A write that throws midway removes its temp file and leaves the target untouched.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where streamed bytes go: each chunk is written in order (and hashed when asked). */
export interface ByteSink {
  write(chunk: Uint8Array): Promise<void>;
}

/** The content of a file: its bytes, or a function that streams them into a sink. */
export type FileContent = string | Uint8Array | ((sink: ByteSink) => Promise<void>);

export interface WrittenFile {
  /** Bytes written. */
  size: number;
  /** Hex sha256 of the bytes written. */
  sha256: string;
}

/** A temp name next to `target` that no other writer picks (pid + random suffix), starting with '.'. */
export function tempPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** fsync a folder so a rename or create inside it is durable (a no-op where folders cannot be opened, e.g. Windows). */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close();
  }
}

/**
 * Writes `content` into an open handle, hashing as it goes; the handle is fsynced before return.
 * Used by writeFileAtomic and by the checkpoint writer (which renames a whole folder instead).
 */
export async function writeContent(fh: fsp.FileHandle, content: FileContent): Promise<WrittenFile> {
  const hash: Hash = createHash('sha256');
  let size = 0;
  const sink: ByteSink = {
    async write(chunk: Uint8Array): Promise<void> {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done);
        done += bytesWritten;
      }
      hash.update(chunk);
      size += chunk.byteLength;
    },
  };
  if (typeof content === 'string') await sink.write(Buffer.from(content, 'utf8'));
  else if (content instanceof Uint8Array) await sink.write(content);
  else await content(sink);
  await fh.sync();
  return { size, sha256: hash.digest('hex') };
}

/**
 * Writes `target` atomically (temp file in the same folder, fsync, rename, fsync folder).
 * Creates the folder when missing. On any error the temp file is removed and the error rethrown.
 */
export async function writeFileAtomic(target: string, content: FileContent): Promise<WrittenFile> {
  const dir = path.dirname(target);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = tempPathFor(target);
  const fh = await fsp.open(tmp, 'wx');
  let written: WrittenFile;
  try {
    try {
      written = await writeContent(fh, content);
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, target);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
  return written;
}

/** Synchronous twin of writeFileAtomic for small files (state, manifests) written from sync code. */
export function writeFileAtomicSync(target: string, content: string | Uint8Array): void {
  const dir = path.dirname(target);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = tempPathFor(target);
  const fd = fs.openSync(tmp, 'wx');
  try {
    try {
      const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
      let done = 0;
      while (done < buf.byteLength) done += fs.writeSync(fd, buf, done, buf.byteLength - done);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  try {
    const dfd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    // folders cannot be fsynced on every platform; the rename itself is still atomic
  }
}

/** Streams a file through sha256 (constant memory). */
export async function sha256File(file: string): Promise<WrittenFile> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return { size, sha256: hash.digest('hex') };
}
