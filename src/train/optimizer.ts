// Optimizers over named parameters in parameter groups: AdamW (torch.optim.AdamW semantics,
// fused native step per tensor) and SGD with momentum (torch.optim.SGD semantics), with
// global-norm clipping and state that round-trips through plain Float32Arrays for checkpoints.
// Gradient accumulation is the caller's: scale each micro-batch loss by 1 / gradAccum, call
// backward() on each (leaf gradients add up), then step() once.
//
// Parameter groups, as large trainers set them up: by default "decay" (matrices and, unless
// decayEmbeddings is false, embeddings) and "no_decay" (norms, biases, any tensor of rank < 2).
// `groups` rules, tried in order, take the parameters whose names match a pattern into groups of
// their own, with a learning-rate multiplier and/or their own weight decay. A group's
// hyperparameters are fixed per parameter when the optimizer is built, so a step costs the same
// native calls as an optimizer without groups (one fused kernel call per parameter).
import { PatentGPTError } from '../errors.js';
import { add, adamwStep, copyRows, globalGradNorm, keep, noGrad, scale, scope, sub, Tensor } from '../tensor/index.js';

export type OptimizerType = 'adamw' | 'sgd';

/** A parameter group rule: the parameters whose names match, and what they get. */
export interface ParamGroupRule {
  /**
   * Parameter names: a glob (`*` matches any run of characters, dots included:
   * "model.layers.*.mlp.*", "lm_head.weight") or a regular expression between slashes ("/^model\.embed/").
   */
  match: string;
  /** The group's name in logs and checkpoints; default "groups[i]" (i: the rule's index). */
  name?: string;
  /** Multiplier of the schedule's learning rate. Default 1. */
  lrScale?: number;
  /** Weight decay of every parameter of the group; default: the optimizer's, with the no-decay rule applied (then the group splits in NAME and NAME.no_decay). */
  weightDecay?: number;
}

export interface OptimizerOptions {
  /** "adamw" (default) or "sgd" (with momentum). */
  type?: OptimizerType;
  /** AdamW: default 0.9. */
  beta1?: number;
  /** AdamW: default 0.95 (LLaMA-2's pretraining value). */
  beta2?: number;
  /** AdamW: default 1e-8. */
  eps?: number;
  /** SGD: momentum factor, default 0.9 (0: plain SGD, no buffer). */
  momentum?: number;
  /** SGD: dampening of the momentum, default 0. */
  dampening?: number;
  /** SGD: Nesterov momentum, default false. */
  nesterov?: boolean;
  /** Weight decay for the parameters the decay rule picks (AdamW decoupled; SGD added to the gradient). Default 0.1 (AdamW), 0 (SGD). */
  weightDecay?: number;
  /** Clip the global gradient norm to this (torch clip_grad_norm_); 0 or undefined: no clipping. */
  maxGradNorm?: number;
  /** Embedding tables take weight decay (default true, as LLaMA-2 and GPT trainers do). */
  decayEmbeddings?: boolean;
  /** Which parameters get weight decay. Default: defaultDecayRule with decayEmbeddings. */
  decay?: (name: string, param: Tensor) => boolean;
  /** Parameter group rules, first match wins; parameters no rule matches form "decay" and "no_decay". */
  groups?: readonly ParamGroupRule[];
  /**
   * ZeRO-1 (src/distributed): the parameters this rank updates and keeps moments for; the others
   * are updated by the rank that owns them and broadcast. The gradient norm (clipping, skipping)
   * still covers every gradient. Default: all.
   */
  owns?: (name: string) => boolean;
}

/** @deprecated the AdamW subset of OptimizerOptions (kept for callers of the first trainer). */
export type AdamWOptions = OptimizerOptions;

const EMBEDDING = /(^|[._])(embed[a-z_]*|wte|wpe|tok_embeddings)([._]|$)/i;

