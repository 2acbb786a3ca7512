// A decoder layer's pieces fused for decoding (inference only, not differentiable): the few rows
// of a decode step go through native/cpu/decode.cpp, one native call and one wake of the thread
// pool per piece instead of one per op, writing into caller-owned buffers (no allocation).
//   decodeQkv:       rmsnorm -> q, k, v projections -> RoPE -> k, v into the paged cache
//   decodeSwigluMlp: rmsnorm -> silu(gate) * up -> down, added into the residual
//   decodeLayer:     both, with paged attention and the output projection between them
//   decodeMoeFfn:    rmsnorm -> router, top-k, renormalise -> the chosen experts' SwiGLUs (and
//                    the shared experts'), weighted, added into the residual (SparseMoE)
//   decodeLayer with a DecodeMoeWeights feed-forward: decodeQkv, attention, then decodeMoeFfn
// Each equals the composition of the separate ops (rmsnorm, linear, rope, pagedKvStore, swiglu,
// moeRouter, moeGroupedMatmul, moeCombine, add) up to the GEMV's summation order. The projections
// of a dense layer and the head may be quantized (QuantizedMatrix: llama.cpp's Q8_0/Q4_0/Q4_K
// blocks, all of one type per call), read in place by the quantized GEMV (quantLinear's). The experts'
// weights are passed as a list of their own storages, read on every call: a prepared call sees
// an optimizer's in-place update, and only the chosen experts' matrices are read.
import { PatentGPTError } from '../../errors.js';
import { addon, argIndex, packArgs, type AddonArgs } from '../../native/loader.js';
import { expectKernel, expectDType, expectSameDevice } from '../check.js';
import { Tensor } from '../tensor.js';
import { tensorArgs } from './moe.js';
import { kvCacheDType } from './paged.js';
import { GGML_TYPE_ID, QuantizedMatrix } from './quant.js';

/** A projection's weight on the fused path: f32 (rows, cols), or llama.cpp's blocks of it. */
export type DecodeWeight = Tensor | QuantizedMatrix;

/** The tensor the native call reads for a weight (a quantized one's blocks). */
function weightTensor(w: DecodeWeight): Tensor {
  return w instanceof QuantizedMatrix ? w.data : w;
}

/** Checks a weight's (rows, cols): an f32 tensor's shape, or a quantized matrix's. */
function expectWeight(op: string, name: string, w: DecodeWeight, shape: readonly [number, number]): void {
  if (!(w instanceof QuantizedMatrix)) return expectShape(op, name, w, shape);
  if (w.rows !== shape[0] || w.cols !== shape[1])
    throw new PatentGPTError('E_SHAPE', `${op}: ${name} ${w.describe()} must be (${shape.join(', ')})`);
}

