// Shared by the Hugging Face parity tests: our side of scripts/hf-parity.py's `run`.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors } from '../../src/models/index.js';
import { expect } from 'vitest';
import { adamwStep, clipGradNorm, noGrad, scope, Tensor, type LlamaForCausalLM } from '../../src/index.js';

export interface Batch { tokens: number[]; targets: number[]; cuSeqlens: number[] }
export interface Hyper { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; max_norm: number }

export interface RunResult {
  logits: Float32Array;
  loss: number;
  grads: Map<string, Float32Array>;
  losses: number[];
  gradNorms: number[];
  final: Map<string, Float32Array>;
}

const packed = (b: Batch) => ({
  tokens: Int32Array.from(b.tokens), targets: Int32Array.from(b.targets), cuSeqlens: Int32Array.from(b.cuSeqlens),
});

/** Observers of runOurs (e.g. a MoE model's routing): after the logits' forward, after each step's loss. */
export interface RunHooks {
  afterLogits?(): void;
  afterStepLoss?(): void;
}

/** Logits, loss and gradients on batches[0], then `steps` AdamW steps (clipped) from batches[0]. */
export function runOurs(model: LlamaForCausalLM, batches: Batch[], steps: number, hp: Hyper, hooks: RunHooks = {}): RunResult {
  const params = model.namedParameters();
  const gradOf = (p: Tensor): Tensor => {
    if (!p.grad) throw new Error(`parameter ${params.find(([, q]) => q === p)?.[0]} has no gradient`);
    return p.grad;
  };
  const logitsT = noGrad(() => model.forward(packed(batches[0]!)));
  const logits = logitsT.toArray() as Float32Array;
  logitsT.dispose();
  hooks.afterLogits?.();
  const lossT = model.loss(packed(batches[0]!));
  const loss = lossT.item();
  lossT.backward();
  lossT.dispose();
  const grads = new Map(params.map(([n, p]) => [n, gradOf(p).toArray() as Float32Array]));
  model.zeroGrad();
  const state = params.map(([, p]) => ({ m: Tensor.zeros(p.shape), v: Tensor.zeros(p.shape) }));
  const losses: number[] = [];
  const gradNorms: number[] = [];
  for (let step = 1; step <= steps; step++) {
    const l = scope(() => model.loss(packed(batches[(step - 1) % batches.length]!)));
    losses.push(l.item());
    hooks.afterStepLoss?.();
    l.backward();
    l.dispose();
    const gs = params.map(([, p]) => gradOf(p));
    gradNorms.push(clipGradNorm(gs, hp.max_norm).norm);
    params.forEach(([, p], i) =>
      adamwStep(p, gs[i]!, state[i]!.m, state[i]!.v, {
        lr: hp.lr, beta1: hp.beta1, beta2: hp.beta2, eps: hp.eps, weightDecay: hp.weight_decay, step,
      }));
    model.zeroGrad();
  }
  for (const s of state) {
    s.m.dispose();
    s.v.dispose();
  }
  const final = new Map(params.map(([n, p]) => [n, p.toArray() as Float32Array]));
  return { logits, loss, grads, losses, gradNorms, final };
}

/** The Euclidean norm of a. */
export function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

/** max |a - b| / (max |b| over the tensor): the error relative to the tensor's scale. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? num : num / den;
}

/**
 * A parity script's `run` (scripts/hf-parity.py, mixtral-parity.py) on a model folder: writes the
 * batches into `work`, runs it, and reads back its tensors (reference.safetensors) and summary
 * (reference.json).
 */
export async function pythonReference<J>(python: string, script: string, work: string, dir: string, batches: Batch[], steps: number, tag: string) {
  const bfile = join(work, `${tag}-batches.json`);
  writeFileSync(bfile, JSON.stringify(batches));
  const out = join(work, `${tag}-ref`);
  execFileSync(python, [script, 'run', dir, bfile, out, '--steps', String(steps)], {
    env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  const tensors = await readSafetensors(join(out, 'reference.safetensors'));
  const arrays = new Map([...tensors].map(([k, t]) => [k, t.toArray() as Float32Array]));
  for (const t of tensors.values()) t.dispose();
  return { arrays, json: JSON.parse(readFileSync(join(out, 'reference.json'), 'utf8')) as J };
}

/**
 * Weights after the AdamW steps against the reference's (`final.<name>` in `ref`). Adam divides by
 * sqrt(v) + eps: where a gradient is within float noise of 0 (1e-8 against a tensor scale of 1e-2)
 * its update is near sign(g) * lr either way, so single elements may differ by up to a step. Bound
 * that (lr: seen 0.3 lr on an AMD EPYC, on an embedding row whose first-batch gradient is 0 in
 * both, under 0.1 lr on an Intel Xeon), and require nearly all (all but 1e-3) to agree to 1e-6:
 * a wrong update moves most elements. Records both figures in `report`.
 */
export function expectWeightsAfterSteps(final: Map<string, Float32Array>, ref: Map<string, Float32Array>, lr: number, report: Record<string, number>): void {
  let worstW = 0;
  let off = 0;
  let total = 0;
  for (const [n, w] of final) {
    const r = ref.get(`final.${n}`)!;
    for (let i = 0; i < w.length; i++) {
      const d = Math.abs(w[i]! - r[i]!);
      worstW = Math.max(worstW, d);
      if (d > 1e-6) off++;
    }
    total += w.length;
  }
  report.weightsAfterStepsMaxAbs = worstW;
  report.weightsAfterStepsFractionOver1e6 = off / total;
  expect(worstW).toBeLessThan(lr);
  expect(off / total).toBeLessThan(1e-3);
}