/** No decay for norms, biases and any tensor of rank < 2 (gains, scales); decay for matrices and (unless decayEmbeddings is false) embeddings. */
export function defaultDecayRule(name: string, param: Tensor, decayEmbeddings = true): boolean {
  if (param.shape.length < 2) return false;
  if (!decayEmbeddings && EMBEDDING.test(name)) return false;
  return !/norm/i.test(name) && !/(^|[._])bias$/i.test(name);
}

/** A group rule's pattern as a RegExp (glob or /regex/); throws E_ARGUMENT naming `field`. */
export function groupPattern(match: string, field = 'match'): RegExp {
  if (typeof match !== 'string' || match === '') throw new PatentGPTError('E_ARGUMENT', `${field}: must be a non-empty glob or /regex/, got ${JSON.stringify(match)}`);
  if (match.length >= 2 && match.startsWith('/') && match.endsWith('/')) {
    try {
      return new RegExp(match.slice(1, -1));
    } catch (err) {
      throw new PatentGPTError('E_ARGUMENT', `${field}: ${match} is not a valid regular expression (${(err as Error).message})`);
    }
  }
  return new RegExp(`^${match.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/** A resolved parameter group (what a checkpoint records). */
export interface ParamGroup {
  name: string;
  lrScale: number;
  weightDecay: number;
  /** Parameter names, in parameter order. */
  params: string[];
}

export interface StepResult {
  /** Global gradient norm before clipping (over the parameters that have a gradient). */
  gradNorm: number;
  /** Factor the gradients were scaled by (1 when not clipped). */
  clipScale: number;
  /** True when the norm was not finite and no parameter was changed (the step count did not move). */
  skipped: boolean;
}

/**
 * Optimizer state as plain arrays. AdamW: m (exp_avg) and v (exp_avg_sq) per parameter; SGD: m
 * is the momentum buffer and v is absent. `type` and `groups` are absent in states written before
 * parameter groups (read as AdamW, any grouping).
 */
export interface OptimizerState {
  type?: OptimizerType;
  /** Updates done. */
  step: number;
  groups?: ParamGroup[];
  entries: { name: string; shape: number[]; m: Float32Array; v?: Float32Array }[];
}

/** What the trainer needs of an optimizer. */
export interface Optimizer {
  readonly type: OptimizerType;
  readonly stepCount: number;
  readonly groups: readonly ParamGroup[];
  /** The trained parameters: name, weight decay, size and group. */
  readonly parameters: { name: string; decay: boolean; size: number; group: string }[];
  /** The current gradients, in parameter order (for a data-parallel all-reduce before step()). */
  gradients(): Tensor[];
  /** opts.gradNorm: the global gradient norm, computed by the caller (ZeRO-2: each rank holds only its share). */
  step(lr: number, opts?: { gradNorm?: number }): StepResult;
  zeroGrad(): void;
  /** Under `owns` (ZeRO), the owned parameters' state only. */
  exportState(): OptimizerState;
  /** Under `owns`, only the owned parameters' moments are needed (and kept) of the state. */
  loadState(state: OptimizerState): void;
  /** Bytes of moment tensors allocated now (measured: the tensors that exist). */
  stateBytes(): number;
  dispose(): void;
}

interface Slot {
  name: string;
  param: Tensor;
  group: ParamGroup;
  /** What the decay rule says (the group's weightDecay may still be 0). */
  decay: boolean;
  m: Tensor | null;
  v: Tensor | null;
}

/** Groups, clipping, zeroGrad and state checks; subclasses update one parameter. */
abstract class GroupedOptimizer implements Optimizer {
  abstract readonly type: OptimizerType;
  readonly maxGradNorm: number;
  readonly weightDecay: number;
  readonly groups: readonly ParamGroup[];
  protected readonly slots: Slot[];
  protected steps = 0;
  /** Slots this rank updates (all without ZeRO). */
  protected readonly owned: Slot[];
  /** Moment tensors per parameter (AdamW 2, SGD 1 or 0). */
  protected abstract readonly buffers: 0 | 1 | 2;

  constructor(label: string, params: Iterable<readonly [string, Tensor]>, opts: OptimizerOptions, defaultDecay: number) {
    this.weightDecay = opts.weightDecay ?? defaultDecay;
    this.maxGradNorm = opts.maxGradNorm ?? 0;
    const check = (ok: boolean, what: string): void => {
      if (!ok) throw new PatentGPTError('E_ARGUMENT', `${label}: ${what}`);
    };
    check(this.weightDecay >= 0 && Number.isFinite(this.weightDecay), `weightDecay must be >= 0, got ${this.weightDecay}`);
    check(this.maxGradNorm >= 0 && Number.isFinite(this.maxGradNorm), `maxGradNorm must be >= 0, got ${this.maxGradNorm}`);
    const decayEmbeddings = opts.decayEmbeddings ?? true;
    const rule = opts.decay ?? ((n: string, p: Tensor) => defaultDecayRule(n, p, decayEmbeddings));
    const rules = (opts.groups ?? []).map((r, i) => {
      const field = `groups[${i}]`;
      const lrScale = r.lrScale ?? 1;
      check(Number.isFinite(lrScale) && lrScale >= 0, `${field}.lrScale must be a number >= 0, got ${r.lrScale}`);
      check(r.weightDecay === undefined || (Number.isFinite(r.weightDecay) && r.weightDecay >= 0), `${field}.weightDecay must be >= 0, got ${r.weightDecay}`);
      return { re: groupPattern(r.match, `${label}: ${field}.match`), name: r.name ?? field, lrScale, weightDecay: r.weightDecay, hits: 0, field, match: r.match };
    });
    const groups = new Map<string, ParamGroup>();
    const groupOf = (name: string, lrScale: number, weightDecay: number): ParamGroup => {
      let g = groups.get(name);
      if (!g) groups.set(name, (g = { name, lrScale, weightDecay, params: [] }));
      return g;
    };
    this.slots = [];
    const seen = new Set<string>();
    let example = '';
    for (const [name, param] of params) {
      check(!seen.has(name), `parameter name "${name}" appears twice`);
      seen.add(name);
      check(param.dtype === 'f32', `parameter ${name} is ${param.describe()}; ${label} keeps f32 master weights`);
      example ||= name;
      const r = rules.find((x) => x.re.test(name));
      if (r) r.hits++;
      if (!param.requiresGrad) continue; // frozen: no state, never updated
      const decay = rule(name, param);
      let group: ParamGroup;
      if (!r) group = decay ? groupOf('decay', 1, this.weightDecay) : groupOf('no_decay', 1, 0);
      else if (r.weightDecay !== undefined) group = groupOf(r.name, r.lrScale, r.weightDecay);
      else group = decay ? groupOf(r.name, r.lrScale, this.weightDecay) : groupOf(`${r.name}.no_decay`, r.lrScale, 0);
      group.params.push(name);
      this.slots.push({ name, param, group, decay, m: null, v: null });
    }
    this.owned = opts.owns ? this.slots.filter((s) => opts.owns!(s.name)) : this.slots;
    for (const r of rules)
      check(r.hits > 0, `${r.field}.match: "${r.match}" matches no parameter (names look like "${example}"; * matches any characters, dots included)`);
    this.groups = [...groups.values()];
  }

  /** Updates done so far. */
  get stepCount(): number {
    return this.steps;
  }

  get parameters(): { name: string; decay: boolean; size: number; group: string }[] {
    return this.slots.map((s) => ({ name: s.name, decay: s.decay, size: s.param.size, group: s.group.name }));
  }

  gradients(): Tensor[] {
    return this.slots.flatMap((s) => (s.param.grad ? [s.param.grad] : []));
  }

  /** One parameter's update at this group's learning rate; the gradient is multiplied by clipScale first. */
  protected abstract update(s: Slot, lr: number, clipScale: number): void;

  /**
   * One update at learning rate `lr` (times each group's lrScale) of every parameter that has a
   * gradient: global-norm clipping (folded into the update as a gradient scale, as torch's clip
   * then step), then the update. A non-finite gradient norm changes nothing and returns skipped: true.
   */
  step(lr: number, opts: { gradNorm?: number } = {}): StepResult {
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new PatentGPTError('E_ARGUMENT', `${this.type}.step: lr must be a finite number >= 0, got ${lr}`);
    const live = this.slots.filter((s) => s.param.grad !== null);
    const gradNorm = opts.gradNorm ?? globalGradNorm(live.map((s) => s.param.grad!));
    if (!Number.isFinite(gradNorm)) return { gradNorm, clipScale: 1, skipped: true };
    const clipScale = this.maxGradNorm > 0 ? Math.min(1, Math.fround(this.maxGradNorm / (gradNorm + 1e-6))) : 1;
    this.steps++;
    const mine = this.owned === this.slots ? null : new Set(this.owned);
    for (const s of live) if (!mine || mine.has(s)) this.update(s, s.group.lrScale === 1 ? lr : lr * s.group.lrScale, clipScale);
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
    const arr = (t: Tensor | null, size: number): Float32Array => (t ? (t.toArray() as Float32Array) : new Float32Array(size));
    return {
      type: this.type,
      step: this.steps,
      groups: this.groups.map((g) => ({ ...g, params: [...g.params] })),
      entries: this.owned.map((s) => ({
        name: s.name,
        shape: [...s.param.shape],
        m: arr(s.m, s.param.size),
        ...(this.buffers === 2 ? { v: arr(s.v, s.param.size) } : {}),
      })),
    };
  }

  /**
   * Restores a state from exportState (or a checkpoint): same optimizer type, parameter names,
   * shapes and (when the state records them) groups, or E_CHECKPOINT naming what differs.
   */
  loadState(state: OptimizerState): void {
    const bad = (msg: string): never => {
      throw new PatentGPTError('E_CHECKPOINT', `optimizer state: ${msg}`);
    };
    if (!Number.isSafeInteger(state.step) || state.step < 0) bad(`step must be a non-negative integer, got ${state.step}`);
    const type = state.type ?? 'adamw';
    if (type !== this.type) bad(`it was saved by ${type}, this optimizer is ${this.type}; resume with the optimizer the run was started with`);
    if (state.groups) {
      const saved = new Map(state.groups.flatMap((g) => g.params.map((p) => [p, g] as const)));
      for (const s of this.slots) {
        const g = saved.get(s.name);
        if (g && (g.name !== s.group.name || g.lrScale !== s.group.lrScale || g.weightDecay !== s.group.weightDecay))
          bad(`${s.name} was in group "${g.name}" (lrScale ${g.lrScale}, weightDecay ${g.weightDecay}), now in "${s.group.name}" ` +
            `(lrScale ${s.group.lrScale}, weightDecay ${s.group.weightDecay}); resume with the optimizer.groups the run was started with`);
      }
    }
    const byName = new Map(state.entries.map((e) => [e.name, e]));
    for (const s of this.owned) {
      const e = byName.get(s.name) ?? bad(`no moments for parameter ${s.name}`);
      if (e.shape.length !== s.param.shape.length || e.shape.some((d, i) => d !== s.param.shape[i]))
        bad(`${s.name} has shape [${e.shape.join(', ')}], the parameter is [${s.param.shape.join(', ')}]`);
      if (e.m.length !== s.param.size || (this.buffers === 2 && e.v?.length !== s.param.size))
        bad(`${s.name}: m/v hold ${e.m.length}/${e.v?.length ?? 'no'} values, expected ${s.param.size}`);
    }
    const names = new Set(this.slots.map((s) => s.name));
    for (const e of state.entries) if (!names.has(e.name)) bad(`parameter ${e.name} is not in this model`);
    if (this.buffers > 0)
      for (const s of this.owned) {
        const e = byName.get(s.name)!;
        s.m ??= Tensor.empty(s.param.shape, { device: s.param.device });
        s.m.write(e.m);
        if (this.buffers === 2) {
          s.v ??= Tensor.empty(s.param.shape, { device: s.param.device });
          s.v.write(e.v!);
        }
      }
    this.steps = state.step;
  }

  stateBytes(): number {
    let n = 0;
    for (const s of this.slots) n += (s.m?.byteLength ?? 0) + (s.v?.byteLength ?? 0);
    return n;
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

export class AdamW extends GroupedOptimizer {
  readonly type = 'adamw' as const;
  protected readonly buffers = 2 as const;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;

  constructor(params: Iterable<readonly [string, Tensor]>, opts: OptimizerOptions = {}) {
    super('AdamW', params, opts, 0.1);
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.95;
    this.eps = opts.eps ?? 1e-8;
    const check = (ok: boolean, what: string): void => {
      if (!ok) throw new PatentGPTError('E_ARGUMENT', `AdamW: ${what}`);
    };
    check(this.beta1 >= 0 && this.beta1 < 1, `beta1 must be in [0, 1), got ${this.beta1}`);
    check(this.beta2 >= 0 && this.beta2 < 1, `beta2 must be in [0, 1), got ${this.beta2}`);
    check(this.eps > 0, `eps must be positive, got ${this.eps}`);
  }

  protected update(s: Slot, lr: number, clipScale: number): void {
    s.m ??= Tensor.zeros(s.param.shape, { device: s.param.device });
    s.v ??= Tensor.zeros(s.param.shape, { device: s.param.device });
    adamwStep(s.param, s.param.grad!, s.m, s.v, {
      lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: s.group.weightDecay, step: this.steps, gradScale: clipScale,
    });
  }
}

/**
 * torch.optim.SGD: g = grad * clip (+ weightDecay * p); buf = g on the first step, then
 * momentum * buf + (1 - dampening) * g; p -= lr * (nesterov ? g + momentum * buf : buf). Built from
 * the element-wise ops (no fused kernel yet), written back in place with copyRows.
 */
export class SGD extends GroupedOptimizer {
  readonly type = 'sgd' as const;
  protected readonly buffers: 0 | 1;
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;

  constructor(params: Iterable<readonly [string, Tensor]>, opts: OptimizerOptions = {}) {
    super('SGD', params, opts, 0);
    this.momentum = opts.momentum ?? 0.9;
    this.dampening = opts.dampening ?? 0;
    this.nesterov = opts.nesterov ?? false;
    const check = (ok: boolean, what: string): void => {
      if (!ok) throw new PatentGPTError('E_ARGUMENT', `SGD: ${what}`);
    };
    check(this.momentum >= 0 && this.momentum < 1, `momentum must be in [0, 1), got ${this.momentum}`);
    check(this.dampening >= 0 && this.dampening <= 1, `dampening must be in [0, 1], got ${this.dampening}`);
    check(!this.nesterov || (this.momentum > 0 && this.dampening === 0), 'nesterov needs momentum > 0 and dampening 0');
    this.buffers = this.momentum > 0 ? 1 : 0;
  }

  protected update(s: Slot, lr: number, clipScale: number): void {
    const p = s.param;
    const flat = (t: Tensor): Tensor => t.reshape([t.size]);
    noGrad(() =>
      scope(() => {
        let g = clipScale === 1 ? p.grad! : scale(p.grad!, clipScale);
        if (s.group.weightDecay > 0) g = add(g, scale(p, s.group.weightDecay));
        let d = g;
        if (this.momentum > 0) {
          if (s.m === null) s.m = keep(g.clone());
          else copyRows(flat(s.m), 0, flat(add(scale(s.m, this.momentum), this.dampening === 0 ? g : scale(g, 1 - this.dampening))), 0, p.size);
          d = this.nesterov ? add(g, scale(s.m, this.momentum)) : s.m;
        }
        copyRows(flat(p), 0, flat(sub(p, scale(d, lr))), 0, p.size);
      }),
    );
  }
}

/** The optimizer a config names (type "adamw" by default). */
export function createOptimizer(params: Iterable<readonly [string, Tensor]>, opts: OptimizerOptions = {}): Optimizer {
  const type = opts.type ?? 'adamw';
  if (type === 'adamw') return new AdamW(params, opts);
  if (type === 'sgd') return new SGD(params, opts);
  throw new PatentGPTError('E_ARGUMENT', `optimizer type must be "adamw" or "sgd", got ${JSON.stringify(type)}`);
}
