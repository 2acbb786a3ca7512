// A decoder layer's pieces fused for decoding (inference only, not differentiable): the few rows
// of a decode step go through native/cpu/decode.cpp, one native call and one wake of the thread
// pool per piece instead of one per op, writing into caller-owned buffers (no allocation).
//   decodeQkv:       rmsnorm -> q, k, v projections -> RoPE -> k, v into the paged cache
//   decodeSwigluMlp: rmsnorm -> silu(gate) * up -> down, added into the residual
//   decodeLayer:     both, with paged attention and the output projection between them
// Each equals the composition of the separate ops (rmsnorm, linear, rope, pagedKvStore, swiglu,
// add) up to the GEMV's summation order.
import { PatentGPTError } from '../../errors.js';
import { addon, argIndex, packArgs, type AddonArgs } from '../../native/loader.js';
import { expectKernel, expectDType, expectSameDevice } from '../check.js';
import { Tensor } from '../tensor.js';

function expectShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  expectDType(op, name, t, 'f32');
  if (t.size !== shape.reduce((a, b) => a * b, 1) || t.shape[0] !== shape[0])
    throw new PatentGPTError('E_SHAPE', `${op}: ${name} ${t.describe()} must be (${shape.join(', ')})`);
}

export interface DecodeQkvInputs {
  /** Residual stream (M, C). */
  x: Tensor;
  /** input_layernorm weight (C) and epsilon. */
  normWeight: Tensor;
  eps: number;
  /** q_proj (H * D, C), k_proj and v_proj (Hkv * D, C) weights. */
  wq: Tensor;
  wk: Tensor;
  wv: Tensor;
  /** i32 (M): positions (RoPE) and cache slots (-1 skips the store). */
  positions: Tensor;
  slotMapping: Tensor;
  /** Caches (numBlocks, blockSize, Hkv, D). */
  kCache: Tensor;
  vCache: Tensor;
  rope: { theta: number; posScale: number };
}

export interface DecodeQkvOutputs {
  /** (M, H, D), (M, Hkv, D), (M, Hkv, D): written. */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** Scratch (M, C): receives the normed x. */
  h: Tensor;
}

/** Checks decodeQkv's tensors; returns its named arguments (shared with decodeLayer). */
function qkvArgs(op: string, inp: DecodeQkvInputs, out: DecodeQkvOutputs): AddonArgs['decodeQkv'] {
  const { x, kCache, vCache } = inp;
  expectSameDevice(op, { x, normWeight: inp.normWeight, wq: inp.wq, wk: inp.wk, wv: inp.wv, positions: inp.positions, slotMapping: inp.slotMapping, kCache, vCache, q: out.q, k: out.k, v: out.v, h: out.h });
  expectKernel(op, op as 'decodeQkv' | 'decodeLayer', x, inp.normWeight, inp.wq, inp.wk, inp.wv, kCache, vCache, out.q, out.k, out.v, out.h);
  const [M, C] = x.shape as [number, number];
  const [numBlocks, blockSize, Hkv, D] = kCache.shape as [number, number, number, number];
  if (kCache.shape.length !== 4 || vCache.shape.join() !== kCache.shape.join())
    throw new PatentGPTError('E_SHAPE', `${op}: kCache ${kCache.describe()} and vCache ${vCache.describe()} must be equal (numBlocks, blockSize, Hkv, D)`);
  const H = inp.wq.shape[0]! / D;
  expectShape(op, 'x', x, [M, C]);
  expectShape(op, 'normWeight', inp.normWeight, [C]);
  expectShape(op, 'wq', inp.wq, [H * D, C]);
  expectShape(op, 'wk', inp.wk, [Hkv * D, C]);
  expectShape(op, 'wv', inp.wv, [Hkv * D, C]);
  expectShape(op, 'q', out.q, [M, H, D]);
  expectShape(op, 'k', out.k, [M, Hkv, D]);
  expectShape(op, 'v', out.v, [M, Hkv, D]);
  expectShape(op, 'h', out.h, [M, C]);
  expectDType(op, 'positions', inp.positions, 'i32');
  expectDType(op, 'slotMapping', inp.slotMapping, 'i32');
  if (!Number.isInteger(H) || inp.positions.size !== M || inp.slotMapping.size !== M)
    throw new PatentGPTError('E_SHAPE', `${op}: wq ${inp.wq.describe()}, positions ${inp.positions.describe()} and slotMapping ${inp.slotMapping.describe()} do not fit x ${x.describe()} and head size ${D}`);
  return { q: out.q, k: out.k, v: out.v, h: out.h, kCache, vCache, x, normW: inp.normWeight, wq: inp.wq, wk: inp.wk, wv: inp.wv,
    pos: inp.positions, slotMapping: inp.slotMapping, M, C, H, Hkv, D, numBlocks, blockSize, eps: inp.eps,
    theta: inp.rope.theta, posScale: inp.rope.posScale };
}

