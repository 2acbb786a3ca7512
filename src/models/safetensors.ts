// Hugging Face safetensors, read and written without Python: an 8-byte little-endian header
// size, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__}, then the
// raw little-endian tensor data. Reading checks the whole layout before any data is used (a
// truncated or corrupt file is refused with its name); floats of any of F32/BF16/F16/F64 become
// f32 tensors. Writing is atomic: a temporary file in the same folder, fsync, rename, fsync of
// the folder; a system error while writing (ENOSPC, ...) is an E_IO error naming the file.
import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { Tensor, numel } from '../tensor/index.js';
import { fileWriteError } from '../util/atomic.js';
import { checkTensorFits } from './limits.js';

/** Element types of the format that we read; we write F32, BF16 and F16. */
export type SafeDType = 'F64' | 'F32' | 'BF16' | 'F16' | 'I64' | 'I32';
export type WriteDType = 'f32' | 'bf16' | 'f16';

const BYTES: Record<SafeDType, number> = { F64: 8, F32: 4, BF16: 2, F16: 2, I64: 8, I32: 4 };
const TO_SAFE: Record<WriteDType, SafeDType> = { f32: 'F32', bf16: 'BF16', f16: 'F16' };
/** The format's own limit on the header (100 MB). */
const MAX_HEADER = 100_000_000;
/** Bytes per read/write call (fs calls take at most 2 GiB). */
const IO_CHUNK = 1 << 30;

if (endianness() !== 'LE') throw new PatentGPTError('E_UNSUPPORTED', 'safetensors: this machine is big-endian; the format is little-endian');

export interface TensorEntry {
  name: string;
  dtype: SafeDType;
  shape: number[];
  /** Byte range in the data section, relative to its start. */
  begin: number;
  end: number;
}

function corrupt(file: string, message: string): never {
  throw new PatentGPTError('E_FORMAT', `${file}: not a valid safetensors file: ${message}`);
}

