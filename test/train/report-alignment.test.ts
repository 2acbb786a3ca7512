// report.svg of the alignment stages: PPO's reward and KL, DPO's implicit rewards and accuracy,
// the reward model's accuracy get panels when their metrics are in the records; a pretraining
// run's report has none of them.
import { describe, expect, it } from 'vitest';
import type { MetricRecord } from '../../src/train/metrics.js';
import { renderReportSvg } from '../../src/train/plot.js';

const steps = (n: number, f: (i: number) => Record<string, number>): MetricRecord[] =>
  Array.from({ length: n }, (_, i) => ({ step: i + 1, loss: 1 - i / 20, lr: 1e-3, ...f(i) }) as MetricRecord);
const PPO = 'Reward and KL to the reference (PPO)', DPO = 'Implicit rewards (DPO)', ACC = 'Preference accuracy';
const paths = (svg: string): number => (svg.match(/<path /g) ?? []).length;

describe('report.svg of alignment runs', () => {
  it('PPO: reward, KL and the KL-penalised reward in their own panel', () => {
    const svg = renderReportSvg(steps(10, (i) => ({ reward: 0.1 * i, kl: 0.5 + i, rlhfReward: 0.1 * i - 0.02 * (0.5 + i), klCoef: 0.02 })));
    expect(svg).toContain(PPO);
    expect(svg).toContain('reward - coef x KL');
    expect(svg).not.toContain(DPO);
    expect(svg).not.toContain(ACC);
  });

  it('DPO: chosen/rejected/margin rewards with the held-out margin, and accuracy; the reward model: accuracy', () => {
    const dpo = renderReportSvg(steps(10, (i) => ({
      'rewards/chosen': 0.1 * i, 'rewards/rejected': -0.1 * i, 'rewards/margins': 0.2 * i, 'rewards/accuracies': 0.5 + i / 25,
      ...(i % 5 === 4 ? { 'val.rewards/margins': 0.15 * i, 'val.rewards/accuracies': 0.5 + i / 30 } : {}),
    })));
    expect(dpo).toContain(DPO);
    expect(dpo).toContain('val margin');
    expect(dpo).toContain(ACC);
    expect(dpo).not.toContain(PPO);
    const rm = renderReportSvg(steps(10, (i) => ({ accuracy: 0.5 + i / 25, margin: 0.1 * i })));
    expect(rm).toContain(ACC);
    expect(rm).toContain('train (reward model)');
    expect(rm).not.toContain(DPO);
  });

  it('pretraining: loss and learning rate only', () => {
    const svg = renderReportSvg(steps(10, () => ({})));
    for (const t of [PPO, DPO, ACC]) expect(svg).not.toContain(t);
    expect(paths(renderReportSvg(steps(10, (i) => ({ reward: i, kl: i })))) - paths(svg)).toBe(2); // one line per series drawn
  });
});