/** The GGML type id shared by the weights of one call (0: f32); mixed types are refused. */
function weightType(op: string, ws: Record<string, DecodeWeight>): number {
  const types = Object.entries(ws).map(([n, w]) => [n, w instanceof QuantizedMatrix ? w.type : 'f32'] as const);
  const first = types[0]![1];
  const other = types.find(([, t]) => t !== first);
  if (other)
    throw new PatentGPTError('E_DTYPE', `${op}: ${types[0]![0]} is ${first} but ${other[0]} is ${other[1]}: the weights of one fused call share one type`);
  return first === 'f32' ? 0 : GGML_TYPE_ID[first];
}

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
  wq: DecodeWeight;
  wk: DecodeWeight;
  wv: DecodeWeight;
  /** i32 (M): positions (RoPE) and cache slots (-1 skips the store). */
  positions: Tensor;
  slotMapping: Tensor;
  /** Caches (numBlocks, blockSize, Hkv, D) of f32, bf16 or f16 (stores round to it, attention widens it). */
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
  const wq = weightTensor(inp.wq), wk = weightTensor(inp.wk), wv = weightTensor(inp.wv);
  expectSameDevice(op, { x, normWeight: inp.normWeight, wq, wk, wv, positions: inp.positions, slotMapping: inp.slotMapping, kCache, vCache, q: out.q, k: out.k, v: out.v, h: out.h });
  expectKernel(op, op as 'decodeQkv' | 'decodeLayer', x, inp.normWeight, wq, wk, wv, kCache, vCache, out.q, out.k, out.v, out.h);
  const [M, C] = x.shape as [number, number];
  const [numBlocks, blockSize, Hkv, D] = kCache.shape as [number, number, number, number];
  if (kCache.shape.length !== 4 || vCache.shape.join() !== kCache.shape.join())
    throw new PatentGPTError('E_SHAPE', `${op}: kCache ${kCache.describe()} and vCache ${vCache.describe()} must be equal (numBlocks, blockSize, Hkv, D)`);
  const H = inp.wq.shape[0]! / D;
  expectShape(op, 'x', x, [M, C]);
  expectShape(op, 'normWeight', inp.normWeight, [C]);
  expectWeight(op, 'wq', inp.wq, [H * D, C]);
  expectWeight(op, 'wk', inp.wk, [Hkv * D, C]);
  expectWeight(op, 'wv', inp.wv, [Hkv * D, C]);
  expectShape(op, 'q', out.q, [M, H, D]);
  expectShape(op, 'k', out.k, [M, Hkv, D]);
  expectShape(op, 'v', out.v, [M, Hkv, D]);
  expectShape(op, 'h', out.h, [M, C]);
  expectDType(op, 'positions', inp.positions, 'i32');
  expectDType(op, 'slotMapping', inp.slotMapping, 'i32');
  if (!Number.isInteger(H) || inp.positions.size !== M || inp.slotMapping.size !== M)
    throw new PatentGPTError('E_SHAPE', `${op}: wq ${inp.wq.describe()}, positions ${inp.positions.describe()} and slotMapping ${inp.slotMapping.describe()} do not fit x ${x.describe()} and head size ${D}`);
  return { q: out.q, k: out.k, v: out.v, h: out.h, kCache, vCache, x, normW: inp.normWeight, wq, wk, wv,
    pos: inp.positions, slotMapping: inp.slotMapping, M, C, H, Hkv, D, numBlocks, blockSize, eps: inp.eps,
    theta: inp.rope.theta, posScale: inp.rope.posScale, wtype: weightType(op, { wq: inp.wq, wk: inp.wk, wv: inp.wv }),
    kvDtype: kvCacheDType(op, kCache, vCache) };
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
  gate: DecodeWeight;
  up: DecodeWeight;
  down: DecodeWeight;
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
    wg: weightTensor(w.gate), wu: weightTensor(w.up), wd: weightTensor(w.down), M, C, F, eps: w.eps,
    wtype: weightType(op, { gate: w.gate, up: w.up, down: w.down }) }));
}

/** Checks the MLP's weights and its g, u scratch against x; returns [M, C, F]. */
function checkMlp(op: string, x: Tensor, w: DecodeMlpWeights, scratch: { g: Tensor; u: Tensor }): [number, number, number] {
  const [gate, up, down] = [weightTensor(w.gate), weightTensor(w.up), weightTensor(w.down)];
  expectSameDevice(op, { x, normWeight: w.normWeight, gate, up, down, g: scratch.g, u: scratch.u });
  expectKernel(op, op as 'decodeSwigluMlp' | 'decodeLayer', x, w.normWeight, gate, up, down, scratch.g, scratch.u);
  const [M, C] = x.shape as [number, number];
  const F = w.gate.shape[0]!;
  expectShape(op, 'x', x, [M, C]);
  expectShape(op, 'normWeight', w.normWeight, [C]);
  expectWeight(op, 'gate', w.gate, [F, C]);
  expectWeight(op, 'up', w.up, [F, C]);
  expectWeight(op, 'down', w.down, [C, F]);
  if (w.down.shape[1] !== F) throw new PatentGPTError('E_SHAPE', `${op}: down ${w.down.describe()} must be (${C}, ${F})`);
  expectShape(op, 'g', scratch.g, [M, F]);
  expectShape(op, 'u', scratch.u, [M, F]);
  return [M, C, F];
}

