// `patentgpt dpo` in a child process: a LoRA run on a tiny model and the preference fixtures ends
// with the summary line naming final/ (the base folder) and final/adapter/ (PEFT's format), whose
// adapter, loaded over the base, moves the log-probs away from the base's (it trained); the
// command refuses a config of another kind naming `kind`, and names the field of a bad dpo section.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collatePairs, loadPreferenceData } from '../../src/data/preference/index.js';
import { LlamaForCausalLM, loadLora, loadPretrained, savePretrained, validateConfig } from '../../src/models/index.js';
import { noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { readMetrics } from '../../src/train/metrics.js';
import { sequenceLogps } from '../../src/train/stages/dpo.js';
import { llama2ByteRenderer } from '../../src/train/stages/sft.js';

const repo = new URL('../../', import.meta.url).pathname;
const main = path.join(repo, 'src/cli/main.ts');
const pairs = path.join(repo, 'test/data/fixtures/preference/mixed.jsonl');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-dpo-cli-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const initDir = path.join(root, 'init');
const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', cwd: repo, timeout: 120_000 });

beforeAll(async () => {
  const m = new LlamaForCausalLM(validateConfig({ vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, maxSeqLen: 256 }), { seed: 5, initStd: 0.05 });
  await savePretrained(m, initDir, { tokenizer: new ByteTokenizer() });
  m.dispose();
});

function writeConfig(name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(root, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    kind: 'dpo', name, runDir: path.join(root, 'runs', name), model: initDir, init: initDir, tokenizer: 'byte',
    data: { sources: [pairs], shuffle: false }, seqLen: 128, batchSize: 2, steps: 4,
    optimizer: { lr: 0.01, weightDecay: 0 }, schedule: { kind: 'constant', warmupSteps: 0 }, evalEvery: 0, checkpointEvery: 2, threads: 1,
    lora: { r: 4, alpha: 8, targetModules: 'all-linear' }, dpo: { beta: 0.5 }, ...extra,
  }));
  return file;
}

describe('patentgpt dpo (CLI)', () => {
  it('a LoRA run (the base with adapters off as the reference) ends with final/ and a PEFT adapter that moved the log-probs', async () => {
    const r = cli(['dpo', '--config', writeConfig('lora'), '--quiet']);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(summary).toMatchObject({ event: 'summary', status: 'completed', step: 4 });
    const runDir = path.join(root, 'runs', 'lora');
    expect(summary.final).toBe(path.join(runDir, 'final'));
    expect(summary.adapter).toBe(path.join(runDir, 'final', 'adapter'));
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl')) as Record<string, number>[];
    expect(recs[0]!['rewards/margins']).toBe(0); // the adapters start at B = 0: policy = reference
    expect(fs.existsSync(path.join(runDir, 'checkpoints', 'step-4', 'adapter_model.safetensors'))).toBe(true);

    const data = await loadPreferenceData({ sources: [{ path: pairs }], renderer: llama2ByteRenderer(new ByteTokenizer()) });
    const batch = collatePairs(data.train, [0, 1, 2]);
    const base = await loadPretrained(path.join(runDir, 'final'));
    const tuned = await loadPretrained(path.join(runDir, 'final'));
    try {
      await loadLora(tuned, path.join(runDir, 'final', 'adapter'));
      const a = noGrad(() => Array.from(sequenceLogps(base, batch).toArray() as Float32Array));
      const b = noGrad(() => Array.from(sequenceLogps(tuned, batch).toArray() as Float32Array));
      const init = await loadPretrained(initDir);
      const c = noGrad(() => Array.from(sequenceLogps(init, batch).toArray() as Float32Array));
      init.dispose();
      expect(a).toEqual(c); // final/ is the frozen base
      // chosen minus rejected log-prob grew for the pairs trained on
      const margin = (v: number[]): number => v[0]! + v[1]! + v[2]! - v[3]! - v[4]! - v[5]!;
      expect(margin(b)).toBeGreaterThan(margin(a));
    } finally {
      base.dispose();
      tuned.dispose();
    }
  }, 180_000);

  it('refuses a config of another kind, and names the field of a bad dpo section', () => {
    const sftCfg = path.join(root, 'sft.json');
    fs.writeFileSync(sftCfg, JSON.stringify({ kind: 'sft', name: 's', model: initDir, data: { sources: [pairs] }, seqLen: 64, batchSize: 1, steps: 1, optimizer: { lr: 1e-3 } }));
    const a = cli(['dpo', '--config', sftCfg]);
    expect(a.status).toBe(1);
    expect(a.stderr).toMatch(/kind: "sft" is not a dpo config; run it with `patentgpt sft`/);
    const b = cli(['dpo', '--config', writeConfig('bad', { dpo: { loss: 'hinge' } })]);
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(/bad\.json: dpo\.loss: must be "sigmoid" or "ipo", got "hinge"/);
  }, 60_000);
});
