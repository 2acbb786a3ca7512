// PPO's step math against TRL's PPOTrainer on fixed rollouts (scripts/trl-ppo-parity.py): the same
// logits, values, scores and responses (EOS early, late, first, twice, and missing) give the same
// lengths, KL, token rewards, advantages, returns, policy and value losses, clip fractions and
// gradients of the loss in the logits and values within 1e-5; both TRL's layout (the score one
// past the EOS) and ours (the score on the EOS). Live where trl is installed
// (PATENTGPT_REQUIRE_PEERS=1 makes its absence a failure), else the committed fixture
// test/fixtures/trl-ppo-golden.json (PATENTGPT_TRL_FROM_FIXTURE=1 takes it even then).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { Tensor, gatherRows, logprobs, scope } from '../../src/tensor/index.js';
import { meanEntropy, ppoLoss } from '../../src/train/ppo/loss.js';
import {
  AdaptiveKLController, advantagesAndReturns, gae, maskedWhiten, penalizeMissingEos, responseMask, tokenRewards, truncateAtEos,
  type KlEstimator, type ScorePosition,
} from '../../src/train/ppo/math.js';

const repo = new URL('../../', import.meta.url).pathname;
const fixtureFile = path.join(repo, 'test/fixtures/trl-ppo-golden.json');

interface Case {
  mode: 'trl' | 'eos'; klEstimator: KlEstimator; whitenRewards: boolean; missingEosPenalty: number | null;
  klCoef: number; gamma: number; lam: number; cliprange: number; cliprangeValue: number; vfCoef: number;
  lengths: number[]; hasEos: number[]; scores: number[]; kl: number[]; rewards: number[]; advantages: number[]; returns: number[];
  newLogprobs: number[]; entropy: number[]; pgLoss: number; vfLoss: number; loss: number; clipFraction: number; valueClipFraction: number;
  approxKl: number; gradLogits: number[]; gradValues: number[];
}
interface Golden {
  versions: Record<string, string>; B: number; T: number; V: number; eos: number; responses: number[][];
  oldLogits: number[]; logits: number[]; refLogits: number[]; values: number[]; vpred: number[]; scores: number[];
  cases: Case[]; adaptiveKl: { init: number; target: number; horizon: number; updates: { current: number; nSteps: number; value: number }[] };
}

