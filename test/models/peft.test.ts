// LoRA adapters in PEFT's format (src/models/peft.ts) against PEFT itself. The golden part loads
// the adapter PEFT saved (test/fixtures/peft-tiny-adapter, made by scripts/peft-parity.py on the
// hf-tiny folder) and needs no Python: logits, loss, every lora_A/lora_B gradient and
// merge_and_unload's weights. The live part has PEFT load a base folder and an adapter our code
// saved (PeftModel.from_pretrained) and compute the same; it skips without peft.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, LlamaForCausalLM, applyLora, loadLora, loadPretrained, loraLayers, loraParameters,
  mergeLora, noGrad, preset, readLoraConfig, readSafetensors, saveLora, savePretrained, writeSafetensors, Tensor,
} from '../../src/index.js';
import { expectClose, randomArray } from '../helpers.js';
import { relErr } from './parity-helpers.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const baseDir = join(fixtures, 'hf-tiny');
const adapterDir = join(fixtures, 'peft-tiny-adapter');
interface Batch { tokens: number[]; targets: number[]; cuSeqlens: number[] }
interface Golden {
  peft: string;
  batch: Batch;
  logits: { columns: number[]; values: number[][] };
  loss: number;
  grads: Record<string, { values: number[]; shape: number[] }>;
  merged: Record<string, { index: number[]; values: number[]; norm: number; shape: number[] }>;
}
const golden = JSON.parse(readFileSync(join(fixtures, 'peft-tiny-golden.json'), 'utf8')) as Golden;
const packed = (b: Batch) => ({ tokens: Int32Array.from(b.tokens), targets: Int32Array.from(b.targets), cuSeqlens: b.cuSeqlens });

/** Logits, loss and every adapter gradient on one batch, then the merged weights of the adapted layers. */
function ours(model: LlamaForCausalLM, batch: Batch) {
  const logitsT = noGrad(() => model.forward(packed(batch)));
  const logits = logitsT.toArray() as Float32Array;
  logitsT.dispose();
  const lossT = model.loss(packed(batch));
  const loss = lossT.item();
  lossT.backward();
  lossT.dispose();
  const grads = new Map(loraParameters(model).map(([n, p]) => [n, p.grad!.toArray() as Float32Array]));
  model.zeroGrad();
  const adapted = loraLayers(model).map(([n]) => `${n}.weight`);
  mergeLora(model);
  const merged = new Map(adapted.map((n) => [n, model.getParameter(n)!.toArray() as Float32Array]));
  return { logits, loss, grads, merged };
}

describe('PEFT\'s adapter on its base (golden values)', async () => {
  const model = await loadPretrained(baseDir);
  const baseWeights = new Map(model.namedParameters().map(([n, p]) => [n, p.toArray() as Float32Array]));
  const params = await loadLora(model, adapterDir);
  const names = params.map(([n]) => n);
  const V = model.config.vocabSize;
  const got = ours(model, golden.batch);
  afterAll(() => model.dispose());

  it('reads adapter_config.json and attaches A and B to the layers target_modules names', async () => {
    const { config, options } = await readLoraConfig(adapterDir);
    expect(config.peft_type).toBe('LORA');
    expect(options).toMatchObject({ r: 4, alpha: 8, dropout: 0 });
    expect(new Set(names)).toEqual(new Set(Object.keys(golden.grads)));
    expect(names).toContain('model.layers.1.mlp.down_proj.lora_B.weight');
  });

  it('the same logits and loss as PeftModel', () => {
    const N = golden.batch.tokens.length;
    const g: number[] = [], w: number[] = [];
    for (let r = 0; r < N; r++)
      golden.logits.columns.forEach((c, j) => {
        g.push(got.logits[r * V + c]!);
        w.push(golden.logits.values[r]![j]!);
      });
    expectClose(g, w, 1e-5, 1e-4, 'logits');
    expect(Math.abs(got.loss - golden.loss) / golden.loss).toBeLessThan(1e-5);
  });

  it('the same gradient for every lora_A and lora_B', () => {
    for (const [name, s] of Object.entries(golden.grads)) {
      const scale = Math.max(...s.values.map(Math.abs));
      expect(relErr(got.grads.get(name)!, s.values), name).toBeLessThan(1e-4);
      expectClose(got.grads.get(name)!, s.values, 1e-4 * scale, 1e-3, `${name}: gradient`);
    }
  });

  it('mergeLora gives merge_and_unload\'s weights, and the merge moved them', () => {
    for (const [name, s] of Object.entries(golden.merged)) {
      const w = got.merged.get(name)!;
      expectClose(s.index.map((i) => w[i]!), s.values, 1e-6, 1e-5, `${name}: merged`);
      expect(relErr(w, baseWeights.get(name)!)).toBeGreaterThan(1e-3);
    }
    expect(model.namedParameters().map(([n]) => n)).toEqual([...baseWeights.keys()]);
  });
});

