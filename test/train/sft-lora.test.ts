// LoRA in the SFT stage: the config's `lora` section (refusals naming the field), a run where only
// the adapters train (the base weights come out bit-for-bit as init's, the optimizer state and the
// gradients hold the adapters alone: memory measured against full fine-tuning of the same model),
// checkpoints that are PEFT adapter folders, and the final folder (base model + adapter/) that our
// loader and PEFT both read with the run's logits.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { SftBatchStream, loadSftData } from '../../src/data/sft/index.js';
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, LlamaForCausalLM, loadLora, loadPretrained, readSafetensors, type ModelConfig,
} from '../../src/models/index.js';
import { applyLora } from '../../src/nn/lora.js';
import { noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { validateStageConfig, type SftConfig } from '../../src/train/config.js';
import { llama2ByteRenderer, sft, sftLoss } from '../../src/train/stages/sft.js';
import { trainLosses } from './child-run.js';
import { TINY, sftWorkspace } from './sft-fixtures.js';

const { root, dataFile, initDir } = sftWorkspace('pgpt-sft-lora-');

const LORA = { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'], seed: 3 };
function raw(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kind: 'sft', name: 'lora-test', model: initDir, tokenizer: 'byte', init: initDir,
    data: { sources: [dataFile], valFraction: 0.1 },
    seqLen: 128, batchSize: 4, steps: 12, optimizer: { lr: 0.01 }, schedule: { kind: 'constant' },
    evalEvery: 6, evalBatches: 2, checkpointEvery: 6, threads: 1, seed: 2, lora: LORA, ...extra,
  };
}
const config = (extra: Record<string, unknown>, runDir: string): SftConfig => {
  const cfg = validateStageConfig(raw(extra), { source: 's.json' }) as SftConfig;
  cfg.runDir = runDir;
  return cfg;
};
const tensors = async (file: string): Promise<Map<string, Float32Array>> => {
  const m = await readSafetensors(file);
  const out = new Map([...m].map(([n, t]) => [n, t.toArray() as Float32Array]));
  for (const t of m.values()) t.dispose();
  return out;
};
const bytesOf = (m: Map<string, Float32Array>): number => [...m.values()].reduce((s, a) => s + a.byteLength, 0);

describe('sft lora config', () => {
  it('reads lora with defaults (alpha r, dropout 0, PEFT\'s LLaMA targets q_proj/v_proj, the config seed) and puts it in the hash', () => {
    const cfg = validateStageConfig(raw({ lora: { r: 8 }, seed: 7 })) as SftConfig;
    expect(cfg.lora).toEqual({ r: 8, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'], seed: 7 });
    const rx = validateStageConfig(raw({ lora: { r: 2, alpha: 4, dropout: 0.05, targetModules: '.*\\.(q|k)_proj', seed: 1 } })) as SftConfig;
    expect(rx.lora).toEqual({ r: 2, alpha: 4, dropout: 0.05, targetModules: '.*\\.(q|k)_proj', seed: 1 });
    expect((validateStageConfig(raw({ lora: undefined })) as SftConfig).lora).toBeUndefined();
  });

  it('refuses bad lora fields naming each', () => {
    const refuse = (lora: unknown, re: RegExp): void => {
      expect(() => validateStageConfig(raw({ lora }), { source: 's.json' })).toThrow(re);
    };
    refuse({}, /s\.json: lora\.r: missing \(an integer >= 1/);
    refuse({ r: 0 }, /s\.json: lora\.r: must be an integer >= 1, got 0/);
    refuse({ r: 2.5 }, /s\.json: lora\.r: must be an integer >= 1/);
    refuse({ r: 4, alpha: 0 }, /s\.json: lora\.alpha: must be a number > 0, got 0/);
    refuse({ r: 4, dropout: 1 }, /s\.json: lora\.dropout: must be a number in \[0, 1\), got 1/);
    refuse({ r: 4, targetModules: [] }, /s\.json: lora\.targetModules: must be a non-empty list of module names/);
    refuse({ r: 4, targetModules: ['q_proj', 3] }, /s\.json: lora\.targetModules\[1\]: must be a non-empty string/);
    refuse({ r: 4, targetModules: '(q_proj' }, /s\.json: lora\.targetModules: "\(q_proj" is not a valid regular expression/);
    refuse({ r: 4, rank: 8 }, /s\.json: lora\.rank: unknown field \(known: r, alpha, dropout, targetModules, seed\)/);
    refuse({ r: 4, seed: -1 }, /s\.json: lora\.seed: must be an integer >= 0/);
    refuse('q_proj', /s\.json: lora: must be an object/);
  });

  it('refuses targets that select no layer, or the output layer, before training, naming lora.targetModules', async () => {
    await expect(sft(config({ lora: { r: 2, targetModules: ['qkv'] } }, path.join(root, 'none')), { configFile: 's.json', progress: null }))
      .rejects.toThrow(/s\.json: lora\.targetModules: \["qkv"\] matches no Linear \(names look like model\.layers\.0\.self_attn\.q_proj/);
    await expect(sft(config({ lora: { r: 2, targetModules: 'all-linear|lm_head' } }, path.join(root, 'head')), { configFile: 's.json', progress: null }))
      .rejects.toThrow(/s\.json: lora\.targetModules: the output layer \(lm_head\) cannot take an adapter/);
  });
});

describe('sft lora run', () => {
  const runDir = path.join(root, 'run');
  const fullDir = path.join(root, 'full');
  let result: Awaited<ReturnType<typeof sft>>;
  beforeAll(async () => {
    result = await sft(config({}, runDir), { progress: null });
  }, 120_000);

  it('trains the adapters only: the loss falls, the base weights end bit-for-bit as init\'s, final/ = base folder + PEFT adapter', async () => {
    expect(result.status).toBe('completed');
    const losses = trainLosses(runDir);
    expect(losses).toHaveLength(12);
    expect(losses.slice(-3).reduce((a, b) => a + b) / 3).toBeLessThan(losses.slice(0, 3).reduce((a, b) => a + b) / 3);
    const cfg = TINY as Required<Pick<ModelConfig, 'nLayers'>>;
    expect(result.lora).toMatchObject({ layers: 3 * cfg.nLayers, final: { model: path.join(runDir, 'final'), adapter: path.join(runDir, 'final', 'adapter') } });
    expect(result.lora!.trainable).toBeLessThan(result.lora!.total / 10);

    const final = path.join(runDir, 'final');
    expect(fs.readdirSync(final).sort()).toEqual(['adapter', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer_spec.json']);
    expect(fs.readdirSync(path.join(final, 'adapter')).sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]);
    const base = await tensors(path.join(initDir, 'model.safetensors'));
    const after = await tensors(path.join(final, 'model.safetensors'));
    expect([...after.keys()].sort()).toEqual([...base.keys()].sort());
    for (const [n, w] of base) expect(Buffer.from(after.get(n)!.buffer).equals(Buffer.from(w.buffer)), n).toBe(true);
    const adapterCfg = JSON.parse(fs.readFileSync(path.join(final, 'adapter', ADAPTER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    expect(adapterCfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj', 'down_proj'], base_model_name_or_path: final });

    // each checkpoint is a PEFT adapter folder (based on init) beside the trainer's files
    const ck = path.join(runDir, 'checkpoints', 'step-6');
    expect(fs.readdirSync(ck).sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, 'checksums.json', 'lora_state.json', 'optimizer.safetensors', 'state.json']);
    expect(JSON.parse(fs.readFileSync(path.join(ck, ADAPTER_CONFIG_FILE), 'utf8')).base_model_name_or_path).toBe(path.resolve(initDir));
    // the adapters moved (B starts at zero)
    const last = await tensors(path.join(final, 'adapter', ADAPTER_WEIGHTS_FILE));
    const bNorm = [...last].filter(([n]) => n.includes('lora_B')).reduce((s, [, a]) => s + a.reduce((x, v) => x + v * v, 0), 0);
    expect(bNorm).toBeGreaterThan(0);
  });

  it('only the adapters are in the optimizer state and get gradients: memory against full fine-tuning of the same model', async () => {
    const full = await sft(config({ lora: undefined, steps: 6, evalEvery: 0, checkpointEvery: 0 }, fullDir), { progress: null });
    expect(full.status).toBe('completed');
    const loraOpt = await tensors(path.join(runDir, 'checkpoints', 'step-12', 'optimizer.safetensors'));
    const fullOpt = await tensors(path.join(fullDir, 'checkpoints', 'step-6', 'optimizer.safetensors'));
    expect([...loraOpt.keys()].every((n) => /\.lora_[AB]\.weight$/.test(n))).toBe(true);
    expect(loraOpt.size).toBe(2 * 2 * result.lora!.layers); // m and v of A and B per layer
    expect(bytesOf(loraOpt)).toBe(2 * 4 * result.lora!.trainable);
    const baseParams = result.lora!.total - result.lora!.trainable; // total counts the adapters too
    expect(bytesOf(fullOpt)).toBe(2 * 4 * baseParams);

    // gradients of one step: only the adapters get any
    const tok = new ByteTokenizer();
    const data = await loadSftData({ sources: [{ path: dataFile }], renderer: llama2ByteRenderer(tok), maxLength: 128 });
    const batch = new SftBatchStream(data.train, { seqLen: 128, batchSize: 4, mode: 'pack' }).next();
    const gradBytes = (lora: boolean): number => {
      const m = new LlamaForCausalLM(TINY as ModelConfig, { seed: 1 });
      try {
        if (lora) applyLora(m, LORA);
        const out = sftLoss(m, batch);
        out.loss.backward();
        out.loss.dispose();
        const withGrad = m.namedParameters().filter(([, p]) => p.grad);
        if (lora) expect(withGrad.every(([n]) => /\.lora_[AB]\.weight$/.test(n))).toBe(true);
        return withGrad.reduce((s, [, p]) => s + p.grad!.size * 4, 0);
      } finally {
        m.dispose();
      }
    };
    const grads = { full: gradBytes(false), lora: gradBytes(true) };
    expect(grads.lora).toBe(4 * result.lora!.trainable);
    expect(grads.full).toBe(4 * baseParams);
    console.log(`SFT memory, tiny model (${baseParams} parameters, ${result.lora!.trainable} in adapters): optimizer state full ${bytesOf(fullOpt)} B vs LoRA ${bytesOf(loraOpt)} B ` +
      `(${(bytesOf(fullOpt) / bytesOf(loraOpt)).toFixed(1)}x); gradients full ${grads.full} B vs LoRA ${grads.lora} B`);
  }, 120_000);

  it('final/ loads as base + adapter with the logits of the trained model (ours, and PEFT\'s where installed)', async () => {
    const final = path.join(runDir, 'final');
    const ids = Int32Array.from(new ByteTokenizer().encode('[INST] Reverse the word.\nglass [/INST] ssalg', { bos: true }));
    const model = await loadPretrained(final);
    const plain = noGrad(() => model.forward({ tokens: ids }).toArray() as Float32Array);
    await loadLora(model, path.join(final, 'adapter'));
    const ours = noGrad(() => model.forward({ tokens: ids }).toArray() as Float32Array);
    model.dispose();
    let moved = 0;
    for (let i = 0; i < ours.length; i++) moved = Math.max(moved, Math.abs(ours[i]! - plain[i]!));
    expect(moved).toBeGreaterThan(1e-3); // the adapter matters

    const { python, why } = findPython(['torch', 'transformers', 'safetensors', 'peft']);
    if (!python) {
      console.warn(`skipped PEFT loading final/adapter: ${why}`);
      return;
    }
    const batchFile = path.join(root, 'batch.json');
    fs.writeFileSync(batchFile, JSON.stringify({ tokens: [...ids], targets: [...ids.slice(1), -100], cuSeqlens: [0, ids.length] }));
    const out = path.join(root, 'peft-ref');
    execFileSync(python, [new URL('../../scripts/peft-parity.py', import.meta.url).pathname, 'run', final, path.join(final, 'adapter'), batchFile, out],
      { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    const ref = await tensors(path.join(out, 'reference.safetensors'));
    const theirs = ref.get('logits')!;
    expect(theirs.length).toBe(ours.length);
    let worst = 0;
    for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - theirs[i]!));
    expect(worst).toBeLessThan(1e-4);
  }, 120_000);
});
