// Learning-rate schedules: pure functions of the step, so a resumed run recomputes the same LR.
// `step` counts optimizer steps already taken (0 for the first update), so the first update of a
// warmup of W steps uses lr / W and update W uses the peak lr (none is wasted at lr 0).
import { PatentGPTError } from '../errors.js';

export type Schedule =
  /** Linear warmup to lr, then cosine decay to minLr at totalSteps (minLr after). */
  | { kind: 'cosine'; lr: number; warmupSteps: number; totalSteps: number; minLr: number }
  /** Linear warmup to lr, then constant. */
  | { kind: 'constant'; lr: number; warmupSteps: number }
  /**
   * Warmup-stable-decay: linear warmup, constant lr, then a decay over the last decaySteps to
   * minLr (linear, or a cosine half-wave) ending at totalSteps.
   */
  | { kind: 'wsd'; lr: number; warmupSteps: number; totalSteps: number; decaySteps: number; minLr: number; decayShape?: 'linear' | 'cosine' };

export type ScheduleKind = Schedule['kind'];

function check(ok: boolean, field: string, message: string): void {
  if (!ok) throw new PatentGPTError('E_CONFIG', `schedule.${field}: ${message}`);
}

/** Checks a schedule's numbers; errors name the field. */
export function validateSchedule(s: Schedule): Schedule {
  const nonNegInt = (v: number, f: string): void => check(Number.isSafeInteger(v) && v >= 0, f, `must be a non-negative integer, got ${v}`);
  check(Number.isFinite(s.lr) && s.lr > 0, 'lr', `must be a positive number, got ${s.lr}`);
  nonNegInt(s.warmupSteps, 'warmupSteps');
  if (s.kind === 'constant') return s;
  if (s.kind !== 'cosine' && s.kind !== 'wsd') check(false, 'kind', `must be cosine, constant or wsd, got ${(s as { kind: string }).kind}`);
  nonNegInt(s.totalSteps, 'totalSteps');
  check(s.totalSteps >= s.warmupSteps, 'totalSteps', `${s.totalSteps} is below warmupSteps ${s.warmupSteps}`);
  check(Number.isFinite(s.minLr) && s.minLr >= 0 && s.minLr <= s.lr, 'minLr', `must be in [0, lr = ${s.lr}], got ${s.minLr}`);
  if (s.kind === 'wsd') {
    nonNegInt(s.decaySteps, 'decaySteps');
    check(s.warmupSteps + s.decaySteps <= s.totalSteps, 'decaySteps', `warmupSteps + decaySteps = ${s.warmupSteps + s.decaySteps} exceeds totalSteps ${s.totalSteps}`);
    check(s.decayShape === undefined || s.decayShape === 'linear' || s.decayShape === 'cosine', 'decayShape', `must be linear or cosine, got ${s.decayShape}`);
  }
  return s;
}

/** The learning rate of update number `step` + 1 (step = updates already done, from 0). */
export function learningRate(s: Schedule, step: number): number {
  if (!Number.isSafeInteger(step) || step < 0) throw new PatentGPTError('E_ARGUMENT', `learningRate: step must be a non-negative integer, got ${step}`);
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  switch (s.kind) {
    case 'constant':
      return s.lr;
    case 'cosine': {
      const span = s.totalSteps - s.warmupSteps;
      if (span <= 0 || step >= s.totalSteps) return s.minLr;
      const progress = (step - s.warmupSteps) / span;
      return s.minLr + (s.lr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
    case 'wsd': {
      const decayStart = s.totalSteps - s.decaySteps;
      if (step < decayStart) return s.lr;
      if (step >= s.totalSteps || s.decaySteps === 0) return s.minLr;
      const progress = (step - decayStart) / s.decaySteps;
      const f = s.decayShape === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
      return s.minLr + (s.lr - s.minLr) * f;
    }
  }
}