/** q, k, v of M rows with RoPE, k and v also stored in the paged cache; writes into `out`. */
export function decodeQkv(inp: DecodeQkvInputs, out: DecodeQkvOutputs): void {
  addon().decodeQkv(...packArgs('decodeQkv', qkvArgs('decodeQkv', inp, out)));
}

export interface DecodeMlpWeights {
  /** post_attention_layernorm weight (C) and epsilon. */
  normWeight: Tensor;
  eps: number;
  /** gate_proj, up_proj (F, C) and down_proj (C, F). */
  gate: Tensor;
  up: Tensor;
  down: Tensor;
}

/**
 * x (M, C) += down(silu(gate(h)) * up(h)) with h = rmsnorm(x), in place. Scratch: h (M, C),
 * g and u (M, F).
 */
export function decodeSwigluMlp(x: Tensor, w: DecodeMlpWeights, scratch: { h: Tensor; g: Tensor; u: Tensor }): void {
  const op = 'decodeSwigluMlp';
  const [M, C, F] = checkMlp(op, x, w, scratch);
  expectKernel(op, 'decodeSwigluMlp', scratch.h);
  expectShape(op, 'h', scratch.h, [M, C]);
  addon().decodeSwigluMlp(...packArgs('decodeSwigluMlp', { x, h: scratch.h, g: scratch.g, u: scratch.u, normW: w.normWeight,
    wg: w.gate, wu: w.up, wd: w.down, M, C, F, eps: w.eps }));
}

/** Checks the MLP's weights and its g, u scratch against x; returns [M, C, F]. */
function checkMlp(op: string, x: Tensor, w: DecodeMlpWeights, scratch: { g: Tensor; u: Tensor }): [number, number, number] {
  expectSameDevice(op, { x, normWeight: w.normWeight, gate: w.gate, up: w.up, down: w.down, g: scratch.g, u: scratch.u });
  expectKernel(op, op as 'decodeSwigluMlp' | 'decodeLayer', x, w.normWeight, w.gate, w.up, w.down, scratch.g, scratch.u);
  const [M, C] = x.shape as [number, number];
  const F = w.gate.shape[0]!;
  expectShape(op, 'x', x, [M, C]);
  expectShape(op, 'normWeight', w.normWeight, [C]);
  expectShape(op, 'gate', w.gate, [F, C]);
  expectShape(op, 'up', w.up, [F, C]);
  expectShape(op, 'down', w.down, [C, F]);
  if (w.down.shape[1] !== F) throw new PatentGPTError('E_SHAPE', `${op}: down ${w.down.describe()} must be (${C}, ${F})`);
  expectShape(op, 'g', scratch.g, [M, F]);
  expectShape(op, 'u', scratch.u, [M, F]);
  return [M, C, F];
}

/** Where decodeLayer's attention reads the cache: as pagedAttention's inputs, all i32 tensors. */
export interface DecodeLayerAttention {
  /** (nseq, maxBlocks), (nseq + 1), (nseq): see PagedAttentionInputs. */
  blockTables: Tensor;
  maxBlocks: number;
  cuQ: Tensor;
  contextLens: Tensor;
  partitionSize: number;
  /** Partitions of the longest context: ceil(max(contextLens) / partitionSize). */
  maxPartitions: number;
  /** Logit scale (default 1 / sqrt(D)). */
  scale?: number;
}

