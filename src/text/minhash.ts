// Typed wrapper of the native MinHash kernel (native/cpu/minhash.cpp): packs texts into one byte
// batch with offsets, calls the addon once, returns the (N, P) signatures.
import { PatentGPTError } from '../errors.js';
import { addon } from '../native/loader.js';
import { packTexts } from './batch.js';

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


/** Signatures of texts, row-major (N, P). Strings are encoded as UTF-8. */
export function minhashSignatures(texts: readonly (string | Uint8Array)[], p: MinhashParams): Uint32Array {
  if (!Number.isInteger(p.permutations) || p.permutations < 1 || p.permutations > 4096)
    throw new PatentGPTError('E_ARGUMENT', `minhash: permutations must be an integer in [1, 4096], got ${p.permutations}`);
  if (!Number.isInteger(p.shingle) || p.shingle < 1 || p.shingle > 32)
    throw new PatentGPTError('E_ARGUMENT', `minhash: shingle must be an integer in [1, 32], got ${p.shingle}`);
  if (p.unit !== 'word' && p.unit !== 'char') throw new PatentGPTError('E_ARGUMENT', `minhash: unit must be 'word' or 'char', got '${String(p.unit)}'`);
  if (!Number.isSafeInteger(p.seed)) throw new PatentGPTError('E_ARGUMENT', `minhash: seed must be a safe integer, got ${p.seed}`);
  const n = texts.length;
  const { bytes, offsets } = packTexts(texts);
  const sig = new Uint32Array(n * p.permutations);
  addon().minhashSignatures(sig, bytes, offsets, n, p.permutations, p.shingle, p.unit === 'word' ? 0 : 1, p.seed);
  return sig;
}
