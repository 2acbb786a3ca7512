// PPO's rollout math, as numbered stages over a rollout batch of B rows, each a response padded
// to a width T (row-major (B, T) arrays). Everything here is a pure function over typed arrays
// with explicit masks, so each stage is testable alone and against TRL (scripts/trl-ppo-parity.py).
//
//   1. lengths and masks: a response is valid through its first EOS (kept), or through the width
//      when none was generated; `hasEos` says which.
//   2. scores: the reward of each whole response, less missing_eos_penalty where no EOS came.
//   3. per-token KL to the reference (k1: log p - log p_ref; k3: exp(r) - 1 - r, r = log p_ref - log p),
//      0 outside the mask; the token reward is -klCoef * KL.
//   4. the score is added at the response's last valid token, its true EOS ('eos', our default).
//      TRL's PPOTrainer adds it one past the EOS, on the first padding position ('after-eos',
//      kept for the parity test): its values then take that extra position too.
//   5. GAE (gamma, lambda) backwards over the width; returns = advantages + values.
//   6. advantages whitened over the valid tokens (masked_whiten), 0 outside.
// The KL coefficient is fixed or adaptive (AdaptiveKLController of Ziegler et al., as TRL had it).
import { PatentGPTError } from '../../errors.js';

export type KlEstimator = 'k1' | 'k3';
/** Where the score lands: on the last valid token (EOS) or, as TRL's PPOTrainer, one past it. */
export type ScorePosition = 'eos' | 'after-eos';

/** A rollout batch's shape: rows, padded width, and the valid response tokens of each row. */
export interface RolloutShape {
  rows: number;
  width: number;
  /** Valid tokens of each row (through the first EOS), each in [1, width]. */
  lengths: Int32Array;
}

function checkShape(s: RolloutShape, op: string): void {
  if (s.lengths.length !== s.rows) throw new PatentGPTError('E_SHAPE', `${op}: ${s.lengths.length} lengths for ${s.rows} rows`);
  for (let b = 0; b < s.rows; b++)
    if (!(s.lengths[b]! >= 1 && s.lengths[b]! <= s.width))
      throw new PatentGPTError('E_SHAPE', `${op}: row ${b} has length ${s.lengths[b]} outside [1, ${s.width}] (a response has at least one token)`);
}

/**
 * Stage 1: the valid length of each response (through its first EOS, which is kept) and
 * whether it has one. `responses` are the generated ids, padded with anything past their length.
 */
export function truncateAtEos(responses: readonly ArrayLike<number>[], eosId: number | null): { lengths: Int32Array; hasEos: Uint8Array } {
  const lengths = new Int32Array(responses.length);
  const hasEos = new Uint8Array(responses.length);
  responses.forEach((r, b) => {
    let n = r.length;
    if (eosId !== null)
      for (let t = 0; t < r.length; t++)
        if (r[t] === eosId) {
          n = t + 1;
          hasEos[b] = 1;
          break;
        }
    lengths[b] = n;
  });
  return { lengths, hasEos };
}

/** (B, T) mask of the first length + extra positions of each row (extra 1: TRL's padding_mask_p1). */
export function responseMask(s: RolloutShape, extra = 0): Uint8Array {
  checkShape(s, 'responseMask');
  const m = new Uint8Array(s.rows * s.width);
  for (let b = 0; b < s.rows; b++) m.fill(1, b * s.width, b * s.width + Math.min(s.width, s.lengths[b]! + extra));
  return m;
}

/** Stage 2: scores less `penalty` where a response has no EOS (TRL's missing_eos_penalty); null: no penalty. */
export function penalizeMissingEos(scores: ArrayLike<number>, hasEos: ArrayLike<number>, penalty: number | null): Float64Array {
  const out = Float64Array.from(scores);
  if (penalty !== null) for (let b = 0; b < out.length; b++) if (!hasEos[b]) out[b]! -= penalty;
  return out;
}