/** One SwiGLU expert of a sparse MoE (Mixtral's names): w2(silu(w1 x) * w3 x). */
export interface DecodeExpertWeights {
  /** (F, C) gate, (F, C) up, (C, F) down. */
  w1: Tensor;
  w3: Tensor;
  w2: Tensor;
}

/** A sparse MoE feed-forward (SparseMoE) as the fused decode path takes it. */
export interface DecodeMoeWeights {
  /** post_attention_layernorm weight (C) and epsilon. */
  normWeight: Tensor;
  eps: number;
  /** The router's weight (E, C) and the experts per token. */
  router: Tensor;
  topK: number;
  /** The E routed experts, and the shared experts every row goes through (unweighted). */
  experts: readonly DecodeExpertWeights[];
  shared: readonly DecodeExpertWeights[];
}

/** The experts' matrices in the order the native call reads them: routed then shared, each w1, w3, w2. */
export function moeExpertTensors(w: Pick<DecodeMoeWeights, 'experts' | 'shared'>): Tensor[] {
  return [...w.experts, ...w.shared].flatMap((e) => [e.w1, e.w3, e.w2]);
}

/** Whether a layer's feed-forward is a sparse MoE (else a SwiGLU MLP). */
export function isMoeWeights(w: DecodeMlpWeights | DecodeMoeWeights): w is DecodeMoeWeights {
  return 'experts' in w;
}

/** Scratch of the MoE feed-forward for M rows: f32 and i32 buffers of these sizes (native/cpu/decode.cpp). */
export function decodeMoeScratchSize(M: number, C: number, F: number, E: number, k: number, S: number): { floats: number; ints: number } {
  const Mk = M * k, R = Mk + S * M; // routed slots, then the shared experts' rows
  return { floats: M * E + Mk + Mk * C + 2 * R * F + R * C, ints: 3 * Mk + E + 1 };
}

/** The MoE feed-forward's scratch: f32 and i32 vectors of decodeMoeScratchSize. */
export interface DecodeMoeScratch {
  scratch: Tensor;
  index: Tensor;
}

/** Checks a MoE feed-forward's weights and scratch against x; returns its named arguments (without x, h). */
function moeArgs(op: string, x: Tensor, w: DecodeMoeWeights, s: DecodeMoeScratch): {
  scratch: Tensor; index: Tensor; normW: Tensor; gate: Tensor; experts: ReturnType<typeof tensorArgs>; F: number; E: number; topK: number; S: number; eps: number;
} {
  const all = moeExpertTensors(w);
  expectSameDevice(op, { x, normWeight: w.normWeight, router: w.router, scratch: s.scratch, index: s.index, ...Object.fromEntries(all.map((t, i) => [`expert weight ${i}`, t])) });
  expectKernel(op, op as 'decodeMoeFfn' | 'decodeLayerMoe', x, w.normWeight, w.router, s.scratch, s.index, ...all);
  const [M, C] = x.shape as [number, number];
  const E = w.experts.length, S = w.shared.length, k = w.topK;
  if (E < 1 || !Number.isInteger(k) || k < 1 || k > E)
    throw new PatentGPTError('E_ARGUMENT', `${op}: topK = ${k} must be an integer in [1, ${E}] (the routed experts)`);
  const F = w.experts[0]!.w1.shape[0]!;
  expectShape(op, 'normWeight', w.normWeight, [C]);
  expectShape(op, 'router', w.router, [E, C]);
  [...w.experts, ...w.shared].forEach((e, i) => {
    expectShape(op, `expert ${i} w1`, e.w1, [F, C]);
    expectShape(op, `expert ${i} w3`, e.w3, [F, C]);
    expectShape(op, `expert ${i} w2`, e.w2, [C, F]);
    if (e.w2.shape[1] !== F) throw new PatentGPTError('E_SHAPE', `${op}: expert ${i} w2 ${e.w2.describe()} must be (${C}, ${F})`);
  });
  const need = decodeMoeScratchSize(M, C, F, E, k, S);
  expectDType(op, 'scratch', s.scratch, 'f32');
  expectDType(op, 'index', s.index, 'i32');
  if (s.scratch.size < need.floats || s.index.size < need.ints)
    throw new PatentGPTError('E_SHAPE', `${op}: scratch ${s.scratch.describe()} and index ${s.index.describe()} must hold ${need.floats} and ${need.ints} elements for ${M} rows (decodeMoeScratchSize)`);
  return { scratch: s.scratch, index: s.index, normW: w.normWeight, gate: w.router, experts: tensorArgs(all), F, E, topK: k, S, eps: w.eps };
}

