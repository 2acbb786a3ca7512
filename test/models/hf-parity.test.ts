// Our LlamaForCausalLM against Hugging Face transformers' LlamaForCausalLM on one safetensors
// folder (test/fixtures/hf-tiny, made by scripts/hf-parity.py: 2 layers, dim 64, 4 heads,
// 2 kv heads, vocab 256, bf16 on disk): logits, loss, every parameter's gradient, and the
// weights after ten clipped AdamW steps. The golden file needs no Python; the live part runs
// transformers itself, on the fixture and on folders our code saved, and skips without it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import {
  LlamaForCausalLM, loadPretrained, noGrad, preset, savePretrained, validateConfig,
} from '../../src/index.js';
import { expectClose } from '../helpers.js';
import { expectWeightsAfterSteps, norm, pythonReference, relErr, runOurs, type Batch, type Hyper } from './parity-helpers.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const modelDir = join(fixtures, 'hf-tiny');
interface Sample { index: number[]; values: number[]; norm: number; shape: number[] }
interface Golden {
  transformers: string;
  hyper: Hyper;
  batches: Batch[];
  logits: { columns: number[]; values: number[][]; logsumexp: number[] };
  loss: number;
  grads: Record<string, Sample>;
  steps: { losses: number[]; gradNorms: number[]; final: Record<string, Sample>; deltaNorms: Record<string, number> };
}
const golden = JSON.parse(readFileSync(join(fixtures, 'hf-tiny-golden.json'), 'utf8')) as Golden;

describe('parity with transformers LlamaForCausalLM (golden values)', async () => {
  const model = await loadPretrained(modelDir);
  const V = model.config.vocabSize;
  const initial = new Map(model.namedParameters().map(([n, p]) => [n, p.toArray() as Float32Array]));
  const ours = runOurs(model, golden.batches, 10, golden.hyper);
  afterAll(() => model.dispose());

  it('reads the folder transformers wrote (bf16 on disk) as the tiny preset', () => {
    expect(model.config).toEqual(preset('tiny').config);
    expect(model.namedParameters().map(([n]) => n)).toEqual(Object.keys(golden.grads));
  });

  it('the same logits (f32, relative 1e-4) and the same loss', () => {
    const N = golden.batches[0]!.tokens.length;
    const got: number[] = [];
    const want: number[] = [];
    for (let r = 0; r < N; r++)
      golden.logits.columns.forEach((c, j) => {
        got.push(ours.logits[r * V + c]!);
        want.push(golden.logits.values[r]![j]!);
      });
    expectClose(got, want, 1e-5, 1e-4, 'logits');
    const lse = Array.from({ length: N }, (_, r) => {
      const row = ours.logits.subarray(r * V, (r + 1) * V);
      const m = Math.max(...row);
      return m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    });
    expectClose(lse, golden.logits.logsumexp, 1e-5, 1e-5, 'logsumexp of every row');
    expect(Math.abs(ours.loss - golden.loss) / golden.loss).toBeLessThan(1e-5);
  });

  it('the same gradient for every parameter', () => {
    for (const [name, s] of Object.entries(golden.grads)) {
      const g = ours.grads.get(name)!;
      expect(Math.abs(norm(g) - s.norm) / s.norm, `${name}: gradient norm`).toBeLessThan(1e-4);
      const scale = Math.max(...s.values.map(Math.abs));
      expectClose(s.index.map((i) => g[i]!), s.values, 1e-4 * scale, 1e-3, `${name}: gradient`);
    }
  });

  it('ten AdamW steps end at the same weights', () => {
    expectClose(ours.losses, golden.steps.losses, 1e-5, 1e-5, 'losses of the ten steps');
    expectClose(ours.gradNorms, golden.steps.gradNorms, 1e-6, 1e-4, 'gradient norms before clipping');
    for (const [name, s] of Object.entries(golden.steps.final)) {
      const w = ours.final.get(name)!;
      expectClose(s.index.map((i) => w[i]!), s.values, 2e-6, 1e-4, `${name}: weight after 10 steps`);
      const w0 = initial.get(name)!;
      const delta = norm(w.map((x, i) => x - w0[i]!));
      expect(Math.abs(delta - golden.steps.deltaNorms[name]!) / golden.steps.deltaNorms[name]!, `${name}: update norm`).toBeLessThan(2e-3);
    }
  });
});

const { python, why } = findPython(['torch', 'transformers', 'safetensors']);

