// The DPO stage: the loss (sigmoid, cDPO label smoothing, IPO) and TRL's reward metrics against
// float64 formulas; the sequence log-probs against a full-logits reference; the reference pass
// with LoRA adapters taken off (the frozen base) and put back; config errors naming the field;
// end to end on real pairs (human vs machine-written patent abstracts in ../shared/data, skipped
// with a message when absent): the held-out chosen-vs-rejected margin starts at 0 (the reference
// is the initial model) and rises, and a run interrupted after a checkpoint resumes bit-exact (reading the
// reference log-probs its first start kept in the run folder).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { collatePairs, loadPreferenceData, normalizePreference, tokenizePair, type PreferenceExample } from '../../src/data/preference/index.js';
import { LlamaForCausalLM, savePretrained, validateConfig } from '../../src/models/index.js';
import { applyLora, loraParameters } from '../../src/nn/lora.js';
import { Tensor, logSoftmax, noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { validateStageConfig, type DpoConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { withAdaptersDisabled } from '../../src/nn/lora.js';
import { dpo, dpoLoss, sequenceLogps } from '../../src/train/stages/dpo.js';
import { llama2ByteRenderer } from '../../src/train/stages/sft.js';

const DATA = process.env.PATENTGPT_DATA ?? path.resolve(import.meta.dirname, '../../../shared/data');
const GENPAIRS = path.join(DATA, 'us-abstract-claim-genpairs', 'Llama2_A61B_1000.csv');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-dpo-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const tok = new ByteTokenizer();
const renderer = llama2ByteRenderer(tok);
const TINY = { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, maxSeqLen: 256 };

function examples(): PreferenceExample[] {
  const recs = [
    { prompt: 'What is prior art?', chosen: 'Everything public before filing.', rejected: 'Old paintings.' },
    { prompt: 'Define novelty.', chosen: 'Not disclosed before.', rejected: 'Being fun and new to me, honestly.' },
    { prompt: 'What is a claim?', chosen: 'The legal scope of the patent.', rejected: 'A request.' },
  ];
  return recs.map((r, i) => {
    const n = normalizePreference(r);
    if (!n.ok) throw new Error(n.detail);
    const t = tokenizePair(renderer, n.pair, { file: 'x', index: i });
    if (!t.ok) throw new Error(t.detail);
    return t.example;
  });
}

describe('DPO loss and metrics', () => {
  const batch = collatePairs(examples(), [0, 1, 2]);
  const pol = [-10.5, -20.25, -7.0, -12.0, -18.0, -9.5]; // chosen 0..2, rejected 0..2
  const ref = { chosen: Float64Array.of(-11, -20, -8), rejected: Float64Array.of(-11.5, -19, -9) };
  const logsig = (x: number): number => -Math.log1p(Math.exp(-x));
  const margins = [0, 1, 2].map((i) => pol[i]! - ref.chosen[i]! - (pol[3 + i]! - ref.rejected[i]!));

  it('sigmoid, cDPO (label smoothing) and IPO equal their float64 formulas; rewards/* and logps/* as TRL computes them', () => {
    const beta = 0.3;
    const run = (obj: Parameters<typeof dpoLoss>[3]): ReturnType<typeof dpoLoss> => noGrad(() => dpoLoss(Tensor.from(Float32Array.from(pol), [6]), batch, ref, obj));
    const sig = run({ beta, loss: 'sigmoid', labelSmoothing: 0, reference: 'precomputed' });
    expect(sig.loss.item()).toBeCloseTo(-margins.reduce((a, m) => a + logsig(beta * m), 0) / 3, 5);
    const eps = 0.2;
    const cdpo = run({ beta, loss: 'sigmoid', labelSmoothing: eps, reference: 'precomputed' });
    expect(cdpo.loss.item()).toBeCloseTo(margins.reduce((a, m) => a - (1 - eps) * logsig(beta * m) - eps * logsig(-beta * m), 0) / 3, 5);
    const ipo = run({ beta, loss: 'ipo', labelSmoothing: 0, reference: 'precomputed' });
    const n = Array.from(batch.responseTokens);
    const ipoWant = [0, 1, 2].reduce((a, i) => {
      const d = (pol[i]! - ref.chosen[i]!) / n[i]! - (pol[3 + i]! - ref.rejected[i]!) / n[3 + i]! - 1 / (2 * beta);
      return a + d * d;
    }, 0) / 3;
    expect(ipo.loss.item()).toBeCloseTo(ipoWant, 5);
    const rc = [0, 1, 2].map((i) => beta * (pol[i]! - ref.chosen[i]!));
    const rr = [0, 1, 2].map((i) => beta * (pol[3 + i]! - ref.rejected[i]!));
    const m = sig.metrics as Record<string, number>;
    expect(m['rewards/chosen']).toBeCloseTo((rc[0]! + rc[1]! + rc[2]!) / 3, 6);
    expect(m['rewards/rejected']).toBeCloseTo((rr[0]! + rr[1]! + rr[2]!) / 3, 6);
    expect(m['rewards/margins']).toBeCloseTo(beta * (margins[0]! + margins[1]! + margins[2]!) / 3, 6);
    expect(m['rewards/accuracies']).toBeCloseTo(margins.filter((x) => x > 0).length / 3, 6);
    expect(m['logps/chosen']).toBeCloseTo((pol[0]! + pol[1]! + pol[2]!) / 3, 5);
  });

  it('sequence log-probs: the sum of log-softmax over each side\'s response tokens, as from the full logits', () => {
    const model = new LlamaForCausalLM(validateConfig(TINY), { seed: 3, initStd: 0.1 });
    try {
      const got = noGrad(() => sequenceLogps(model, batch).toArray() as Float32Array);
      const lsm = noGrad(() => logSoftmax(model.forward(batch)).toArray() as Float32Array); // (N, V)
      const want = new Float64Array(6);
      for (let s = 0; s < 6; s++)
        for (let i = batch.cuSeqlens[s]!; i + 1 < batch.cuSeqlens[s + 1]!; i++) if (batch.targets[i]! >= 0) want[s] += lsm[i * 259 + batch.targets[i]!]!;
      for (let s = 0; s < 6; s++) expect(got[s]).toBeCloseTo(want[s]!, 3);
      expect(Array.from(batch.responseTokens).every((x) => x > 5)).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it('withAdaptersDisabled: the frozen base\'s log-probs with trained adapters attached, and the adapters back afterwards', () => {
    const base = new LlamaForCausalLM(validateConfig(TINY), { seed: 3, initStd: 0.1 });
    const lora = new LlamaForCausalLM(validateConfig(TINY), { seed: 3, initStd: 0.1 });
    try {
      applyLora(lora, { r: 2, targetModules: ['q_proj', 'v_proj'] });
      noGrad(() => {
        for (const [, p] of loraParameters(lora)) p.write(Float32Array.from({ length: p.size }, (_, i) => 0.05 * Math.sin(i + 1)));
      });
      const b = noGrad(() => Array.from(sequenceLogps(base, batch).toArray() as Float32Array));
      const adapted = noGrad(() => Array.from(sequenceLogps(lora, batch).toArray() as Float32Array));
      const off = noGrad(() => withAdaptersDisabled(lora, () => Array.from(sequenceLogps(lora, batch).toArray() as Float32Array)));
      expect(Math.max(...adapted.map((x, i) => Math.abs(x - b[i]!)))).toBeGreaterThan(1e-3); // the adapters matter
      expect(Math.max(...off.map((x, i) => Math.abs(x - b[i]!)))).toBeLessThan(1e-5);
      const again = noGrad(() => Array.from(sequenceLogps(lora, batch).toArray() as Float32Array));
      expect(again).toEqual(adapted);
    } finally {
      base.dispose();
      lora.dispose();
    }
  });
});

describe('DPO config', () => {
  const base = { kind: 'dpo', name: 'd', model: 'llama-tiny', init: root, data: { sources: ['x.jsonl'] }, seqLen: 64, batchSize: 2, steps: 1, optimizer: { lr: 1e-3 } };
  it('defaults (beta 0.1, sigmoid, precomputed; adapters-off under LoRA) and errors naming the field', () => {
    const c = validateStageConfig(base) as DpoConfig;
    expect(c.dpo).toEqual({ beta: 0.1, loss: 'sigmoid', labelSmoothing: 0, reference: 'precomputed' });
    expect((validateStageConfig({ ...base, lora: { r: 4 } }) as DpoConfig).dpo.reference).toBe('adapters-off');
    expect(() => validateStageConfig({ ...base, dpo: { reference: 'adapters-off' } })).toThrow(/dpo\.reference: "adapters-off" needs lora/);
    expect(() => validateStageConfig({ ...base, dpo: { loss: 'ipo', labelSmoothing: 0.1 } })).toThrow(/dpo\.labelSmoothing: applies to the "sigmoid" loss/);
    expect(() => validateStageConfig({ ...base, dpo: { betta: 1 } })).toThrow(/dpo\.betta: unknown field/);
    expect(() => validateStageConfig({ ...base, dpo: { beta: 0 } })).toThrow(/dpo\.beta: must be a number > 0/);
    expect(() => validateStageConfig({ ...base, data: { sources: ['x'], maxLength: 100 } })).toThrow(/data\.maxLength: 100 exceeds seqLen 64/);
    expect(() => validateStageConfig({ ...base, init: undefined })).toThrow(/init: missing/);
  });
});

describe.skipIf(!fs.existsSync(GENPAIRS))('DPO end to end on human vs machine-written patent abstracts (../shared/data)', () => {
  const initDir = path.join(root, 'init');
  const config = (runDir: string, extra: Record<string, unknown> = {}): DpoConfig => {
    const c = validateStageConfig({
      kind: 'dpo', name: 'dpo-e2e', model: initDir, init: initDir, tokenizer: 'byte', chatTemplate: 'llama2',
      data: {
        sources: [{ path: GENPAIRS, fields: { chosen: 'patent_abstract', rejected: 'generated_abstract' }, promptTemplate: 'Write the abstract of the patent "{patent_title}".', limit: 240 }],
        valFraction: 0.1, splitSeed: 1,
      },
      seqLen: 160, batchSize: 4, steps: 24, optimizer: { lr: 2e-3, weightDecay: 0, gradClip: 1 }, schedule: { kind: 'constant', warmupSteps: 0 },
      evalEvery: 12, evalBatches: 6, checkpointEvery: 12, logEvery: 1, threads: 2, seed: 0, dpo: { beta: 0.1 }, ...extra,
    }) as DpoConfig;
    c.runDir = runDir;
    return c;
  };

  it('the held-out margin starts at 0 and rises, with reward accuracy above chance; an interrupted run resumes bit-exact', async () => {
    const m = new LlamaForCausalLM(validateConfig(TINY), { seed: 11, initStd: 0.05 });
    await savePretrained(m, initDir, { tokenizer: tok });
    m.dispose();
    const cfg = config(path.join(root, 'run'));
    const r = await dpo(cfg, { progress: null });
    expect(r.status).toBe('completed');
    expect(r.data.val).toBeGreaterThan(15);
    const recs = readMetrics(path.join(cfg.runDir, 'metrics.jsonl')) as Record<string, number>[];
    const val = recs.filter((x) => x['val.rewards/margins'] !== undefined);
    const train = recs.filter((x) => x.loss !== undefined);
    expect(val).toHaveLength(2); // steps 12 and 24
    const first = train[0]!;
    expect(first['rewards/margins']).toBe(0); // policy = reference before the first update
    expect(first.loss).toBeCloseTo(Math.log(2), 5);
    const last = val.at(-1)!;
    console.log(`DPO e2e: held-out rewards/margins ${val.map((x) => x['val.rewards/margins']!.toFixed(3)).join(' -> ')}, accuracies ${val.map((x) => x['val.rewards/accuracies']!.toFixed(2)).join(' -> ')}, val loss ${val.map((x) => x.valLoss!.toFixed(4)).join(' -> ')} (ln 2 = 0.6931)`);
    expect(last['val.rewards/margins']!).toBeGreaterThan(0.05);
    expect(last['val.rewards/margins']!).toBeGreaterThan(val[0]!['val.rewards/margins']!);
    expect(last['val.rewards/accuracies']!).toBeGreaterThan(0.6);
    expect(last.valLoss!).toBeLessThan(Math.log(2) - 0.02);

    // interrupted after the step-12 checkpoint, then the same command again
    const cut = config(path.join(root, 'cut'));
    const ac = new AbortController();
    const a = await dpo(cut, { progress: null, signal: ac.signal, onMetrics: (rec) => { if (rec.step === 12 && rec.loss !== undefined) ac.abort(); } });
    expect(a.status).toBe('interrupted');
    expect(fs.existsSync(path.join(cut.runDir, 'reference-logps.json'))).toBe(true);
    const logs: string[] = [];
    const b = await dpo(cut, { progress: null, log: (msg) => logs.push(msg) });
    expect(b.status).toBe('completed');
    // the resume reads the reference of the first start instead of another pass
    expect(logs.some((l) => /reference log-probs of \d+ pairs read from .*reference-logps\.json/.test(l))).toBe(true);
    const lossesOf = (dir: string): number[] => (readMetrics(path.join(dir, 'metrics.jsonl')) as Record<string, number>[]).filter((x) => x.loss !== undefined).map((x) => x.loss!);
    const cutLosses = lossesOf(cut.runDir);
    expect(cutLosses.slice(-12)).toEqual(lossesOf(cfg.runDir).slice(-12));
  }, 120_000);
});
