// Row movement along the first dimension: copyRows (a block of rows from one tensor into
// another, in place: cache blocks, pieces of a step's output) and gatherRows (rows at i32 ids,
// differentiable in the source; the embedding lookup is its rank-2 case). prepareGatherRows
// checks a gather once for buffers reused across decode steps. These are the only row copies
// outside src/tensor's internals: callers never touch a tensor's storage.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectSameDevice } from '../check.js';
import { bytesPerElement } from '../dtype.js';
import { Tensor } from '../tensor.js';

/** Elements of one first-dimension row (the product of the other dimensions). */
function rowSize(op: string, name: string, t: Tensor): number {
  if (t.shape.length === 0) throw new PatentGPTError('E_SHAPE', `${op}: ${name} ${t.describe()} has no rows (a scalar)`);
  let n = 1;
  for (let i = 1; i < t.shape.length; i++) n *= t.shape[i]!;
  return n;
}

/**
 * dst rows [dstRow, dstRow + n) = src rows [srcRow, srcRow + n), in place (not recorded for
 * autograd). Same dtype, device and row shape; the ranges may lie in one tensor (overlap is
 * handled as memmove).
 */
export function copyRows(dst: Tensor, dstRow: number, src: Tensor, srcRow: number, n: number): void {
  const op = 'copyRows';
  expectSameDevice(op, { dst, src });
  if (dst.dtype !== src.dtype) throw new PatentGPTError('E_DTYPE', `${op}: dst ${dst.describe()} and src ${src.describe()} differ in dtype`);
  const row = rowSize(op, 'dst', dst);
  if (rowSize(op, 'src', src) !== row || dst.shape.slice(1).join() !== src.shape.slice(1).join())
    throw new PatentGPTError('E_SHAPE', `${op}: rows of dst ${dst.describe()} and src ${src.describe()} differ in shape`);
  for (const [name, at, t] of [['dstRow', dstRow, dst], ['srcRow', srcRow, src]] as const)
    if (!Number.isInteger(at) || !Number.isInteger(n) || at < 0 || n < 0 || at + n > t.shape[0]!)
      throw new PatentGPTError('E_SHAPE', `${op}: ${n} rows from ${name} ${at} fall outside ${t.describe()}`);
  const b = bytesPerElement(dst.dtype) * row;
  dst.storage.copyFrom(src.storage, dst.byteOffset + dstRow * b, src.byteOffset + srcRow * b, n * b);
}

/**
 * src[ids]: rows of src (R, ...) at i32 ids (n) -> (n, ...). Throws naming the first id outside
 * [0, R). Gradients flow to src (scatter-add, deterministic for repeated ids), not to the ids.
 */
export function gatherRows(src: Tensor, ids: Tensor): Tensor {
  const op = 'gatherRows';
  expectDType(op, 'ids', ids, 'i32');
  expectDType(op, 'src', src, 'f32');
  expectSameDevice(op, { src, ids });
  expectKernel(op, ['embeddingForward', 'embeddingBackward'], src, ids);
  const C = rowSize(op, 'src', src);
  const R = src.shape[0]!;
  const out = Tensor.empty([...ids.shape, ...src.shape.slice(1)], { like: src });
  try {
    addon().embeddingForward(out.storage, out.offset, ids.storage, ids.offset, src.storage, src.offset, ids.size, R, C);
  } catch (err) {
    out.dispose();
    throw err;
  }
  return record(op, out, [ids, src], [ids], (g) => {
    const dsrc = Tensor.zeros(src.shape, { like: src });
    addon().embeddingBackward(dsrc.storage, dsrc.offset, g.storage, g.offset, ids.storage, ids.offset, ids.size, R, C);
    return [null, dsrc];
  });
}

/**
 * gatherRows into an existing buffer, checked once: out (capacity, ...) rows [0, n) = src[ids[0..n)]
 * for the n of each call (n <= the capacity of out and ids). Not recorded; one native call per
 * use and no allocation (the native side still checks every id against src's rows).
 */
export function prepareGatherRows(out: Tensor, src: Tensor, ids: Tensor): (n: number) => void {
  const op = 'gatherRows';
  expectDType(op, 'ids', ids, 'i32');
  expectDType(op, 'src', src, 'f32');
  expectDType(op, 'out', out, 'f32');
  expectSameDevice(op, { out, src, ids });
  expectKernel(op, 'embeddingForward', out, src, ids);
  const C = rowSize(op, 'src', src);
  if (rowSize(op, 'out', out) !== C) throw new PatentGPTError('E_SHAPE', `${op}: rows of out ${out.describe()} and src ${src.describe()} differ in size`);
  const R = src.shape[0]!;
  const capacity = Math.min(out.shape[0]!, ids.size);
  const [o, oo, i, io, s, so] = [out.storage, out.offset, ids.storage, ids.offset, src.storage, src.offset];
  return (n) => {
    if (!(n >= 0 && n <= capacity)) throw new PatentGPTError('E_SHAPE', `${op}: ${n} rows exceed the prepared ${capacity}`);
    addon().embeddingForward(o, oo, i, io, s, so, n, R, C);
  };
}