function golden(): { g: Golden; source: string } {
  const fromFixture = (): { g: Golden; source: string } => ({ g: JSON.parse(fs.readFileSync(fixtureFile, 'utf8')) as Golden, source: 'fixture' });
  if (process.env.PATENTGPT_TRL_FROM_FIXTURE === '1') return fromFixture();
  const { python } = findPython(['trl', 'torch']); // throws where peers are required
  if (!python) return fromFixture();
  const out = execFileSync(python, [path.join(repo, 'scripts/trl-ppo-parity.py')], { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = out.trim().split('\n');
  return { g: JSON.parse(lines[lines.length - 1]!) as Golden, source: 'live' };
}

const { g, source } = golden();
const TOL = 1e-5;

function close(actual: ArrayLike<number>, expected: readonly number[], what: string, tol = TOL): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  expect(worst, `${what}: worst |diff| ${worst} at ${at} (ours ${actual[at]}, TRL ${expected[at]})`).toBeLessThanOrEqual(tol);
}

/** log softmax(logits)[response] of every (row, position), (B T). */
function tokenLogprobs(flatLogits: number[]): Float32Array {
  return scope(() => {
    const l = Tensor.from(Float32Array.from(flatLogits), [g.B * g.T, g.V]);
    const ids = Tensor.from(Int32Array.from(g.responses.flat()), [g.B * g.T], { dtype: 'i32' });
    return logprobs(l, ids).toArray() as Float32Array;
  });
}

describe(`PPO step math against TRL's PPOTrainer (${source}: trl ${g.versions.trl})`, () => {
  const { lengths, hasEos } = truncateAtEos(g.responses, g.eos);
  const shape = { rows: g.B, width: g.T, lengths };
  const oldLp = tokenLogprobs(g.oldLogits);
  const refLp = tokenLogprobs(g.refLogits);

  it('finds the true EOS of each response (early, late, first, twice, none)', () => {
    for (const c of g.cases) {
      expect(Array.from(lengths)).toEqual(c.lengths);
      expect(Array.from(hasEos)).toEqual(c.hasEos);
    }
  });

  for (const c of g.cases) {
    const position: ScorePosition = c.mode === 'trl' ? 'after-eos' : 'eos';
    describe(`${c.mode === 'trl' ? "TRL's layout (score one past the EOS)" : 'score on the EOS'}, ${c.klEstimator}${c.whitenRewards ? ', whitened rewards' : ''}`, () => {
      const scores = penalizeMissingEos(g.scores, hasEos, c.missingEosPenalty);
      const r = advantagesAndReturns(
        { shape, logprobs: oldLp, refLogprobs: refLp, values: g.values, scores },
        { klCoef: c.klCoef, klEstimator: c.klEstimator, gamma: c.gamma, lam: c.lam, position, whitenRewards: c.whitenRewards },
      );

      it('scores (missing-EOS penalty), per-token KL, token rewards', () => {
        close(scores, c.scores, 'scores');
        close(r.kl, c.kl, 'kl');
        close(r.rewards, c.rewards, 'rewards');
      });

      it('advantages (GAE, whitened) and returns within 1e-5', () => {
        close(r.advantages, c.advantages, 'advantages');
        close(r.returns, c.returns, 'returns');
      });

      it('policy and value losses, clip fractions, approx-KL, entropy and gradients within 1e-5', () => {
        scope(() => {
          const T = g.T;
          const pol: number[] = [], val: number[] = [];
          for (let i = 0; i < g.B * T; i++) {
            if (r.mask[i]) pol.push(i);
            if (r.valueMask[i]) val.push(i);
          }
          const logits = Tensor.from(Float32Array.from(g.logits), [g.B * T, g.V]);
          logits.requiresGrad = true;
          const vpred = Tensor.from(Float32Array.from(g.vpred), [g.B * T, 1]);
          vpred.requiresGrad = true;
          const rows = gatherRows(logits, Tensor.from(Int32Array.from(pol), [pol.length], { dtype: 'i32' }));
          const ids = Tensor.from(Int32Array.from(pol.map((i) => g.responses[Math.floor(i / T)]![i % T]!)), [pol.length], { dtype: 'i32' });
          const values = gatherRows(vpred, Tensor.from(Int32Array.from(val), [val.length], { dtype: 'i32' })).reshape([val.length]);
          const pick = (a: ArrayLike<number>, idx: number[]): Float32Array => Float32Array.from(idx, (i) => a[i]!);
          const out = ppoLoss(
            { logprobs: logprobs(rows, ids), oldLogprobs: pick(oldLp, pol), advantages: pick(r.advantages, pol), values, oldValues: pick(r.values, val), returns: pick(r.returns, val) },
            { cliprange: c.cliprange, cliprangeValue: c.cliprangeValue, vfCoef: c.vfCoef },
          );
          expect(Math.abs(out.pgLoss - c.pgLoss), `pgLoss ${out.pgLoss} vs ${c.pgLoss}`).toBeLessThanOrEqual(TOL);
          expect(Math.abs(out.vfLoss - c.vfLoss), `vfLoss ${out.vfLoss} vs ${c.vfLoss}`).toBeLessThanOrEqual(TOL);
          expect(Math.abs(out.loss.item() - c.loss)).toBeLessThanOrEqual(TOL);
          expect(out.clipFraction).toBeCloseTo(c.clipFraction, 6);
          expect(out.valueClipFraction).toBeCloseTo(c.valueClipFraction, 6);
          expect(Math.abs(out.approxKl - c.approxKl)).toBeLessThanOrEqual(TOL);
          out.loss.backward();
          close(logits.grad!.toArray() as Float32Array, c.gradLogits, 'd loss / d logits');
          close(vpred.grad!.toArray() as Float32Array, c.gradValues, 'd loss / d values');
          // entropy: trl's entropy_from_logits over the valid tokens
          const want = pol.reduce((s, i) => s + c.entropy[i]!, 0) / pol.length;
          expect(Math.abs(meanEntropy(rows) - want)).toBeLessThanOrEqual(TOL);
        });
      });
    });
  }

  it("the adaptive KL coefficient follows TRL's AdaptiveKLController", () => {
    const a = g.adaptiveKl;
    const ctl = new AdaptiveKLController(a.init, a.target, a.horizon);
    for (const u of a.updates) {
      ctl.update(u.current, u.nSteps);
      expect(Math.abs(ctl.value - u.value)).toBeLessThanOrEqual(1e-12);
    }
  });
});

describe('PPO rollout math, by hand', () => {
  it('the score lands on the EOS, not on the padding after it, and nothing is credited past the response', () => {
    const shape = { rows: 2, width: 4, lengths: Int32Array.of(2, 4) };
    const r = tokenRewards(shape, new Float64Array(8), 0.1, [5, 7], 'eos');
    expect(Array.from(r)).toEqual([0, 5, 0, 0, 0, 0, 0, 7]);
    const trl = tokenRewards(shape, new Float64Array(8), 0.1, [5, 7], 'after-eos');
    expect(Array.from(trl)).toEqual([0, 0, 5, 0, 0, 0, 0, 7]);
    const { advantages, returns } = gae(shape, r, new Float64Array(8), responseMask(shape), 1, 1);
    expect(Array.from(advantages)).toEqual([5, 5, 0, 0, 7, 7, 7, 7]);
    expect(Array.from(returns)).toEqual([5, 5, 0, 0, 7, 7, 7, 7]);
  });

  it('a missing EOS costs the penalty; whitening leaves the padding at 0', () => {
    expect(Array.from(penalizeMissingEos([1, 1], [1, 0], 2))).toEqual([1, -1]);
    expect(Array.from(penalizeMissingEos([1, 1], [1, 0], null))).toEqual([1, 1]);
    const w = maskedWhiten([1, 2, 3, 100], [1, 1, 1, 0]);
    expect(w[3]).toBe(0);
    expect(w[0]! + w[1]! + w[2]!).toBeCloseTo(0, 12);
  });
});