export interface DecodeLayerScratch extends DecodeQkvOutputs {
  /** (M, H, D): the attention's output. */
  o: Tensor;
  /** (M, F) each: the MLP's gate and up. */
  g: Tensor;
  u: Tensor;
  /** (M, H, maxPartitions, D) and (M, H, maxPartitions, 2); unused (any tensor) when maxPartitions is 1. */
  partOut: Tensor;
  partStats: Tensor;
}

/** decodeLayer's inputs: decodeQkv's, the output projection, the feed-forward and the cache index. */
export type DecodeLayerInputs = DecodeQkvInputs & { wo: Tensor; mlp: DecodeMlpWeights; attention: DecodeLayerAttention };

/** Checks decodeLayer's tensors; returns its named arguments. */
function decodeLayerArgs(inp: DecodeLayerInputs, scratch: DecodeLayerScratch): AddonArgs['decodeLayer'] {
  const op = 'decodeLayer';
  const qkv = qkvArgs(op, inp, scratch);
  const [M, C, F] = checkMlp(op, inp.x, inp.mlp, scratch);
  const [H, D] = scratch.q.shape.slice(1) as [number, number];
  const at = inp.attention;
  expectSameDevice(op, { x: inp.x, wo: inp.wo, o: scratch.o, partOut: scratch.partOut, partStats: scratch.partStats, blockTables: at.blockTables, cuQ: at.cuQ, contextLens: at.contextLens });
  expectKernel(op, 'decodeLayer', inp.wo, scratch.o, scratch.partOut, scratch.partStats, at.blockTables, at.cuQ, at.contextLens);
  expectShape(op, 'wo', inp.wo, [C, H * D]);
  expectShape(op, 'o', scratch.o, [M, H, D]);
  for (const [name, t] of [['blockTables', at.blockTables], ['cuQ', at.cuQ], ['contextLens', at.contextLens]] as const) expectDType(op, name, t, 'i32');
  const nseq = at.contextLens.size;
  return { ...qkv, o: scratch.o, partOut: scratch.partOut, partStats: scratch.partStats, blockTables: at.blockTables,
    cuQ: at.cuQ, contextLens: at.contextLens, nseq, maxBlocks: at.maxBlocks, partitionSize: at.partitionSize,
    maxPartitions: at.maxPartitions, scale: at.scale ?? 1 / Math.sqrt(D), wo: inp.wo, g: scratch.g, u: scratch.u,
    mlpNormW: inp.mlp.normWeight, wg: inp.mlp.gate, wu: inp.mlp.up, wd: inp.mlp.down, F, mlpEps: inp.mlp.eps };
}

/**
 * A whole decoder layer with a SwiGLU feed-forward for M rows, in place on the residual x (M, C),
 * in one native call (one parallel region): decodeQkv, paged attention over the cache (the rows'
 * own keys and values included: they are stored first), x += o_proj(o), then decodeSwigluMlp.
 */
export function decodeLayer(inp: DecodeLayerInputs, scratch: DecodeLayerScratch): void {
  addon().decodeLayer(...packArgs('decodeLayer', decodeLayerArgs(inp, scratch)));
}

// Where a step's sizes sit in decodeLayer's positional arguments, from its declaration (bindings/gemv.cpp).
const LAYER_ROWS = argIndex('decodeLayer', 'M'), LAYER_SEQS = argIndex('decodeLayer', 'nseq');
const LAYER_PARTITIONS = argIndex('decodeLayer', 'maxPartitions');

/**
 * decodeLayer checked once, for inputs and scratch of `capacity` rows, `capacity` sequences and
 * `attention.maxPartitions` partitions; the returned call runs a step of fewer (M rows of nseq
 * sequences, needing `partitions`), the index tensors holding them at their start. A decode
 * step then costs one native call per layer and no checks or objects in JavaScript (the native
 * side still checks every range and index).
 */