/** An open safetensors file whose header has been read and checked. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    /** Tensor entries in data order. */
    readonly entries: ReadonlyMap<string, TensorEntry>,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly dataStart: number,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw new PatentGPTError('E_FORMAT', `${path}: cannot open (${(err as Error).message})`);
    }
    try {
      const size = (await fh.stat()).size;
      if (size < 8) corrupt(path, `the file is ${size} bytes, shorter than the 8-byte header size`);
      const head = Buffer.alloc(8);
      await readFully(fh, head, 0, path);
      const n = head.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER)) corrupt(path, `header size ${n} exceeds the format's limit of ${MAX_HEADER} bytes`);
      const headerLen = Number(n);
      if (8 + headerLen > size) corrupt(path, `header of ${headerLen} bytes runs past the end of the ${size}-byte file (truncated?)`);
      const hb = Buffer.alloc(headerLen);
      await readFully(fh, hb, 8, path);
      let header: unknown;
      try {
        header = JSON.parse(hb.toString('utf8'));
      } catch (err) {
        corrupt(path, `header is not JSON (${(err as Error).message})`);
      }
      if (header === null || typeof header !== 'object' || Array.isArray(header)) corrupt(path, 'header is not a JSON object');
      const { entries, metadata, dataLength } = parseHeader(header as Record<string, unknown>, path);
      const actual = size - 8 - headerLen;
      if (actual !== dataLength)
        corrupt(path, `the header describes ${dataLength} bytes of tensor data but the file holds ${actual}${actual < dataLength ? ' (truncated)' : ''}`);
      return new SafetensorsFile(path, fh, entries, metadata, 8 + headerLen);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** The tensor `name` as f32 (floats) or i32/i64 (integers), shape as stored. */
  async read(name: string): Promise<Tensor> {
    const e = this.entries.get(name);
    if (!e) throw new PatentGPTError('E_FORMAT', `${this.path}: no tensor "${name}"`);
    checkTensorFits(name, e.shape, this.path, BYTES[e.dtype]);
    const count = numel(e.shape);
    const pos = this.dataStart + e.begin;
    switch (e.dtype) {
      case 'F32': {
        const a = new Float32Array(count);
        await readFully(this.fh, new Uint8Array(a.buffer), pos, this.path);
        return Tensor.from(a, e.shape);
      }
      case 'BF16':
      case 'F16': {
        const a = new Uint16Array(count);
        await readFully(this.fh, new Uint8Array(a.buffer), pos, this.path);
        const half = Tensor.empty(e.shape, { dtype: e.dtype === 'BF16' ? 'bf16' : 'f16' }).write(a);
        const f = half.to('f32');
        half.dispose();
        return f;
      }
      case 'F64': {
        const a = new Float64Array(count);
        await readFully(this.fh, new Uint8Array(a.buffer), pos, this.path);
        return Tensor.from(Float32Array.from(a), e.shape);
      }
      case 'I32': {
        const a = new Int32Array(count);
        await readFully(this.fh, new Uint8Array(a.buffer), pos, this.path);
        return Tensor.from(a, e.shape, { dtype: 'i32' });
      }
      case 'I64': {
        const a = new BigInt64Array(count);
        await readFully(this.fh, new Uint8Array(a.buffer), pos, this.path);
        return Tensor.from(a, e.shape, { dtype: 'i64' });
      }
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function parseHeader(h: Record<string, unknown>, path: string) {
  const metadata: Record<string, string> = {};
  const list: TensorEntry[] = [];
  for (const [name, v] of Object.entries(h)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) corrupt(path, '__metadata__ is not an object');
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== 'string') corrupt(path, `__metadata__.${k} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    if (v === null || typeof v !== 'object') corrupt(path, `entry "${name}" is not an object`);
    const { dtype, shape, data_offsets: off } = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !(dtype in BYTES))
      corrupt(path, `tensor "${name}" has dtype ${JSON.stringify(dtype)}; readable: ${Object.keys(BYTES).join(', ')}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      corrupt(path, `tensor "${name}" has shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[1] < off[0])
      corrupt(path, `tensor "${name}" has data_offsets ${JSON.stringify(off)}`);
    const bytes = numel(shape as number[]) * BYTES[dtype as SafeDType];
    if (off[1] - off[0] !== bytes)
      corrupt(path, `tensor "${name}" (${dtype} [${(shape as number[]).join(', ')}]) needs ${bytes} bytes, its data_offsets span ${off[1] - off[0]}`);
    list.push({ name, dtype: dtype as SafeDType, shape: shape as number[], begin: off[0], end: off[1] });
  }
  list.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of list) {
    if (e.begin !== at) corrupt(path, `tensor "${e.name}" starts at byte ${e.begin} of the data, expected ${at} (overlap or hole)`);
    at = e.end;
  }
  return { entries: new Map(list.map((e) => [e.name, e])), metadata, dataLength: at };
}

async function readFully(fh: FileHandle, into: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(IO_CHUNK, into.length - done);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0) corrupt(path, `unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Every tensor of a file (floats as f32). */
export async function readSafetensors(path: string): Promise<Map<string, Tensor>> {
  const f = await SafetensorsFile.open(path);
  const out = new Map<string, Tensor>();
  try {
    for (const name of f.entries.keys()) out.set(name, await f.read(name));
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  } finally {
    await f.close();
  }
  return out;
}

// ---- writing ----

export interface WriteOptions {
  /** On-disk dtype of float tensors (default f32). Integer tensors are written as they are. */
  dtype?: WriteDType;
  /** String metadata; format: "pt" is always set (transformers checks it). */
  metadata?: Record<string, string>;
}

/** Raw bytes of one tensor in the on-disk dtype. */
function tensorBytes(t: Tensor, dtype: WriteDType): { bytes: Uint8Array; safe: SafeDType } {
  if (t.dtype === 'i32' || t.dtype === 'i64') {
    const raw = t.toRaw();
    return { bytes: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), safe: t.dtype === 'i32' ? 'I32' : 'I64' };
  }
  const converted = t.dtype === dtype ? null : t.to(dtype);
  try {
    const raw = (converted ?? t).toRaw();
    return { bytes: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), safe: TO_SAFE[dtype] };
  } finally {
    converted?.dispose();
  }
}

function safeDTypeOf(t: Tensor, dtype: WriteDType): SafeDType {
  if (t.dtype === 'i32') return 'I32';
  if (t.dtype === 'i64') return 'I64';
  return TO_SAFE[dtype];
}

/** A temporary sibling path: same folder, so rename() is atomic. */
export function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** fsync of a folder, so a rename inside it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `data` to `path` atomically (temp file, fsync, rename, fsync of the folder). */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await writeAtomic(path, async (fh) => {
    await fh.writeFile(data);
  });
}

async function writeAtomic(path: string, body: (fh: FileHandle) => Promise<void>): Promise<void> {
  try {
    await writeAtomicUnwrapped(path, body);
  } catch (err) {
    throw fileWriteError(path, err); // ENOSPC and friends name the file they were writing
  }
}

async function writeAtomicUnwrapped(path: string, body: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = tempPath(path);
  const fh = await open(tmp, 'wx', 0o644);
  try {
    await body(fh);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

/**
 * A safetensors file as streamed content (header first, then each tensor converted to `dtype`
 * one at a time): for writers that own the file handle, such as a training checkpoint.
 * `dataBytes` is the size of the data section.
 */
export function safetensorsContent(
  tensors: Iterable<readonly [string, Tensor]>, opts: WriteOptions = {},
): { dataBytes: number; write(sink: { write(chunk: Uint8Array): Promise<void> }): Promise<void> } {
  const dtype = opts.dtype ?? 'f32';
  if (!(dtype in TO_SAFE)) throw new PatentGPTError('E_ARGUMENT', `writeSafetensors: dtype must be f32, bf16 or f16, got ${String(dtype)}`);
  const list = [...tensors];
  const header: Record<string, unknown> = { __metadata__: { ...opts.metadata, format: 'pt' } };
  let at = 0;
  const names = new Set<string>();
  for (const [name, t] of list) {
    if (names.has(name)) throw new PatentGPTError('E_ARGUMENT', `writeSafetensors: tensor "${name}" appears twice`);
    if (name === '__metadata__') throw new PatentGPTError('E_ARGUMENT', 'writeSafetensors: "__metadata__" cannot name a tensor');
    names.add(name);
    const safe = safeDTypeOf(t, dtype);
    const bytes = t.size * BYTES[safe];
    header[name] = { dtype: safe, shape: [...t.shape], data_offsets: [at, at + bytes] };
    at += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8); // data starts 8-byte aligned
  const hb = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(hb.length));
  return {
    dataBytes: at,
    async write(sink) {
      await sink.write(prefix);
      await sink.write(hb);
      for (const [, t] of list) {
        const bytes = tensorBytes(t, dtype).bytes;
        for (let done = 0; done < bytes.length; done += IO_CHUNK) await sink.write(bytes.subarray(done, Math.min(bytes.length, done + IO_CHUNK)));
      }
    },
  };
}

/**
 * Writes tensors (in the given order) to one safetensors file, atomically. Float tensors are
 * converted to `dtype` one at a time, so memory stays at one tensor's copy. Returns the number
 * of data bytes written.
 */
export async function writeSafetensors(
  path: string, tensors: Iterable<readonly [string, Tensor]>, opts: WriteOptions = {},
): Promise<number> {
  const content = safetensorsContent(tensors, opts);
  await writeAtomic(path, async (fh) => {
    await content.write({ write: (chunk) => writeAll(fh, chunk) });
  });
  return content.dataBytes;
}

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await fh.write(data, done, Math.min(IO_CHUNK, data.length - done));
    done += bytesWritten;
  }
}

/** Size in bytes a tensor takes on disk in `dtype`. */
export function diskBytes(t: Tensor, dtype: WriteDType = 'f32'): number {
  return t.size * BYTES[safeDTypeOf(t, dtype)];
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
