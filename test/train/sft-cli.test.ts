// `patentgpt sft` end to end in child processes: a run on a tiny model whose last checkpoint is
// a model folder that transformers loads (same logits) and the engine serves, exact resume after
// kill -9, the example config (examples/tiny-sft.json) on the LLaMA-Factory Alpaca demo, and
// config errors that name the field.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { Engine } from '../../src/infer/engine.js';
import { LlamaForCausalLM, loadPretrained, savePretrained, type ModelConfig } from '../../src/models/index.js';
import { noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { readMetrics } from '../../src/train/metrics.js';
import { exited, sha, trainLosses, waitFor } from './child-run.js';
import { sftWorkspace } from './sft-fixtures.js';

const repo = new URL('../../', import.meta.url).pathname;
const main = path.join(repo, 'src/cli/main.ts');
const { root, dataFile, initDir } = sftWorkspace('pgpt-sft-cli-');

// tsx by its file, so a child run from another folder (the example's working directory) finds it
const tsx = pathToFileURL(path.join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
const cli = (args: string[], cwd = repo) => spawnSync(process.execPath, ['--import', tsx, main, 'sft', ...args], { encoding: 'utf8', cwd });
const start = (...args: string[]): ChildProcess => spawn(process.execPath, ['--import', 'tsx', main, 'sft', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });



function writeConfig(name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(root, `${name}.json`);
  const cfg = {
    kind: 'sft', name, model: initDir, tokenizer: 'byte', init: initDir,
    data: { sources: ['reverse.jsonl'], valFraction: 0.1 },
    seqLen: 128, batchSize: 4, gradAccum: 2, steps: 30, optimizer: { lr: 0.003 }, schedule: { kind: 'cosine', warmupSteps: 3 },
    evalEvery: 10, evalBatches: 2, checkpointEvery: 5, keepCheckpoints: 2, seed: 4, threads: 1, ...extra,
  };
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}

describe('patentgpt sft', () => {
  it('fine-tunes a tiny model: summary, metrics, and a last checkpoint that transformers loads and the engine serves', async () => {
    const runDir = path.join(root, 'e2e');
    const r = cli(['--config', writeConfig('e2e', { steps: 8, checkpointEvery: 0, evalEvery: 4 }), '--run-dir', runDir]);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { status: string; step: number; checkpoint: string; valLoss: number };
    expect(summary).toMatchObject({ status: 'completed', step: 8, checkpoint: path.join(runDir, 'checkpoints', 'step-8') });
    expect(summary.valLoss).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/"event":"progress"/);
    expect(r.stdout).toMatch(/training and \d+ validation conversations \(chat template llama-2 \(byte\)\)/);
    expect(r.stdout).toMatch(/initial weights from /);
    const resolved = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as { stage: { kind: string }; data: { train: number; val: number } };
    expect(resolved.stage.kind).toBe('sft');
    expect(resolved.data.train + resolved.data.val).toBe(240);
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl'));
    expect(recs.filter((x) => x.loss !== undefined).every((x) => ((x as Record<string, unknown>).supervisedTokens as number) > 0)).toBe(true);
    expect(recs.filter((x) => x.valLoss !== undefined).map((x) => x.step)).toEqual([4, 8]);

    const ck = summary.checkpoint;
    // the engine serves it
    const engine = await Engine.fromPretrained(ck, { kvCacheBytes: 2 ** 22 });
    try {
      const out = await engine.complete([256, ...new ByteTokenizer().encode('[INST] Reverse the word.\nstone [/INST]')], { maxTokens: 6, ignoreEos: true });
      expect(out.tokens).toHaveLength(6);
    } finally {
      engine.close();
    }
    // transformers loads it, with the logits of our model
    const py = findPython(['torch', 'transformers']);
    if (!py.python) {
      console.warn(`skipped the transformers check: ${py.why}`);
      return;
    }
    const ids = Array.from(new ByteTokenizer().encode('[INST] Reverse the word.\nglass [/INST] ssalg', { bos: true }));
    const code = [
      'import json, torch',
      'from transformers import AutoModelForCausalLM',
      `m = AutoModelForCausalLM.from_pretrained(${JSON.stringify(ck)}, torch_dtype=torch.float32)`,
      `print(json.dumps(m(torch.tensor([${JSON.stringify(ids)}])).logits[0].flatten().tolist()))`,
    ].join('\n');
    const theirs = JSON.parse(execFileSync(py.python, ['-c', code], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 26 })
      .trim().split('\n').pop()!) as number[];
    const model: LlamaForCausalLM = await loadPretrained(ck);
    try {
      const ours = noGrad(() => model.forward({ tokens: Int32Array.from(ids) }).toArray() as Float32Array);
      expect(theirs).toHaveLength(ours.length);
      let worst = 0;
      for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - theirs[i]!));
      expect(worst).toBeLessThan(1e-3);
    } finally {
      model.dispose();
    }
  }, 180_000);

  it('resumes after kill -9 with exactly the loss sequence and weights of an uninterrupted run', async () => {
    const cfg = writeConfig('resume');
    const ref = path.join(root, 'resume-ref');
    const r0 = cli(['--config', cfg, '--run-dir', ref, '--quiet']);
    expect(r0.status, r0.stderr).toBe(0);
    const full = trainLosses(ref);
    expect(full).toHaveLength(30);

    const runDir = path.join(root, 'resume-killed');
    const child = start('--config', cfg, '--run-dir', runDir, '--quiet');
    const done = exited(child);
    await waitFor(() => fs.existsSync(path.join(runDir, 'checkpoints', 'step-10')), child, 'checkpoint step-10', 90_000);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(runDir, 'checkpoints', 'step-30'))).toBe(false);
    expect(trainLosses(runDir).length).toBeLessThan(30);

    const r1 = cli(['--config', cfg, '--run-dir', runDir]);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stdout).toMatch(/resuming from .*step-(10|15|20|25)/);
    expect(r1.stdout).not.toMatch(/initial weights from/); // a resume takes the checkpoint's weights, not init's
    expect(trainLosses(runDir)).toEqual(full); // bit-exact, step for step
    for (const f of ['model.safetensors', 'optimizer.safetensors'])
      expect(sha(path.join(runDir, 'checkpoints', 'step-30', f))).toBe(sha(path.join(ref, 'checkpoints', 'step-30', f)));
  }, 300_000);

  it('refuses bad configs naming the field, and configs of another kind (exit code 1)', () => {
    let r = cli(['--config', writeConfig('bad', { data: { sources: ['reverse.jsonl'], strategy: 'best' } })]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.json: data\.strategy: must be one of "greedy", "bfd", got "best"/);
    r = cli(['--config', 'examples/tiny-stage1.json']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/tiny-stage1\.json: kind: "pretrain" is not a sft config; run it with `patentgpt pretrain`/);
    r = spawnSync(process.execPath, ['--import', 'tsx', main, 'pretrain', '--config', writeConfig('other')], { encoding: 'utf8', cwd: repo });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/other\.json: kind: "sft" is not a pretrain config; run it with `patentgpt sft`/);
    r = cli(['--config', writeConfig('missing', { data: { sources: ['nowhere.jsonl'] } }), '--run-dir', path.join(root, 'missing')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/nowhere\.jsonl/);
  }, 120_000);
});