/** Stage 3: per-token KL estimate against the reference, 0 where mask is 0. */
export function perTokenKl(logprobs: ArrayLike<number>, refLogprobs: ArrayLike<number>, mask: ArrayLike<number>, estimator: KlEstimator = 'k1'): Float64Array {
  if (logprobs.length !== refLogprobs.length || logprobs.length !== mask.length)
    throw new PatentGPTError('E_SHAPE', `perTokenKl: logprobs ${logprobs.length}, refLogprobs ${refLogprobs.length} and mask ${mask.length} differ`);
  const kl = new Float64Array(logprobs.length);
  for (let i = 0; i < kl.length; i++) {
    if (!mask[i]) continue;
    const logr = refLogprobs[i]! - logprobs[i]!;
    kl[i] = estimator === 'k1' ? -logr : Math.expm1(logr) - logr;
  }
  return kl;
}

/** Stage 4: the token rewards -klCoef * KL, with each row's score added at its end (see ScorePosition). */
export function tokenRewards(s: RolloutShape, kl: ArrayLike<number>, klCoef: number, scores: ArrayLike<number>, position: ScorePosition = 'eos'): Float64Array {
  checkShape(s, 'tokenRewards');
  const { rows: B, width: T } = s;
  if (kl.length !== B * T || scores.length !== B) throw new PatentGPTError('E_SHAPE', `tokenRewards: kl ${kl.length} (want ${B * T}), scores ${scores.length} (want ${B})`);
  const r = new Float64Array(B * T);
  for (let i = 0; i < r.length; i++) r[i] = 0 - klCoef * kl[i]!; // 0 - x: +0 where the KL is 0
  for (let b = 0; b < B; b++) {
    const len = s.lengths[b]!;
    const end = position === 'eos' || len >= T ? len - 1 : len;
    r[b * T + end]! += scores[b]!;
  }
  return r;
}

/** Mean of x over mask (TRL's masked_mean). */
export function maskedMean(x: ArrayLike<number>, mask: ArrayLike<number>): number {
  let s = 0, n = 0;
  for (let i = 0; i < x.length; i++)
    if (mask[i]) {
      s += x[i]!;
      n++;
    }
  return s / n;
}

/** Variance over mask, with Bessel's correction by default (TRL's masked_var). */
export function maskedVar(x: ArrayLike<number>, mask: ArrayLike<number>, unbiased = true): number {
  const mu = maskedMean(x, mask);
  let s = 0, n = 0;
  for (let i = 0; i < x.length; i++)
    if (mask[i]) {
      s += (x[i]! - mu) ** 2;
      n++;
    }
  const v = s / n;
  if (!unbiased) return v;
  if (n < 2) throw new PatentGPTError('E_ARGUMENT', `maskedVar: ${n} valid value(s); the unbiased variance needs at least 2 (a larger rollout batch, or longer responses)`);
  return (v * n) / (n - 1);
}

/** (x - mean) / sqrt(var + 1e-8) over mask (mean added back when !shiftMean), 0 outside mask (TRL's masked_whiten then masked_fill). */
export function maskedWhiten(x: ArrayLike<number>, mask: ArrayLike<number>, shiftMean = true): Float64Array {
  const mu = maskedMean(x, mask);
  const inv = 1 / Math.sqrt(maskedVar(x, mask) + 1e-8);
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) if (mask[i]) out[i] = (x[i]! - mu) * inv + (shiftMean ? 0 : mu);
  return out;
}

/**
 * Stage 5: generalised advantage estimation backwards over each row's width, values beyond the
 * value mask taken as 0 (so a row's last valid step bootstraps from nothing). Returns advantages
 * and returns (advantages + values), both (B, T).
 */
export function gae(s: RolloutShape, rewards: ArrayLike<number>, values: ArrayLike<number>, valueMask: ArrayLike<number>, gamma: number, lam: number): { advantages: Float64Array; returns: Float64Array } {
  const { rows: B, width: T } = s;
  if (rewards.length !== B * T || values.length !== B * T || valueMask.length !== B * T)
    throw new PatentGPTError('E_SHAPE', `gae: rewards ${rewards.length}, values ${values.length}, valueMask ${valueMask.length}; want ${B * T} each`);
  const advantages = new Float64Array(B * T);
  const returns = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let last = 0;
    for (let t = T - 1; t >= 0; t--) {
      const i = b * T + t;
      const v = valueMask[i] ? values[i]! : 0;
      const next = t + 1 < T && valueMask[i + 1] ? values[i + 1]! : 0;
      last = rewards[i]! + gamma * next - v + gamma * lam * last;
      advantages[i] = last;
      returns[i] = last + v;
    }
  }
  return { advantages, returns };
}

