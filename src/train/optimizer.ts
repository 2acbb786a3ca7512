// AdamW over named parameters (torch.optim.AdamW semantics, fused native step per tensor) with
// global-norm clipping, a weight-decay rule by name, and state that round-trips through plain
// Float32Arrays for checkpoints. Gradient accumulation is the caller's: scale each micro-batch
// loss by 1 / gradAccum, call backward() on each (leaf gradients add up), then step() once.
import { PatentGPTError } from '../errors.js';
import { adamwStep, globalGradNorm, Tensor } from '../tensor/index.js';

export interface AdamWOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.95 (LLaMA-2's pretraining value). */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay for parameters the decay rule picks. Default 0.1. */
  weightDecay?: number;
  /** Clip the global gradient norm to this (torch clip_grad_norm_); 0 or undefined: no clipping. */
  maxGradNorm?: number;
  /** Which parameters get weight decay. Default: defaultDecayRule. */
  decay?: (name: string, param: Tensor) => boolean;
}

/** No decay for norms, biases and any tensor of rank < 2 (gains, scales); decay for matrices and embeddings. */
export function defaultDecayRule(name: string, param: Tensor): boolean {
  if (param.shape.length < 2) return false;
  return !/norm/i.test(name) && !/(^|[._])bias$/i.test(name);
}

export interface StepResult {
  /** Global gradient norm before clipping (over the parameters that have a gradient). */
  gradNorm: number;
  /** Factor the gradients were scaled by (1 when not clipped). */
  clipScale: number;
  /** True when the norm was not finite and no parameter was changed (the step count did not move). */
  skipped: boolean;
}

/** Optimizer state as plain arrays: m (exp_avg) and v (exp_avg_sq) per parameter. */
export interface OptimizerState {
  /** Updates done. */
  step: number;
  entries: { name: string; shape: number[]; m: Float32Array; v: Float32Array }[];
}

interface Slot {
  name: string;
  param: Tensor;
  decay: boolean;
  m: Tensor | null;
  v: Tensor | null;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number;
  private readonly slots: Slot[];
  private steps = 0;

  constructor(params: Iterable<readonly [string, Tensor]>, opts: AdamWOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.95;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.1;
    this.maxGradNorm = opts.maxGradNorm ?? 0;
    const rule = opts.decay ?? defaultDecayRule;
    const check = (ok: boolean, what: string): void => {
      if (!ok) throw new PatentGPTError('E_ARGUMENT', `AdamW: ${what}`);
    };
    check(this.beta1 >= 0 && this.beta1 < 1, `beta1 must be in [0, 1), got ${this.beta1}`);
    check(this.beta2 >= 0 && this.beta2 < 1, `beta2 must be in [0, 1), got ${this.beta2}`);
    check(this.eps > 0, `eps must be positive, got ${this.eps}`);
    check(this.weightDecay >= 0, `weightDecay must be >= 0, got ${this.weightDecay}`);
    check(this.maxGradNorm >= 0 && Number.isFinite(this.maxGradNorm), `maxGradNorm must be >= 0, got ${this.maxGradNorm}`);
    this.slots = [];
    const seen = new Set<string>();
    for (const [name, param] of params) {
      check(!seen.has(name), `parameter name "${name}" appears twice`);
      seen.add(name);
      check(param.dtype === 'f32', `parameter ${name} is ${param.describe()}; AdamW keeps f32 master weights`);
      if (!param.requiresGrad) continue; // frozen: no state, never updated
      this.slots.push({ name, param, decay: rule(name, param), m: null, v: null });
    }
  }

  /** Updates done so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** Names of the trained parameters, and whether each takes weight decay. */
  get parameters(): { name: string; decay: boolean; size: number }[] {
    return this.slots.map((s) => ({ name: s.name, decay: s.decay, size: s.param.size }));
  }

