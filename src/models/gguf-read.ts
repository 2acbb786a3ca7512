// A GGUF (v3) reader for the files exportGguf (src/export/gguf.ts) writes: metadata values, the tensor table (dims
// innermost first, GGML type, offset) and each tensor's bytes. It reads what the quantized model
// folder holds (patentgpt quantize), so only the types this package writes are sized: f32, f16,
// Q4_0, Q8_0, Q4_K. Truncated or foreign files are refused with E_FORMAT naming the file.
import { readFile } from 'node:fs/promises';
import { PatentGPTError } from '../errors.js';

export interface GgufTensorInfo {
  /** Dims innermost first (a matrix (rows, cols) is [cols, rows]). */
  dims: number[];
  /** GGML type id: 0 f32, 1 f16, 2 Q4_0, 8 Q8_0, 12 Q4_K. */
  type: number;
  /** Byte offset in the data section. */
  offset: number;
}

export interface GgufFile {
  path: string;
  kv: Map<string, unknown>;
  tensors: Map<string, GgufTensorInfo>;
  /** The bytes of tensor `name` (a view of the file). */
  bytes(name: string): Uint8Array;
}

/** Bytes of `n` elements (a multiple of the block) of GGML type `type`, or -1 for a type this reader does not know. */
export function ggmlTypeBytes(type: number, n: number): number {
  switch (type) {
    case 0: return 4 * n;
    case 1: // F16
    case 30: return 2 * n; // BF16
    case 2: return (n / 32) * 18;
    case 8: return (n / 32) * 34;
    case 12: return (n / 256) * 144;
    default: return -1;
  }
}

export async function readGgufFile(path: string): Promise<GgufFile> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw new PatentGPTError('E_IO', `${path}: cannot read the GGUF file (${(err as Error).message})`);
  }
  const bad = (why: string): PatentGPTError => new PatentGPTError('E_FORMAT', `${path}: not a GGUF file patentgpt can read (${why})`);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const need = (n: number): void => {
    if (o + n > bytes.length) throw bad('truncated');
  };
  const u32 = (): number => (need(4), (o += 4), v.getUint32(o - 4, true));
  const u64 = (): number => (need(8), (o += 8), Number(v.getBigUint64(o - 8, true)));
  const str = (): string => {
    const n = u64();
    need(n);
    o += n;
    return new TextDecoder().decode(bytes.subarray(o - n, o));
  };
  const value = (t: number): unknown => {
    switch (t) {
      case 0: case 1: return (need(1), bytes[o++]);
      case 2: case 3: return (need(2), (o += 2), v.getInt16(o - 2, true));
      case 4: return u32();
      case 5: return (need(4), (o += 4), v.getInt32(o - 4, true));
      case 6: return (need(4), (o += 4), v.getFloat32(o - 4, true));
      case 7: return (need(1), bytes[o++] === 1);
      case 8: return str();
      case 9: {
        const et = u32();
        const n = u64();
        const out: unknown[] = [];
        for (let i = 0; i < n; i++) out.push(value(et));
        return out;
      }
      case 10: case 11: return u64();
      case 12: return (need(8), (o += 8), v.getFloat64(o - 8, true));
      default: throw bad(`metadata value type ${t}`);
    }
  };
  need(8);
  if (new TextDecoder().decode(bytes.subarray(0, 4)) !== 'GGUF') throw bad('no GGUF magic');
  o = 4;
  const version = u32();
  if (version !== 3) throw bad(`version ${version}, expected 3`);
  const nt = u64(), nkv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nkv; i++) {
    const k = str();
    kv.set(k, value(u32()));
  }
  const tensors = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const dims = Array.from({ length: nd }, () => u64());
    tensors.set(name, { dims, type: u32(), offset: u64() });
  }
  const align = typeof kv.get('general.alignment') === 'number' ? (kv.get('general.alignment') as number) : 32;
  const dataStart = Math.ceil(o / align) * align;
  return {
    path, kv, tensors,
    bytes(name: string): Uint8Array {
      const t = tensors.get(name);
      if (!t) throw new PatentGPTError('E_FORMAT', `${path}: no tensor "${name}"`);
      const n = ggmlTypeBytes(t.type, t.dims.reduce((a, d) => a * d, 1));
      if (n < 0) throw new PatentGPTError('E_FORMAT', `${path}: tensor "${name}" has GGML type ${t.type}, which patentgpt does not read (f32, f16, q4_0, q8_0, q4_k)`);
      const start = dataStart + t.offset;
      if (start + n > bytes.length) throw bad(`tensor "${name}" runs past the end`);
      return bytes.subarray(start, start + n);
    },
  };
}
