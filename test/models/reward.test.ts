// The reward model's own contract (src/models/reward.ts), no peers: the decoder is LlamaForCausalLM's
// (same seed, same hidden states), a score is read at each packed sequence's last token (packed =
// one at a time; values() at that token = the score), the Bradley-Terry loss and its gradient
// reach the head and the decoder, a causal LM folder starts a reward model (lm_head dropped, a
// new head), and bad batches are refused with errors naming the problem.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, savePretrained, validateConfig } from '../../src/models/index.js';
import {
  ScoreHeadModel, bradleyTerryLoss, initScoreHeadModel, loadRewardModel, pairStats, packSequences, readRewardConfig, rewardModelFromCausalLM, saveRewardModel,
} from '../../src/models/reward.js';
import { Tensor, noGrad } from '../../src/tensor/index.js';

const cfg = validateConfig({ vocabSize: 64, dim: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 64, maxSeqLen: 64 });
const seqs = [[5, 9, 11, 2], [7, 8], [3, 4, 5, 6, 7, 8, 9], [12]];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-reward-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const arr = (t: Tensor): number[] => {
  const a = Array.from(t.toArray() as Float32Array);
  t.dispose();
  return a;
};

describe('ScoreHeadModel', () => {
  it('has transformers\' parameter names and LlamaForCausalLM\'s decoder for the same seed', () => {
    const rm = new ScoreHeadModel(cfg, { seed: 3 });
    const lm = new LlamaForCausalLM(cfg, { seed: 3 });
    const names = rm.namedParameters().map(([n]) => n);
    expect(names.at(-1)).toBe('score.weight');
    expect(names).not.toContain('lm_head.weight');
    expect(names.slice(0, -1)).toEqual(lm.namedParameters().map(([n]) => n).filter((n) => n !== 'lm_head.weight'));
    const batch = packSequences(seqs);
    const a = noGrad(() => arr(rm.hidden(batch)));
    const b = noGrad(() => arr(lm.hidden(batch)));
    expect(a).toEqual(b);
    rm.dispose();
    lm.dispose();
  });

  it('reads each score at its sequence\'s last token: packed equals one at a time, and values() there', () => {
    const rm = new ScoreHeadModel(cfg, { seed: 4, scoreInitStd: 0.5 });
    noGrad(() => {
      const packed = arr(rm.scores(packSequences(seqs)));
      const single = seqs.map((s) => arr(rm.scores(packSequences([s])))[0]!);
      packed.forEach((x, i) => expect(x).toBeCloseTo(single[i]!, 5));
      const values = arr(rm.values(packSequences(seqs)));
      let end = 0;
      seqs.forEach((s, i) => {
        end += s.length;
        expect(values[end - 1]).toBeCloseTo(packed[i]!, 5);
      });
      // a token after the end changes nothing before it (causal), the end token does
      const longer = arr(rm.scores(packSequences([[...seqs[0]!, 40]])))[0]!;
      expect(Math.abs(longer - packed[0]!)).toBeGreaterThan(1e-6);
      expect(new Set(packed.map((x) => x.toFixed(5))).size).toBe(4);
    });
    rm.dispose();
  });

  it('bradleyTerryLoss is -mean log sigmoid(c - r - margin) (+ centering) and its gradient reaches the head and the decoder', () => {
    const c = Tensor.from([1.5, -0.2, 0.3]);
    const r = Tensor.from([0.5, 0.4, 0.3]);
    const ls = (x: number): number => -Math.log1p(Math.exp(-x));
    const want = -(ls(1) + ls(-0.6) + ls(0)) / 3;
    expect(arr(bradleyTerryLoss(c, r))[0]).toBeCloseTo(want, 6);
    const wantM = -(ls(1 - 0.5) + ls(-0.6 - 0) + ls(0 - 1)) / 3 + 0.01 * ((2 ** 2 + 0.2 ** 2 + 0.6 ** 2) / 3);
    expect(arr(bradleyTerryLoss(c, r, { margin: [0.5, 0, 1], centerCoef: 0.01 }))[0]).toBeCloseTo(wantM, 6);
    expect(() => bradleyTerryLoss(c, Tensor.from([1, 2]))).toThrow(/one score per pair/);
    expect(pairStats([1, 0, 2], [0, 0, 3])).toEqual({ accuracy: 1 / 3, margin: 0 });

    const rm = new ScoreHeadModel(cfg, { seed: 5 });
    const s = rm.scores(packSequences(seqs));
    const loss = bradleyTerryLoss(s.narrow(0, 2), s.narrow(2, 2));
    loss.backward();
    for (const n of ['score.weight', 'model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight']) {
      const g = rm.getParameter(n)!.grad!;
      expect(Math.max(...(g.toArray() as Float32Array).map(Math.abs)), n).toBeGreaterThan(0);
    }
    rm.dispose();
  });

  it('starts from a causal LM folder: the decoder loaded, lm_head dropped, a new normal(0, 0.02) head; a reward folder round-trips', async () => {
    const lm = new LlamaForCausalLM(cfg, { seed: 6, initStd: 0.05 });
    const lmDir = path.join(work, 'lm');
    await savePretrained(lm, lmDir);
    expect((await readRewardConfig(lmDir)).sequenceClassification).toBe(false);
    const rm = await rewardModelFromCausalLM(lmDir, { seed: 1 });
    const lmEmbed = lm.getParameter('model.embed_tokens.weight')!.toArray();
    expect(rm.getParameter('model.embed_tokens.weight')!.toArray()).toEqual(lmEmbed);
    const head = Array.from(rm.score.weight.toArray() as Float32Array);
    const std = Math.sqrt(head.reduce((a, x) => a + x * x, 0) / head.length);
    expect(std).toBeGreaterThan(0.01);
    expect(std).toBeLessThan(0.04);
    // the same seed draws the same head
    const again = new ScoreHeadModel(cfg, { init: 'zeros' });
    expect(await initScoreHeadModel(again, lmDir, { seed: 1 })).toBe('causal-lm');
    expect(Array.from(again.score.weight.toArray() as Float32Array)).toEqual(head);

    rm.padTokenId = 0;
    const rmDir = path.join(work, 'rm');
    await saveRewardModel(rm, rmDir);
    const back = await loadRewardModel(rmDir);
    expect(back.padTokenId).toBe(0);
    for (const [n, p] of rm.namedParameters()) expect(back.getParameter(n)!.toArray(), n).toEqual(p.toArray());
    await expect(loadRewardModel(lmDir)).rejects.toThrow(/causal LM folder, not a reward model/);
    for (const m of [lm, rm, again, back]) m.dispose();
  });

  it('refuses empty sequences and boundaries that do not cover the tokens', () => {
    const rm = new ScoreHeadModel(cfg, { seed: 1 });
    expect(() => rm.scores({ tokens: Int32Array.of(1, 2, 3), cuSeqlens: [0, 3, 3] })).toThrow(/sequence 1 is empty/);
    expect(() => rm.scores({ tokens: Int32Array.of(1, 2, 3), cuSeqlens: [0, 2] })).toThrow(/run from 0 to N = 3/);
    rm.dispose();
  });
});