/**
 * x (M, C) += SparseMoE(rmsnorm(x)) in place, in one native call: router logits, each row's top-k
 * experts (moeRouter's rule: ties to the lower id, NaN first) renormalised, the rows grouped by
 * expert, each chosen expert's SwiGLU over its rows (only its weights read), the weighted sum
 * plus every shared expert's output. Scratch: h (M, C) and a DecodeMoeScratch for M rows.
 */
export function decodeMoeFfn(x: Tensor, w: DecodeMoeWeights, scratch: DecodeMoeScratch & { h: Tensor }): void {
  const op = 'decodeMoeFfn';
  const named = moeArgs(op, x, w, scratch);
  const [M, C] = x.shape as [number, number];
  expectShape(op, 'x', x, [M, C]);
  expectShape(op, 'h', scratch.h, [M, C]);
  expectSameDevice(op, { x, h: scratch.h });
  addon().decodeMoeFfn(...packArgs('decodeMoeFfn', { x, h: scratch.h, ...named, M, C }));
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
  /** (M, F) each: the MLP's gate and up (unused with a MoE feed-forward). */
  g: Tensor;
  u: Tensor;
  /** The MoE feed-forward's scratch (decodeMoeScratchSize); needed with one. */
  moe?: DecodeMoeScratch;
  /** (M, H, maxPartitions, D) and (M, H, maxPartitions, 2); unused (any tensor) when maxPartitions is 1. */
  partOut: Tensor;
  partStats: Tensor;
}

/**
 * decodeLayer's inputs: decodeQkv's, the output projection, the feed-forward (a SwiGLU MLP or a
 * sparse MoE) and the cache index.
 */
export type DecodeLayerInputs = DecodeQkvInputs & { wo: DecodeWeight; mlp: DecodeMlpWeights | DecodeMoeWeights; attention: DecodeLayerAttention };

/** Checks the attention part of decodeLayer(Moe)'s tensors; returns its named arguments. */
function attentionArgs(op: 'decodeLayer' | 'decodeLayerMoe', inp: DecodeLayerInputs, scratch: DecodeLayerScratch) {
  const qkv = qkvArgs(op, inp, scratch);
  const [M, C] = inp.x.shape as [number, number];
  const [H, D] = scratch.q.shape.slice(1) as [number, number];
  const at = inp.attention;
  const wo = weightTensor(inp.wo);
  expectSameDevice(op, { x: inp.x, wo, o: scratch.o, partOut: scratch.partOut, partStats: scratch.partStats, blockTables: at.blockTables, cuQ: at.cuQ, contextLens: at.contextLens });
  expectKernel(op, 'decodeLayer', wo, scratch.o, scratch.partOut, scratch.partStats, at.blockTables, at.cuQ, at.contextLens);
  expectWeight(op, 'wo', inp.wo, [C, H * D]);
  expectShape(op, 'o', scratch.o, [M, H, D]);
  for (const [name, t] of [['blockTables', at.blockTables], ['cuQ', at.cuQ], ['contextLens', at.contextLens]] as const) expectDType(op, name, t, 'i32');
  const nseq = at.contextLens.size;
  return { ...qkv, o: scratch.o, partOut: scratch.partOut, partStats: scratch.partStats, blockTables: at.blockTables,
    cuQ: at.cuQ, contextLens: at.contextLens, nseq, maxBlocks: at.maxBlocks, partitionSize: at.partitionSize,
    maxPartitions: at.maxPartitions, scale: at.scale ?? 1 / Math.sqrt(D), wo };
}