export function prepareDecodeLayer(inp: DecodeLayerInputs, scratch: DecodeLayerScratch): (M: number, nseq: number, partitions: number) => void {
  const named = decodeLayerArgs(inp, scratch);
  const [rows, seqs, partitions] = [named.M, named.nseq, named.maxPartitions];
  const args = packArgs('decodeLayer', named); // built once; a step only writes its three sizes
  const slots = args as unknown as number[];
  return (M, nseq, p) => {
    if (M > rows! || nseq > seqs! || p > partitions!)
      throw new PatentGPTError('E_SHAPE', `decodeLayer: a step of ${M} rows, ${nseq} sequences and ${p} partitions exceeds the prepared ${rows}, ${seqs} and ${partitions}`);
    slots[LAYER_ROWS] = M;
    slots[LAYER_SEQS] = nseq;
    slots[LAYER_PARTITIONS] = p;
    addon().decodeLayer(...args);
  };
}

/** y (M, N) += x (M, K) @ weight (N, K)^T in place (a projection added into the residual). */
export function addLinear(y: Tensor, x: Tensor, weight: Tensor): void {
  const op = 'addLinear';
  expectSameDevice(op, { y, x, weight });
  expectKernel(op, 'gemv', y, x, weight);
  const [N, K] = weight.shape as [number, number];
  const M = x.shape[0]!;
  expectShape(op, 'weight', weight, [N, K]);
  expectShape(op, 'x', x, [M, K]);
  expectShape(op, 'y', y, [M, N]);
  addon().gemv(y.storage, y.offset, x.storage, x.offset, weight.storage, weight.offset, M, N, K, true);
}

/** Checks decodeLogits' tensors; returns its named arguments. */
function decodeLogitsArgs(logits: Tensor, x: Tensor, norm: { weight: Tensor; eps: number }, weight: Tensor, h: Tensor): AddonArgs['decodeLogits'] {
  const op = 'decodeLogits';
  expectSameDevice(op, { logits, x, normWeight: norm.weight, weight, h });
  expectKernel(op, 'decodeLogits', logits, x, norm.weight, weight, h);
  const [V, C] = weight.shape as [number, number];
  const M = x.shape[0]!;
  expectShape(op, 'weight', weight, [V, C]);
  expectShape(op, 'x', x, [M, C]);
  expectShape(op, 'normWeight', norm.weight, [C]);
  expectShape(op, 'h', h, [M, C]);
  expectShape(op, 'logits', logits, [M, V]);
  return { logits, h, x, normW: norm.weight, w: weight, M, C, V, eps: norm.eps };
}

/**
 * The language-model head of M rows into existing buffers: logits (M, V) = rmsnorm(x (M, C),
 * normWeight, eps) @ weight (V, C)^T, with h (M, C) as scratch for the normed rows.
 */
export function decodeLogits(logits: Tensor, x: Tensor, norm: { weight: Tensor; eps: number }, weight: Tensor, h: Tensor): void {
  addon().decodeLogits(...packArgs('decodeLogits', decodeLogitsArgs(logits, x, norm, weight, h)));
}

const LOGITS_ROWS = argIndex('decodeLogits', 'M');

/** decodeLogits checked once for buffers of `capacity` rows; the returned call runs the first M. */
export function prepareDecodeLogits(logits: Tensor, x: Tensor, norm: { weight: Tensor; eps: number }, weight: Tensor, h: Tensor): (M: number) => void {
  const named = decodeLogitsArgs(logits, x, norm, weight, h);
  const rows = named.M;
  const args = packArgs('decodeLogits', named);
  const slots = args as unknown as number[];
  return (M) => {
    if (M > rows) throw new PatentGPTError('E_SHAPE', `decodeLogits: ${M} rows exceed the prepared ${rows}`);
    slots[LOGITS_ROWS] = M;
    addon().decodeLogits(...args);
  };
}
