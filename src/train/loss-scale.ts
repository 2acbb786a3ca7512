// Loss scaling for mixed-precision training, torch.cuda.amp.GradScaler's rule. The loss is
// multiplied by the scale before backward, so small gradients stay representable where they pass
// through 16-bit values (fp16's smallest normal is 2^-14; its largest 65504); the trainer then
// unscales every gradient in place and checks them for inf/NaN in one native pass
// (unscaleGradients), so clipping, the gradient norm and the optimizer see true gradients.
//
// "dynamic" (the default at precision fp16): an overflow skips the optimizer step and halves the
// scale; after growthInterval finite steps in a row the scale doubles. An overflow is the scale
// being too high, not a divergence: it does not count toward maxNonFiniteSteps, except once the
// scale is at its floor (minScale), where halving no longer helps. A fixed number: the same
// unscale and check, never changed; an overflow then is an ordinary non-finite step. "off" (the
// default at f32 and bf16, whose range is f32's): no scaling at all.
//
// The scale and the good-step count go into each checkpoint (state.json extra.lossScale), so a
// resumed run scales exactly as the uninterrupted one.
import { PatentGPTError } from '../errors.js';
import type { Tensor } from '../tensor/index.js';
import { lossScaleUpdate, unscaleGradients, type DynamicScaleRule } from '../tensor/ops/lossScale.js';

/** Dynamic loss scaling's settings (torch GradScaler's names and defaults). */
export interface DynamicLossScaleOptions {
  /** The first scale. Default 65536 (2^16). */
  initialScale?: number;
  /** Finite steps in a row before the scale grows. Default 2000. */
  growthInterval?: number;
  /** Default 2. */
  growthFactor?: number;
  /** Default 0.5. */
  backoffFactor?: number;
  /** The scale backs off no lower than this. Default 2^-14. */
  minScale?: number;
}

/**
 * "dynamic" (GradScaler with its defaults), an object (dynamic with these settings), a number (a
 * fixed scale; a power of two keeps the run bit-identical to no scaling) or "off".
 */
export type LossScaleOption = 'dynamic' | 'off' | number | DynamicLossScaleOptions;

/** What a checkpoint keeps of the scaler. */
export interface LossScaleState {
  scale: number;
  /** Finite steps since the scale last changed. */
  goodSteps: number;
}

const DEFAULTS: Required<DynamicLossScaleOptions> = {
  initialScale: 65536, growthInterval: 2000, growthFactor: 2, backoffFactor: 0.5, minScale: 2 ** -14,
};

function bad(what: string): never {
  throw new PatentGPTError('E_ARGUMENT', `lossScale: ${what}`);
}

/** A scale must be a positive number that f32 holds as a finite number (the kernels scale in f32). */
function checkScale(v: unknown, name: string): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(Math.fround(v)) || Math.fround(v) === 0)
    bad(`${name} must be a positive number finite in f32 (at most 2^127), got ${JSON.stringify(v)}`);
  return v;
}

/** The loss scaling a run gets: `option` as given, else "dynamic" at fp16 and "off" otherwise. */
export function resolveLossScale(option: LossScaleOption | undefined, precision: string): LossScaleOption {
  return option ?? (precision === 'fp16' ? 'dynamic' : 'off');
}

export class LossScaler {
  /** true: GradScaler's rule; false: a fixed scale. */
  readonly dynamic: boolean;
  readonly rule: DynamicScaleRule;
  private current: number;
  private good = 0;

  private constructor(scale: number, dynamic: boolean, rule: DynamicScaleRule) {
    this.current = scale;
    this.dynamic = dynamic;
    this.rule = rule;
  }

  /** The scaler for an option (see LossScaleOption), or null for "off". Bad settings throw E_ARGUMENT. */
  static create(option: LossScaleOption): LossScaler | null {
    if (option === 'off') return null;
    if (typeof option === 'number') return new LossScaler(checkScale(option, 'a fixed scale'), false, { ...DEFAULTS });
    if (option === 'dynamic') option = {};
    if (option === null || typeof option !== 'object' || Array.isArray(option))
      bad(`must be "dynamic", "off", a positive number or { initialScale, growthInterval, growthFactor, backoffFactor, minScale }, got ${JSON.stringify(option)}`);
    const known = Object.keys(DEFAULTS);
    for (const k of Object.keys(option)) if (!known.includes(k)) bad(`unknown setting "${k}" (known: ${known.join(', ')})`);
    const o = { ...DEFAULTS, ...option };
    checkScale(o.initialScale, 'initialScale');
    checkScale(o.minScale, 'minScale');
    if (!Number.isSafeInteger(o.growthInterval) || o.growthInterval < 1) bad(`growthInterval must be an integer >= 1, got ${JSON.stringify(o.growthInterval)}`);
    const rule = { growthFactor: o.growthFactor, backoffFactor: o.backoffFactor, growthInterval: o.growthInterval, minScale: o.minScale };
    lossScaleUpdate(o.initialScale, 0, false, rule); // the native rule's own checks (factors, minScale <= scale)
    return new LossScaler(o.initialScale, true, rule);
  }

  /** The scale the next backward multiplies the loss by. */
  get scale(): number {
    return this.current;
  }

  /** Whether halving can no longer help (a dynamic scale at its floor, or a fixed scale). */
  get atFloor(): boolean {
    return !this.dynamic || this.current <= this.rule.minScale;
  }

  /** Unscales the gradients in place; true when any held an inf or NaN (the step must be skipped). */
  unscale(grads: readonly Tensor[]): boolean {
    return unscaleGradients(grads, 1 / this.current);
  }

  /** After a step's check: the rule's update (a fixed scale stays). */
  update(foundInf: boolean): void {
    if (!this.dynamic) return;
    const r = lossScaleUpdate(this.current, this.good, foundInf, this.rule);
    this.current = r.scale;
    this.good = r.goodSteps;
  }

  state(): LossScaleState {
    return { scale: this.current, goodSteps: this.good };
  }

  /** Restores a checkpoint's state; a value that is not one (a hand-edited state.json) throws E_CHECKPOINT. */
  load(s: unknown): void {
    const x = s as Partial<LossScaleState> | null;
    const ok = x !== null && typeof x === 'object' && typeof x.scale === 'number' && x.scale > 0 && Number.isFinite(x.scale) &&
      Number.isSafeInteger(x.goodSteps) && x.goodSteps! >= 0;
    if (!ok) throw new PatentGPTError('E_CHECKPOINT', `state.json extra.lossScale: expected { scale, goodSteps }, got ${JSON.stringify(s)}`);
    if (this.dynamic) this.current = x.scale!; // a fixed scale is the config's, not the checkpoint's
    this.good = x.goodSteps!;
  }
}