  /** The current gradients, in parameter order (for a data-parallel all-reduce before step()). */
  gradients(): Tensor[] {
    return this.slots.flatMap((s) => (s.param.grad ? [s.param.grad] : []));
  }

  /**
   * One update at learning rate `lr` of every parameter that has a gradient: global-norm
   * clipping (folded into the update as a gradient scale, as torch's clip then step), then the
   * fused AdamW step. A non-finite gradient norm changes nothing and returns skipped: true.
   */
  step(lr: number): StepResult {
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new PatentGPTError('E_ARGUMENT', `AdamW.step: lr must be a finite number >= 0, got ${lr}`);
    const live = this.slots.filter((s) => s.param.grad !== null);
    const gradNorm = globalGradNorm(live.map((s) => s.param.grad!));
    if (!Number.isFinite(gradNorm)) return { gradNorm, clipScale: 1, skipped: true };
    const clipScale = this.maxGradNorm > 0 ? Math.min(1, Math.fround(this.maxGradNorm / (gradNorm + 1e-6))) : 1;
    this.steps++;
    for (const s of live) {
      s.m ??= Tensor.zeros(s.param.shape);
      s.v ??= Tensor.zeros(s.param.shape);
      adamwStep(s.param, s.param.grad!, s.m, s.v, {
        lr,
        beta1: this.beta1,
        beta2: this.beta2,
        eps: this.eps,
        weightDecay: s.decay ? this.weightDecay : 0,
        step: this.steps,
        gradScale: clipScale,
      });
    }
    return { gradNorm, clipScale, skipped: false };
  }

  /** Frees every gradient (set to none, as torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const s of this.slots) {
      s.param.grad?.dispose();
      s.param.grad = null;
    }
  }

  /** A copy of the state (parameters never stepped have zero moments). */
  exportState(): OptimizerState {
    return {
      step: this.steps,
      entries: this.slots.map((s) => ({
        name: s.name,
        shape: [...s.param.shape],
        m: s.m ? (s.m.toArray() as Float32Array) : new Float32Array(s.param.size),
        v: s.v ? (s.v.toArray() as Float32Array) : new Float32Array(s.param.size),
      })),
    };
  }

  /** Restores a state from exportState (or a checkpoint): same parameter names and shapes, or E_CHECKPOINT naming the parameter. */
  loadState(state: OptimizerState): void {
    const bad = (msg: string): never => {
      throw new PatentGPTError('E_CHECKPOINT', `optimizer state: ${msg}`);
    };
    if (!Number.isSafeInteger(state.step) || state.step < 0) bad(`step must be a non-negative integer, got ${state.step}`);
    const byName = new Map(state.entries.map((e) => [e.name, e]));
    for (const s of this.slots) {
      const e = byName.get(s.name) ?? bad(`no moments for parameter ${s.name}`);
      if (e.shape.length !== s.param.shape.length || e.shape.some((d, i) => d !== s.param.shape[i]))
        bad(`${s.name} has shape [${e.shape.join(', ')}], the parameter is [${s.param.shape.join(', ')}]`);
      if (e.m.length !== s.param.size || e.v.length !== s.param.size) bad(`${s.name}: m/v hold ${e.m.length}/${e.v.length} values, expected ${s.param.size}`);
    }
    const names = new Set(this.slots.map((s) => s.name));
    for (const e of state.entries) if (!names.has(e.name)) bad(`parameter ${e.name} is not in this model`);
    for (const s of this.slots) {
      const e = byName.get(s.name)!;
      s.m ??= Tensor.empty(s.param.shape);
      s.v ??= Tensor.empty(s.param.shape);
      s.m.write(e.m);
      s.v.write(e.v);
    }
    this.steps = state.step;
  }

  /** Frees the moment tensors. */
  dispose(): void {
    for (const s of this.slots) {
      s.m?.dispose();
      s.v?.dispose();
      s.m = null;
      s.v = null;
    }
  }
}