describe('PEFT format round trip and refusals', () => {
  const work = mkdtempSync(join(tmpdir(), 'pgpt-peft-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const cfg = preset('tiny').config;

  it('saveLora writes PEFT\'s config and tensor names; loadLora on a fresh base gives the same adapters', async () => {
    const model = new LlamaForCausalLM(cfg, { seed: 2, initStd: 0.05 });
    applyLora(model, { r: 2, alpha: 4, dropout: 0.1, targetModules: ['q_proj', 'gate_proj'], seed: 3 });
    for (const [n, p] of loraParameters(model)) if (n.endsWith('lora_B.weight')) p.write(Float32Array.from(randomArray(p.size, 4, 0.1)));
    const dir = join(work, 'a1');
    await saveLora(model, dir, { baseModel: 'some/base' });
    const config = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 2, lora_alpha: 4, lora_dropout: 0.1, target_modules: ['q_proj', 'gate_proj'],
      bias: 'none', fan_in_fan_out: false, base_model_name_or_path: 'some/base', use_rslora: false, use_dora: false,
    });
    const file = await readSafetensors(join(dir, ADAPTER_WEIGHTS_FILE));
    expect([...file.keys()]).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight');
    expect([...file.keys()]).toContain('base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight');
    expect(file.size).toBe(2 * 2 * cfg.nLayers);
    for (const t of file.values()) t.dispose();

    const fresh = new LlamaForCausalLM(cfg, { seed: 2, initStd: 0.05 });
    const loaded = await loadLora(fresh, dir);
    const want = new Map(loraParameters(model).map(([n, p]) => [n, p.toArray()]));
    expect(loaded.map(([n]) => n)).toEqual([...want.keys()]);
    for (const [n, p] of loaded) expect(p.toArray(), n).toEqual(want.get(n));
    expect(loraLayers(fresh)[0]![1].adapter.dropout).toBe(0.1);
    model.dispose();
    fresh.dispose();
  });

  it('a target set no suffix list describes is saved as an exact-name regex that PEFT\'s rule (full match) selects again', async () => {
    const model = new LlamaForCausalLM(cfg, { seed: 2, initStd: 0.05 });
    applyLora(model, { r: 2, targetModules: '.*\\.1\\.self_attn\\.v_proj' });
    const dir = join(work, 'a2');
    await saveLora(model, dir);
    const { options } = await readLoraConfig(dir);
    expect(options.targetModules).toBe('model\\.layers\\.1\\.self_attn\\.v_proj');
    const fresh = new LlamaForCausalLM(cfg, { seed: 2, initStd: 0.05 });
    await loadLora(fresh, dir);
    expect(loraLayers(fresh).map(([n]) => n)).toEqual(['model.layers.1.self_attn.v_proj']);
    model.dispose();
    fresh.dispose();
  });

  it('refuses what it does not read (DoRA, per-layer ranks, stray tensors), naming the field, and leaves the model as it was', async () => {
    const cfgText = readFileSync(join(adapterDir, ADAPTER_CONFIG_FILE), 'utf8');
    const variant = async (name: string, patch: Record<string, unknown>, tensors?: [string, Tensor][]) => {
      const dir = join(work, name);
      await savePretrainedAdapter(dir, { ...JSON.parse(cfgText), ...patch }, tensors);
      return dir;
    };
    const base = await loadPretrained(baseDir);
    const names = base.namedParameters().map(([n]) => n);
    await expect(loadLora(base, await variant('dora', { use_dora: true }))).rejects.toThrow(/field "use_dora"/);
    await expect(loadLora(base, await variant('rank', { rank_pattern: { q_proj: 8 } }))).rejects.toThrow(/field "rank_pattern"/);
    await expect(loadLora(base, await variant('type', { peft_type: 'IA3' }))).rejects.toThrow(/field "peft_type"/);
    const stray = Tensor.zeros([4, 64]);
    const file = await readSafetensors(join(adapterDir, ADAPTER_WEIGHTS_FILE));
    const dir = await variant('stray', {}, [...file, ['base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight', stray]]);
    await expect(loadLora(base, dir)).rejects.toThrow(/k_proj\.lora_A\.weight", which is no adapter of the model/);
    expect(base.namedParameters().map(([n]) => n)).toEqual(names);
    expect(base.parameters().every((p) => p.requiresGrad)).toBe(true);
    for (const t of file.values()) t.dispose();
    stray.dispose();
    base.dispose();
  });

  /** An adapter folder with this config and these tensors (default: the fixture's). */
  async function savePretrainedAdapter(dir: string, config: unknown, tensors?: [string, Tensor][]): Promise<void> {
    const { mkdirSync, copyFileSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(config));
    if (tensors) await writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors);
    else copyFileSync(join(adapterDir, ADAPTER_WEIGHTS_FILE), join(dir, ADAPTER_WEIGHTS_FILE));
  }
});

