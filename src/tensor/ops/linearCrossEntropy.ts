// The language-model head and its loss in one op: logits = h @ W^T, then softmax cross-entropy,
// computed chunk by chunk of rows so a (tokens x vocabulary) logits matrix never exists whole.
// With a 55K vocabulary and 16K tokens that matrix alone would be 3.6 GB; here the working set is
// one chunk. Gradients are computed during the forward pass (while each chunk's logits are at
// hand, in place) and scaled by the upstream gradient in backward.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { isGradEnabled, record } from '../autograd.js';
import { expectKernel, expectDType, expectRank, expectShape } from '../check.js';
import { gemmAtPrecision } from './matmul.js';
import { Tensor } from '../tensor.js';

export interface LinearCrossEntropyOptions {
  /** Targets equal to this are skipped (default -100, as in PyTorch). */
  ignoreIndex?: number;
  /** 'mean' over non-ignored targets (default) or 'sum'. */
  reduction?: 'mean' | 'sum';
  /** Rows per chunk; default keeps a chunk's logits near 16M floats (64 MiB). */
  chunkSize?: number;
}

/** Cross-entropy of (h @ weight^T) against targets: h (N, C), weight (V, C), targets i32 (N). */
export function linearCrossEntropy(h: Tensor, weight: Tensor, targets: Tensor, opts: LinearCrossEntropyOptions = {}): Tensor {
  const op = 'linearCrossEntropy';
  expectRank(op, 'h', h, 2);
  expectRank(op, 'weight', weight, 2);
  expectDType(op, 'h', h, 'f32');
  expectDType(op, 'weight', weight, 'f32');
  expectDType(op, 'targets', targets, 'i32');
  expectKernel(op, ['gemm', 'crossEntropyForward', 'crossEntropyBackward'], h, weight, targets);
  const [N, C] = h.shape as [number, number];
  const V = weight.shape[0]!;
  expectShape(op, 'weight', weight, [-1, C]);
  expectShape(op, 'targets', targets, [N]);
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sum')
    throw new PatentGPTError('E_ARGUMENT', `${op}: reduction must be 'mean' or 'sum', got '${String(reduction)}'`);
  const chunk = Math.max(1, Math.min(N, opts.chunkSize ?? Math.floor((1 << 24) / Math.max(1, V))));
  if (!Number.isInteger(chunk)) throw new PatentGPTError('E_ARGUMENT', `${op}: chunkSize must be an integer`);

  const targetValues = targets.toArray() as Int32Array;
  let count = 0;
  for (const t of targetValues) {
    if (t === ignoreIndex) continue;
    if (t < 0 || t >= V) throw new PatentGPTError('E_ARGUMENT', `${op}: target ${t} outside the vocabulary [0, ${V})`);
    count++;
  }
  const norm = reduction === 'mean' ? 1 / Math.max(1, count) : 1;
  const wantGrad = isGradEnabled() && (h.requiresGrad || weight.requiresGrad);

  const a = addon();
  // The LM head is the largest GEMM: it follows the matmul precision. Operands the precision
  // rounds are rounded once (h and W here, each chunk's dlogits below), not once per product.
  const { gemm, operand } = gemmAtPrecision(h);
  const H = operand(h), W = operand(weight);
  const logits = Tensor.empty([chunk, V], { device: h.device });
  const rowLoss = Tensor.empty([chunk], { device: h.device });
  const lse = Tensor.empty([chunk], { device: h.device });
  const dloss = wantGrad ? Tensor.full([chunk], norm, { device: h.device }) : null;
  const dh = wantGrad && h.requiresGrad ? Tensor.empty([N, C], { device: h.device }) : null;
  // dW is written by the first chunk's product (beta 0) and accumulated by the others.
  const dw = wantGrad && weight.requiresGrad ? Tensor.empty([V, C], { device: h.device }, N === 0) : null;
  let total = 0;
  try {
    for (let r0 = 0; r0 < N; r0 += chunk) {
      const n = Math.min(chunk, N - r0);
      const tOff = targets.offset + r0;
      // logits (n, V) = h[r0:r0+n] (n, C) @ W^T
      gemm(false, true, n, V, C, 1, H.storage, H.offset + r0 * C, C, 0, W.storage, W.offset, C, 0, 0, logits.storage, 0, V, 0, 1);
      a.crossEntropyForward(rowLoss.storage, 0, lse.storage, 0, logits.storage, 0, targets.storage, tOff, n, V, ignoreIndex);
      total += a.sum(rowLoss.storage, 0, n);
      if (!dloss) continue;
      // dlogits overwrite logits in place: the chunk's vocabulary-sized buffer is used once.
      a.crossEntropyBackward(logits.storage, 0, dloss.storage, 0, logits.storage, 0, lse.storage, 0, targets.storage, tOff, n, V, ignoreIndex);
      // dh (n, C) = dlogits @ W ; dW (V, C) += dlogits^T @ h
      const D = operand(logits);
      try {
        if (dh) gemm(false, false, n, C, V, 1, D.storage, D.offset, V, 0, W.storage, W.offset, C, 0, 0, dh.storage, r0 * C, C, 0, 1);
        if (dw) gemm(true, false, V, C, n, 1, D.storage, D.offset, V, 0, H.storage, H.offset + r0 * C, C, 0, r0 === 0 ? 0 : 1, dw.storage, 0, C, 0, 1);
      } finally {
        if (D !== logits) D.dispose();
      }
    }
  } finally {
    logits.dispose();
    rowLoss.dispose();
    lse.dispose();
    dloss?.dispose();
    if (H !== h) H.dispose();
    if (W !== weight) W.dispose();
  }
  const out = Tensor.full([], total * norm, { device: h.device });
  if (!wantGrad) return out;
  return record(op, out, [h, weight, targets], [dh, dw].filter((t): t is Tensor => t !== null), (g) => {
    // Backward runs once per recording, so the saved gradients are scaled in place and handed
    // on as views of the same storage (no copy of the (V, C) weight gradient).
    const s = g.item();
    const scaled = (t: Tensor | null): Tensor | null => {
      if (!t) return null;
      if (s !== 1) a.scale(t.storage, t.offset, s, t.size);
      return t.detach();
    };
    return [scaled(dh), scaled(dw), null];
  });
}