describe.skipIf(!python)(`parity with transformers, live${python ? '' : ` (skipped: ${why})`}`, () => {
  const work = mkdtempSync(join(tmpdir(), 'pgpt-hf-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const script = new URL('../../scripts/hf-parity.py', import.meta.url).pathname;

  const reference = (dir: string, batches: Batch[], steps: number, tag: string) =>
    pythonReference<{ loss: number; losses: number[] }>(python!, script, work, dir, batches, steps, tag);


  function compareAll(ours: ReturnType<typeof runOurs>, ref: Awaited<ReturnType<typeof reference>>, steps: boolean) {
    const report: Record<string, number> = {};
    report.logits = relErr(ours.logits, ref.arrays.get('logits')!);
    expect(report.logits).toBeLessThan(1e-4 / 4);
    expectClose(ours.logits, ref.arrays.get('logits')!, 1e-5, 1e-4, 'logits');
    expect(Math.abs(ours.loss - ref.json.loss) / ref.json.loss).toBeLessThan(1e-5);
    let worstGrad = 0;
    for (const [n, g] of ours.grads) worstGrad = Math.max(worstGrad, relErr(g, ref.arrays.get(`grad.${n}`)!));
    report.grads = worstGrad;
    expect(worstGrad).toBeLessThan(1e-4);
    if (steps) {
      expectWeightsAfterSteps(ours.final, ref.arrays, golden.hyper.lr, report);
      expectClose(ours.losses, ref.json.losses, 1e-5, 1e-5, 'step losses');
    }
    console.log(`parity (max |ours - transformers| / max |transformers| per tensor): ${JSON.stringify(report)}`);
  }

  it('the fixture folder: full logits, every gradient, weights after 10 AdamW steps', async () => {
    const ref = await reference(modelDir, golden.batches, 10, 'fixture');
    const model = await loadPretrained(modelDir);
    compareAll(runOurs(model, golden.batches, 10, golden.hyper), ref, true);
    model.dispose();
  });

  it('transformers loads the folder our code saved (f32, one file) and computes the same', async () => {
    const model = new LlamaForCausalLM(preset('tiny').config, { seed: 5, initStd: 0.05 });
    const dir = join(work, 'ours-f32');
    await savePretrained(model, dir);
    const ref = await reference(dir, golden.batches, 3, 'ours-f32');
    compareAll(runOurs(model, golden.batches, 3, golden.hyper), ref, true);
    model.dispose();
  });

  it('transformers loads our sharded bf16 folder (index.json), with linear RoPE scaling and tied embeddings', async () => {
    const cfg = validateConfig({ ...preset('tiny-tied').config, ropeScaling: { type: 'linear', factor: 2 } });
    const model = new LlamaForCausalLM(cfg, { seed: 6, initStd: 0.05 });
    const dir = join(work, 'ours-bf16');
    await savePretrained(model, dir, { dtype: 'bf16', maxShardBytes: 40_000 });
    const back = await loadPretrained(dir); // the bf16-rounded weights both sides compute with
    expect(back.config).toEqual(cfg);
    const ref = await reference(dir, golden.batches, 0, 'ours-bf16');
    const ours = runOurs(back, golden.batches, 0, golden.hyper);
    compareAll(ours, ref, false);
    // and the rounding is what bf16 does: close to the f32 model, not equal
    const f32Logits = noGrad(() => model.forward({ tokens: Int32Array.from(golden.batches[0]!.tokens), cuSeqlens: golden.batches[0]!.cuSeqlens }));
    expect(relErr(ours.logits, f32Logits.toArray() as Float32Array)).toBeLessThan(0.05);
    f32Logits.dispose();
    model.dispose();
    back.dispose();
  });

  it('dynamic-base RoPE past maxSeqLen equals transformers rope_type "dynamic" (one 24-token document, maxSeqLen 16)', async () => {
    const cfg = validateConfig({ ...preset('tiny').config, maxSeqLen: 16, ropeScaling: { type: 'dynamic-base', factor: 2 } });
    const model = new LlamaForCausalLM(cfg, { seed: 7, initStd: 0.05 });
    const dir = join(work, 'ours-dynamic');
    await savePretrained(model, dir);
    const batch = golden.batches[1]!; // a single 24-token document
    expect(batch.cuSeqlens).toEqual([0, 24]);
    const ref = await reference(dir, [batch], 0, 'ours-dynamic');
    const ours = runOurs(model, [batch], 0, golden.hyper);
    compareAll(ours, ref, false);
    // and the scaling matters: without it the logits differ
    const plain = new LlamaForCausalLM(validateConfig({ ...cfg, ropeScaling: null }), { seed: 7, initStd: 0.05 });
    const unscaled = runOurs(plain, [batch], 0, golden.hyper);
    expect(relErr(unscaled.logits, ref.arrays.get('logits')!)).toBeGreaterThan(1e-3);
    model.dispose();
    plain.dispose();
  });
});