/** Checks decodeLayer's tensors (a SwiGLU feed-forward); returns its named arguments. */
function decodeLayerArgs(inp: DecodeLayerInputs & { mlp: DecodeMlpWeights }, scratch: DecodeLayerScratch): AddonArgs['decodeLayer'] {
  const op = 'decodeLayer';
  const F = checkMlp(op, inp.x, inp.mlp, scratch)[2];
  const m = inp.mlp;
  const wtype = weightType(op, { wq: inp.wq, wk: inp.wk, wv: inp.wv, wo: inp.wo, gate: m.gate, up: m.up, down: m.down });
  return { ...attentionArgs(op, inp, scratch), g: scratch.g, u: scratch.u, mlpNormW: m.normWeight, wg: weightTensor(m.gate),
    wu: weightTensor(m.up), wd: weightTensor(m.down), F, mlpEps: m.eps, wtype };
}

/** Checks decodeLayerMoe's tensors (a sparse MoE feed-forward); returns its named arguments. */
function decodeLayerMoeArgs(inp: DecodeLayerInputs & { mlp: DecodeMoeWeights }, scratch: DecodeLayerScratch): AddonArgs['decodeLayerMoe'] {
  const op = 'decodeLayerMoe';
  if (!scratch.moe) throw new PatentGPTError('E_ARGUMENT', `${op}: a MoE feed-forward needs scratch.moe (decodeMoeScratchSize)`);
  if (weightType(op, { wq: inp.wq, wk: inp.wk, wv: inp.wv, wo: inp.wo }) !== 0)
    throw new PatentGPTError('E_UNSUPPORTED', `${op}: a sparse MoE layer runs f32 projections only (quantize dense models)`);
  const m = moeArgs(op, inp.x, inp.mlp, scratch.moe);
  return { ...attentionArgs(op, inp, scratch), moeScratch: m.scratch, moeIndex: m.index, moeNormW: m.normW, gate: m.gate,
    experts: m.experts, F: m.F, E: m.E, topK: m.topK, S: m.S, moeEps: m.eps };
}

/**
 * A whole decoder layer for M rows, in place on the residual x (M, C), in one native call (one
 * parallel region): decodeQkv, paged attention over the cache (the rows' own keys and values
 * included: they are stored first), x += o_proj(o), then decodeSwigluMlp, or decodeMoeFfn for a
 * sparse MoE feed-forward.
 */
export function decodeLayer(inp: DecodeLayerInputs, scratch: DecodeLayerScratch): void {
  const mlp = inp.mlp;
  if (isMoeWeights(mlp)) addon().decodeLayerMoe(...packArgs('decodeLayerMoe', decodeLayerMoeArgs({ ...inp, mlp }, scratch)));
  else addon().decodeLayer(...packArgs('decodeLayer', decodeLayerArgs({ ...inp, mlp }, scratch)));
}

// Where a step's sizes sit in decodeLayer's (and decodeLayerMoe's: the same attention arguments
// first) positional arguments, from their declarations (bindings/gemv.cpp).
const LAYER_ROWS = argIndex('decodeLayer', 'M'), LAYER_SEQS = argIndex('decodeLayer', 'nseq');
const LAYER_PARTITIONS = argIndex('decodeLayer', 'maxPartitions');
if (LAYER_ROWS !== argIndex('decodeLayerMoe', 'M') || LAYER_SEQS !== argIndex('decodeLayerMoe', 'nseq') || LAYER_PARTITIONS !== argIndex('decodeLayerMoe', 'maxPartitions'))
  throw new PatentGPTError('E_INTERNAL', 'decodeLayer and decodeLayerMoe declare their step sizes at different positions (bindings/gemv.cpp)');