/** What advantagesAndReturns needs of a scored rollout. */
export interface RolloutMath {
  shape: RolloutShape;
  /** (B, T) log-probs of the sampled tokens under the rollout policy and the reference. */
  logprobs: ArrayLike<number>;
  refLogprobs: ArrayLike<number>;
  /** (B, T) value estimates. */
  values: ArrayLike<number>;
  /** (B) scores, missing-EOS penalty already applied. */
  scores: ArrayLike<number>;
}

export interface RolloutMathOptions {
  klCoef: number;
  klEstimator?: KlEstimator;
  gamma: number;
  lam: number;
  position?: ScorePosition;
  /** Whiten the token rewards first (TRL's whiten_rewards: over the value mask, mean kept). */
  whitenRewards?: boolean;
}

export interface RolloutTargets {
  /** (B, T) mask of the policy's tokens, and of the values ('after-eos': one more). */
  mask: Uint8Array;
  valueMask: Uint8Array;
  kl: Float64Array;
  rewards: Float64Array;
  /** Whitened advantages (0 outside mask) and returns. */
  advantages: Float64Array;
  returns: Float64Array;
  /** Values with the positions outside valueMask at 0 (what the value loss clips around). */
  values: Float64Array;
  /** Mean over rows of each row's summed KL (what the adaptive controller follows). */
  meanKl: number;
}

/** Stages 3 to 6 over a scored rollout. */
export function advantagesAndReturns(r: RolloutMath, o: RolloutMathOptions): RolloutTargets {
  const s = r.shape;
  const position = o.position ?? 'eos';
  const mask = responseMask(s);
  const valueMask = position === 'eos' ? mask : responseMask(s, 1);
  const kl = perTokenKl(r.logprobs, r.refLogprobs, mask, o.klEstimator ?? 'k1');
  let rewards = tokenRewards(s, kl, o.klCoef, r.scores, position);
  if (o.whitenRewards) rewards = maskedWhiten(rewards, valueMask, false);
  const values = new Float64Array(s.rows * s.width);
  for (let i = 0; i < values.length; i++) if (valueMask[i]) values[i] = r.values[i]!;
  const { advantages, returns } = gae(s, rewards, values, valueMask, o.gamma, o.lam);
  let meanKl = 0;
  for (let i = 0; i < kl.length; i++) meanKl += kl[i]!;
  meanKl /= s.rows;
  return { mask, valueMask, kl, rewards, advantages: maskedWhiten(advantages, mask), returns, values, meanKl };
}

/** A KL coefficient the stage reads before each rollout and updates after it. */
export interface KlController {
  readonly value: number;
  /** After a rollout: its mean summed KL per response, over nSteps responses. */
  update(currentKl: number, nSteps: number): void;
}

export class FixedKLController implements KlController {
  constructor(public value: number) {}
  update(): void {}
}

/**
 * Ziegler et al. (2019)'s adaptive coefficient, as TRL's AdaptiveKLController: the error
 * clip(KL / target - 1, -0.2, 0.2) moves the coefficient by a factor 1 + error * nSteps / horizon.
 */
export class AdaptiveKLController implements KlController {
  constructor(public value: number, readonly target: number, readonly horizon: number) {
    if (!(target > 0) || !(horizon > 0)) throw new PatentGPTError('E_ARGUMENT', `AdaptiveKLController: target ${target} and horizon ${horizon} must be > 0`);
  }
  update(currentKl: number, nSteps: number): void {
    const err = Math.min(0.2, Math.max(-0.2, currentKl / this.target - 1));
    this.value *= 1 + (err * nSteps) / this.horizon;
  }
}
