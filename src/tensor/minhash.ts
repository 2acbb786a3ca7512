// Typed wrapper of the native MinHash kernel (native/cpu/minhash.cpp): packs texts into one byte
// batch with offsets, calls the addon once, returns the (N, P) signatures.
import { PatentGPTError } from '../errors.js';
import { addon } from './addon.js';

export interface MinhashParams {
  /** Number of hash permutations P (signature length). */
  permutations: number;
  /** Tokens per shingle k, in [1, 32]. */
  shingle: number;
  /** 'word': tokens are runs of non-space characters; 'char': code points (spaces skipped). */
  unit: 'word' | 'char';
  /** Seed of the permutation parameters: signatures are comparable only under the same seed. */
  seed: number;
}

const encoder = new TextEncoder();

/** Signatures of texts, row-major (N, P). Strings are encoded as UTF-8. */
export function minhashSignatures(texts: readonly (string | Uint8Array)[], p: MinhashParams): Uint32Array {
  if (!Number.isInteger(p.permutations) || p.permutations < 1 || p.permutations > 4096)
    throw new PatentGPTError('E_ARGUMENT', `minhash: permutations must be an integer in [1, 4096], got ${p.permutations}`);
  if (!Number.isInteger(p.shingle) || p.shingle < 1 || p.shingle > 32)
    throw new PatentGPTError('E_ARGUMENT', `minhash: shingle must be an integer in [1, 32], got ${p.shingle}`);
  if (p.unit !== 'word' && p.unit !== 'char') throw new PatentGPTError('E_ARGUMENT', `minhash: unit must be 'word' or 'char', got '${String(p.unit)}'`);
  if (!Number.isSafeInteger(p.seed)) throw new PatentGPTError('E_ARGUMENT', `minhash: seed must be a safe integer, got ${p.seed}`);
  const n = texts.length;
  let cap = 0;
  for (const t of texts) cap += typeof t === 'string' ? t.length * 3 : t.length;
  const bytes = new Uint8Array(cap);
  const offsets = new BigInt64Array(n + 1);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const t = texts[i]!;
    if (typeof t === 'string') at += encoder.encodeInto(t, bytes.subarray(at)).written;
    else {
      bytes.set(t, at);
      at += t.length;
    }
    offsets[i + 1] = BigInt(at);
  }
  const sig = new Uint32Array(n * p.permutations);
  addon().minhashSignatures(sig, bytes, offsets, n, p.permutations, p.shingle, p.unit === 'word' ? 0 : 1, p.seed);
  return sig;
}