/**
 * decodeLayer checked once, for inputs and scratch of `capacity` rows, `capacity` sequences and
 * `attention.maxPartitions` partitions; the returned call runs a step of fewer (M rows of nseq
 * sequences, needing `partitions`), the index tensors holding them at their start. A decode
 * step then costs one native call per layer and no checks or objects in JavaScript (the native
 * side still checks every range and index).
 */
export function prepareDecodeLayer(inp: DecodeLayerInputs, scratch: DecodeLayerScratch): (M: number, nseq: number, partitions: number) => void {
  const mlp = inp.mlp;
  const moe = isMoeWeights(mlp);
  // Built once (the experts' list too: their storages, read natively on each call); a step only
  // writes its three sizes.
  const named = moe ? decodeLayerMoeArgs({ ...inp, mlp }, scratch) : decodeLayerArgs({ ...inp, mlp }, scratch);
  const [rows, seqs, partitions] = [named.M, named.nseq, named.maxPartitions];
  const args = moe ? packArgs('decodeLayerMoe', named as AddonArgs['decodeLayerMoe']) : packArgs('decodeLayer', named as AddonArgs['decodeLayer']);
  const call = (moe ? addon().decodeLayerMoe : addon().decodeLayer) as (...a: unknown[]) => void;
  const slots = args as unknown as number[];
  return (M, nseq, p) => {
    if (M > rows! || nseq > seqs! || p > partitions!)
      throw new PatentGPTError('E_SHAPE', `decodeLayer: a step of ${M} rows, ${nseq} sequences and ${p} partitions exceeds the prepared ${rows}, ${seqs} and ${partitions}`);
    slots[LAYER_ROWS] = M;
    slots[LAYER_SEQS] = nseq;
    slots[LAYER_PARTITIONS] = p;
    call(...(args as unknown[]));
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
function decodeLogitsArgs(logits: Tensor, x: Tensor, norm: { weight: Tensor; eps: number }, head: DecodeWeight, h: Tensor): AddonArgs['decodeLogits'] {
  const op = 'decodeLogits';
  const weight = weightTensor(head);
  expectSameDevice(op, { logits, x, normWeight: norm.weight, weight, h });
  expectKernel(op, 'decodeLogits', logits, x, norm.weight, weight, h);
  const [V, C] = head.shape as [number, number];
  const M = x.shape[0]!;
  expectWeight(op, 'weight', head, [V, C]);
  expectShape(op, 'x', x, [M, C]);
  expectShape(op, 'normWeight', norm.weight, [C]);
  expectShape(op, 'h', h, [M, C]);
  expectShape(op, 'logits', logits, [M, V]);
  return { logits, h, x, normW: norm.weight, w: weight, M, C, V, eps: norm.eps, wtype: weightType(op, { weight: head }) };
}

/**
 * The language-model head of M rows into existing buffers: logits (M, V) = rmsnorm(x (M, C),
 * normWeight, eps) @ weight (V, C)^T, with h (M, C) as scratch for the normed rows.
 */
export function decodeLogits(logits: Tensor, x: Tensor, norm: { weight: Tensor; eps: number }, weight: DecodeWeight, h: Tensor): void {
  addon().decodeLogits(...packArgs('decodeLogits', decodeLogitsArgs(logits, x, norm, weight, h)));
}

const LOGITS_ROWS = argIndex('decodeLogits', 'M');

/** decodeLogits checked once for buffers of `capacity` rows; the returned call runs the first M. */
export function prepareDecodeLogits(logits: Tensor, x: Tensor, norm: { weight: Tensor; eps: number }, weight: DecodeWeight, h: Tensor): (M: number) => void {
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
