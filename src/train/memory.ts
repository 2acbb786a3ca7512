// What a training run will need, checked before anything is allocated: the host memory of one
// optimizer step (f32 weights, gradients, AdamW moments, the activations the tape keeps for
// backward, the logits, and the host copies a checkpoint makes), and the size of the largest
// tensor against what a typed array can hold. A run that cannot fit is refused with the estimate
// instead of being killed by the kernel's out-of-memory killer, or failing with a bare RangeError
// at its first checkpoint.
import * as os from 'node:os';
import { constants as bufferConstants } from 'node:buffer';
import { PatentGPTError } from '../errors.js';
import { headDim, parameterCount, type ModelConfig } from '../models/config.js';

const F32 = 4;
const GiB = 1024 ** 3;

export interface MemoryEstimate {
  /** f32 master weights. */
  weights: number;
  /** f32 gradients of every trained parameter (all, or the adapters under LoRA). */
  gradients: number;
  /** The optimizer's f32 state: AdamW's two moments, SGD's momentum buffer (or none). */
  optimizer: number;
  /** Activations kept for backward over one micro-batch, all layers, plus the logits and their gradient. */
  activations: number;
  /** Host copies made while a checkpoint is written (the optimizer state as arrays). */
  checkpoint: number;
  /** Bytes in all. */
  total: number;
}

/**
 * Bytes of one training step of `model` over micro-batches of batchSize x seqLen tokens. The
 * activation term counts, per token and layer, the tensors the tape saves (norm inputs and
 * outputs, q/k/v before and after RoPE, attention output, the projections, SwiGLU's gate, up
 * and product, times topK for a mixture of experts); attention itself is linear in seqLen.
 */
export function estimateTrainingMemory(model: ModelConfig, batch: { batchSize: number; seqLen: number; optimizerBuffers?: number; trainableParameters?: number }): MemoryEstimate {
  const P = parameterCount(model).total;
  const trained = F32 * Math.min(P, batch.trainableParameters ?? P);
  const tokens = batch.batchSize * batch.seqLen;
  const q = model.nHeads * headDim(model);
  const kv = model.nKvHeads * headDim(model);
  const perTokenLayer = 8 * model.dim + 2 * q + 4 * kv + (3 * model.ffnDim + 2 * model.dim) * model.topK + (model.numExperts > 1 ? model.numExperts : 0);
  const activations = F32 * tokens * (model.nLayers * perTokenLayer + 2 * model.dim + 3 * model.vocabSize);
  const weights = F32 * P;
  const buffers = batch.optimizerBuffers ?? 2;
  const est = { weights, gradients: trained, optimizer: buffers * trained, activations, checkpoint: buffers * trained };
  return { ...est, total: est.weights + est.gradients + est.optimizer + est.activations + est.checkpoint };
}

/** Memory the process may use: the cgroup limit where one is set, else the machine's RAM. */
export function machineMemory(): number {
  const total = os.totalmem();
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  return constrained !== undefined && constrained > 0 && constrained < total ? constrained : total;
}

export const gib = (bytes: number): string => `${(bytes / GiB).toFixed(bytes < 10 * GiB ? 2 : 1)} GiB`;

/** Largest element count of one f32 tensor whose bytes fit a typed array (checkpoints view them as bytes). */
export const MAX_TENSOR_ELEMENTS = Math.floor(bufferConstants.MAX_LENGTH / F32);

/** The model's largest parameter (name and elements). */
export function largestParameter(model: ModelConfig): { name: string; elements: number } {
  const q = model.nHeads * headDim(model);
  const kv = model.nKvHeads * headDim(model);
  const cands: [string, number][] = [
    ['model.embed_tokens.weight', model.vocabSize * model.dim],
    ['self_attn.q_proj.weight', q * model.dim],
    ['self_attn.k_proj.weight', kv * model.dim],
    ['mlp.gate_proj.weight', model.ffnDim * model.dim],
  ];
  if (!model.tieEmbeddings) cands.push(['lm_head.weight', model.vocabSize * model.dim]);
  const [name, elements] = cands.reduce((a, b) => (b[1] > a[1] ? b : a));
  return { name, elements };
}

export interface MemoryCheckOptions {
  batchSize: number;
  seqLen: number;
  /** Bytes allowed; default machineMemory(). */
  limit?: number;
  /** Where the limit came from, for the message. */
  limitSource?: string;
  /** Names the config in errors. */
  source?: string;
  /** f32 values of optimizer state per weight: 2 for AdamW (default), 1 for SGD with momentum, 0 without. */
  optimizerBuffers?: number;
  /** Parameters that get gradients and optimizer state (default all: LoRA trains only its adapters). */
  trainableParameters?: number;
}

/**
 * Refuses, before any allocation, a model whose largest tensor no typed array can hold, and a
 * step whose estimated memory exceeds the limit (the message gives the estimate, term by term).
 */
export function checkTrainingFits(model: ModelConfig, opts: MemoryCheckOptions): MemoryEstimate {
  const src = opts.source ?? 'config';
  const big = largestParameter(model);
  if (big.elements > MAX_TENSOR_ELEMENTS)
    throw new PatentGPTError('E_CONFIG',
      `${src}: model: ${big.name} would hold ${big.elements.toLocaleString('en-US')} values (${gib(big.elements * F32)}), more than one tensor can hold here ` +
        `(${MAX_TENSOR_ELEMENTS.toLocaleString('en-US')} f32 values, ${gib(MAX_TENSOR_ELEMENTS * F32)}); make vocabSize x dim (or ffnDim x dim) smaller`);
  const est = estimateTrainingMemory(model, opts);
  const limit = opts.limit ?? machineMemory();
  if (est.total > limit)
    throw new PatentGPTError('E_CONFIG',
      `${src}: the training step needs about ${gib(est.total)} (weights ${gib(est.weights)}, gradients ${gib(est.gradients)}, ` +
        `${(opts.optimizerBuffers ?? 2) === 2 ? 'AdamW moments' : 'optimizer state'} ${gib(est.optimizer)}, activations of a ${opts.batchSize} x ${opts.seqLen} micro-batch ${gib(est.activations)}, ` +
        `checkpoint copies ${gib(est.checkpoint)}), more than the ${gib(limit)} ${opts.limitSource ?? 'of this machine'}; ` +
        'lower batchSize (raise gradAccum to keep the tokens per step) or seqLen, or pick a smaller model. ' +
        'If the estimate is wrong for your machine, set memoryLimitGiB, or memoryCheck: false');
  return est;
}
