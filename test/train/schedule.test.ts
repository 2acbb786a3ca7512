import { describe, expect, it } from 'vitest';
import { learningRate, validateSchedule, type Schedule } from '../../src/train/schedule.js';

describe('learning-rate schedules', () => {
  it('cosine: linear warmup to the peak, cosine to minLr, flat after', () => {
    const s: Schedule = { kind: 'cosine', lr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-4 };
    expect(learningRate(s, 0)).toBeCloseTo(1e-4, 12);
    expect(learningRate(s, 4)).toBeCloseTo(5e-4, 12);
    expect(learningRate(s, 9)).toBeCloseTo(1e-3, 12);
    expect(learningRate(s, 10)).toBeCloseTo(1e-3, 12);
    expect(learningRate(s, 60)).toBeCloseTo(5.5e-4, 12); // halfway: mean of peak and floor
    expect(learningRate(s, 110)).toBe(1e-4);
    expect(learningRate(s, 10_000)).toBe(1e-4);
    for (let t = 10; t < 110; t++) expect(learningRate(s, t + 1)).toBeLessThanOrEqual(learningRate(s, t));
  });
  it('matches the closed form of HF get_cosine_schedule_with_warmup shifted by one step', () => {
    const s: Schedule = { kind: 'cosine', lr: 3e-4, warmupSteps: 5, totalSteps: 50, minLr: 0 };
    for (let t = 5; t < 50; t++) {
      const p = (t - 5) / 45;
      expect(learningRate(s, t)).toBeCloseTo(3e-4 * 0.5 * (1 + Math.cos(Math.PI * p)), 15);
    }
  });
  it('constant, with and without warmup', () => {
    expect(learningRate({ kind: 'constant', lr: 2e-4, warmupSteps: 0 }, 0)).toBe(2e-4);
    expect(learningRate({ kind: 'constant', lr: 2e-4, warmupSteps: 4 }, 1)).toBeCloseTo(1e-4, 15);
    expect(learningRate({ kind: 'constant', lr: 2e-4, warmupSteps: 4 }, 1000)).toBe(2e-4);
  });
  it('warmup-stable-decay: flat middle, linear or cosine tail', () => {
    const s: Schedule = { kind: 'wsd', lr: 1, warmupSteps: 2, totalSteps: 20, decaySteps: 10, minLr: 0.1 };
    expect(learningRate(s, 0)).toBe(0.5);
    expect(learningRate(s, 5)).toBe(1);
    expect(learningRate(s, 9)).toBe(1);
    expect(learningRate(s, 10)).toBe(1);
    expect(learningRate(s, 15)).toBeCloseTo(0.55, 12);
    expect(learningRate(s, 20)).toBe(0.1);
    expect(learningRate({ ...s, decayShape: 'cosine' }, 15)).toBeCloseTo(0.55, 12);
    expect(learningRate({ ...s, decayShape: 'cosine' }, 12)).toBeGreaterThan(learningRate(s, 12));
  });
  it('is a pure function of the step', () => {
    const s: Schedule = { kind: 'cosine', lr: 1e-3, warmupSteps: 3, totalSteps: 30, minLr: 0 };
    const a = Array.from({ length: 40 }, (_, t) => learningRate(s, t));
    const b = Array.from({ length: 40 }, (_, t) => learningRate(s, 39 - t)).reverse();
    expect(a).toEqual(b);
  });
  it('validation names the field', () => {
    expect(() => validateSchedule({ kind: 'cosine', lr: -1, warmupSteps: 0, totalSteps: 1, minLr: 0 })).toThrow(/schedule.lr/);
    expect(() => validateSchedule({ kind: 'cosine', lr: 1, warmupSteps: 5, totalSteps: 1, minLr: 0 })).toThrow(/schedule.totalSteps/);
    expect(() => validateSchedule({ kind: 'cosine', lr: 1, warmupSteps: 0, totalSteps: 1, minLr: 2 })).toThrow(/schedule.minLr/);
    expect(() => validateSchedule({ kind: 'wsd', lr: 1, warmupSteps: 5, totalSteps: 10, decaySteps: 6, minLr: 0 })).toThrow(/schedule.decaySteps/);
    expect(() => learningRate({ kind: 'constant', lr: 1, warmupSteps: 0 }, -1)).toThrow(/step/);
  });
});
