// Atomic file writes: a reader either sees the old file or the complete new one, never a half.
// The bytes go to a temp file in the same folder (same file system, so rename is atomic), the
// file is fsynced, renamed over the target, and the folder is fsynced so the rename survives a
// power cut. A write that throws midway removes its temp file and leaves the target untouched.
// A system error (ENOSPC, EACCES, a folder in the way, ...) comes out as a FileWriteError
// (E_IO) whose message names the target file and whose `errnoCode` keeps the system code.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';

/**
 * A file system error while writing `path`, wrapped so the message names the file and says what
 * to do; `errnoCode` keeps the system code (ENOSPC, EACCES, ...) and `cause` the original error.
 */
export class FileWriteError extends PatentGPTError {
  readonly path: string;
  readonly errnoCode: string | undefined;
  constructor(target: string, err: NodeJS.ErrnoException) {
    const errno = typeof err.code === 'string' ? err.code : undefined;
    super('E_IO', `${target}: cannot write (${err.message})${adviceFor(errno)}`);
    this.name = 'FileWriteError';
    this.path = target;
    this.errnoCode = errno;
    this.cause = err;
  }
}

function adviceFor(errno: string | undefined): string {
  switch (errno) {
    case 'ENOSPC': case 'EDQUOT': return ': the disk (or quota) is full; free space or write elsewhere, then retry';
    case 'EACCES': case 'EPERM': return ': permission denied; check the rights on the file and its folder';
    case 'EROFS': return ': the file system is read-only; write elsewhere';
    case 'EISDIR': return ': a folder is in the way of the file; remove it or choose another path';
    case 'ENOTDIR': case 'EEXIST': return ': a file is in the way of a folder on the path; remove it or choose another path';
    case 'EMFILE': case 'ENFILE': return ': too many open files; raise the limit (ulimit -n) or close other programs';
    default: return '';
  }
}

/**
 * `err` as a FileWriteError naming `target` when it is a system error (has an errno code);
 * other errors (a PatentGPTError from the content, a bug) pass through unchanged.
 */
export function fileWriteError(target: string, err: unknown): unknown {
  if (err instanceof PatentGPTError) return err;
  const e = err as NodeJS.ErrnoException | null;
  if (e instanceof Error && typeof e.code === 'string' && (typeof e.syscall === 'string' || typeof e.errno === 'number'))
    return new FileWriteError(target, e);
  return err;
}

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
 * `target` (the file's path) names the file in a write error (a handle does not know its path).
 */
export async function writeContent(fh: fsp.FileHandle, content: FileContent, target?: string): Promise<WrittenFile> {
  if (target === undefined) return writeContentTo(fh, content);
  try {
    return await writeContentTo(fh, content);
  } catch (err) {
    throw fileWriteError(target, err);
  }
}

async function writeContentTo(fh: fsp.FileHandle, content: FileContent): Promise<WrittenFile> {
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
  try {
    return await writeFileAtomicUnwrapped(target, content);
  } catch (err) {
    throw fileWriteError(target, err);
  }
}

async function writeFileAtomicUnwrapped(target: string, content: FileContent): Promise<WrittenFile> {
  const dir = path.dirname(target);
  await fsp.mkdir(dir, { recursive: true });
  const tmp = tempPathFor(target);
  const fh = await fsp.open(tmp, 'wx');
  let written: WrittenFile;
  try {
    try {
      written = await writeContentTo(fh, content);
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
  try {
    writeFileAtomicSyncUnwrapped(target, content);
  } catch (err) {
    throw fileWriteError(target, err);
  }
}

function writeFileAtomicSyncUnwrapped(target: string, content: string | Uint8Array): void {
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