const { python, why } = findPython(['torch', 'transformers', 'safetensors', 'peft']);

describe.skipIf(!python)(`parity with PEFT, live${python ? '' : ` (skipped: ${why})`}`, () => {
  const work = mkdtempSync(join(tmpdir(), 'pgpt-peft-live-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const script = new URL('../../scripts/peft-parity.py', import.meta.url).pathname;

  it('PeftModel.from_pretrained loads our base folder and our adapter: same logits, adapter gradients and merged weights', async () => {
    const model = new LlamaForCausalLM(preset('tiny').config, { seed: 5, initStd: 0.05 });
    const base = join(work, 'base');
    await savePretrained(model, base);
    applyLora(model, { r: 4, alpha: 16, targetModules: ['q_proj', 'k_proj', 'o_proj', 'up_proj', 'down_proj'], seed: 9 });
    for (const [n, p] of loraParameters(model)) if (n.endsWith('lora_B.weight')) p.write(Float32Array.from(randomArray(p.size, n.length, 0.05)));
    const adapter = join(work, 'adapter');
    await saveLora(model, adapter, { baseModel: base });
    const bfile = join(work, 'batch.json');
    writeFileSync(bfile, JSON.stringify(golden.batch));
    const out = join(work, 'ref');
    execFileSync(python!, [script, 'run', base, adapter, bfile, out], { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    const ref = await readSafetensors(join(out, 'reference.safetensors'));
    const arr = (k: string) => ref.get(k)!.toArray() as Float32Array;
    const refJson = JSON.parse(readFileSync(join(out, 'reference.json'), 'utf8')) as { loss: number; adapters: string[] };
    const got = ours(model, golden.batch);
    const report: Record<string, number> = { logits: relErr(got.logits, arr('logits')) };
    expect(report.logits).toBeLessThan(1e-4 / 4);
    expect(Math.abs(got.loss - refJson.loss) / refJson.loss).toBeLessThan(1e-5);
    expect(refJson.adapters).toEqual([...got.grads.keys()].sort());
    report.grads = Math.max(...[...got.grads].map(([n, g]) => relErr(g, arr(`grad.${n}`))));
    expect(report.grads).toBeLessThan(1e-4);
    report.merged = Math.max(...[...got.merged].map(([n, w]) => relErr(w, arr(`merged.${n}`))));
    expect(report.merged).toBeLessThan(1e-6);
    expect(got.merged.size).toBe(5 * model.config.nLayers);
    console.log(`PEFT parity (max |ours - peft| / max |peft| per tensor): ${JSON.stringify(report)}`);
    for (const t of ref.values()) t.dispose();
    model.dispose();
  });
});