const demo = path.join(repo, '../shared/data/general-sft-pretrain-demo/alpaca_en_demo.json');
describe.skipIf(!fs.existsSync(demo))(`examples/tiny-sft.json${fs.existsSync(demo) ? '' : ' (skipped: no ../shared/data/general-sft-pretrain-demo)'}`, () => {
  it('runs on the Alpaca demo from the tiny stage-1 model folder it names as init', async () => {
    // stand in for runs/tiny-stage1 (examples/tiny-stage1.json, ~1.5 min) with a random model of its shape
    const cwd = path.join(root, 'example');
    const stage1 = JSON.parse(fs.readFileSync(path.join(repo, 'examples/tiny-stage1.json'), 'utf8')) as { model: ModelConfig };
    const m = new LlamaForCausalLM(stage1.model, { seed: 1 });
    try {
      await savePretrained(m, path.join(cwd, 'runs', 'tiny-stage1'), { tokenizer: new ByteTokenizer() });
    } finally {
      m.dispose();
    }
    const r = cli(['--config', path.join(repo, 'examples/tiny-sft.json'), '--steps', '3', '--quiet'], cwd);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { status: string; step: number; runDir: string; valLoss: number };
    expect(summary).toMatchObject({ status: 'completed', step: 3, runDir: 'runs/tiny-sft' });
    expect(summary.valLoss).toBeGreaterThan(0);
    const resolved = JSON.parse(fs.readFileSync(path.join(cwd, 'runs/tiny-sft/config.json'), 'utf8')) as { data: { train: number; val: number } };
    expect(resolved.data.train + resolved.data.val).toBeGreaterThan(900);
    // the LoRA example: the same data, adapters on every projection, the base folder plus the adapter at the end
    const l = cli(['--config', path.join(repo, 'examples/tiny-sft-lora.json'), '--steps', '3', '--quiet'], cwd);
    expect(l.status, l.stderr).toBe(0);
    expect(JSON.parse(l.stdout.trim().split('\n').at(-1)!)).toMatchObject({ status: 'completed', step: 3, runDir: 'runs/tiny-sft-lora' });
    for (const f of ['final/model.safetensors', 'final/adapter/adapter_config.json', 'final/adapter/adapter_model.safetensors'])
      expect(fs.existsSync(path.join(cwd, 'runs/tiny-sft-lora', f)), f).toBe(true);
  }, 240_000);
});
