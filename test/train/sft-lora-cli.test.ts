// `patentgpt sft` with LoRA and `patentgpt sft merge`, in child processes: exact resume after
// kill -9 with adapter dropout on (the adapter, dropout-position and optimizer files of the last
// checkpoint, and final/adapter, byte for byte as an uninterrupted run's), and a merged folder whose logits equal base + adapter (ours),
// transformers' on the merged folder and PEFT's merge_and_unload (where installed).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { ADAPTER_WEIGHTS_FILE, loadLora, loadPretrained, readSafetensors } from '../../src/models/index.js';
import { noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { exited, sha, trainLosses, waitFor } from './child-run.js';
import { sftWorkspace } from './sft-fixtures.js';

const repo = new URL('../../', import.meta.url).pathname;
const main = path.join(repo, 'src/cli/main.ts');
const { root, dataFile, initDir } = sftWorkspace('pgpt-sft-lora-cli-');
const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, 'sft', ...args], { encoding: 'utf8', cwd: repo });
const start = (...args: string[]): ChildProcess => spawn(process.execPath, ['--import', 'tsx', main, 'sft', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });


function writeConfig(name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(root, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    kind: 'sft', name, model: initDir, tokenizer: 'byte', init: initDir,
    data: { sources: ['reverse.jsonl'], valFraction: 0.1 },
    seqLen: 128, batchSize: 4, gradAccum: 2, steps: 30, optimizer: { lr: 0.01 }, schedule: { kind: 'cosine', warmupSteps: 3 },
    evalEvery: 10, evalBatches: 2, checkpointEvery: 5, keepCheckpoints: 2, seed: 4, threads: 1,
    lora: { r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 1 },
    ...extra,
  }, null, 2));
  return file;
}

const ids = Int32Array.from(new ByteTokenizer().encode('[INST] Reverse the word.\nglass [/INST] ssalg', { bos: true }));
async function logits(dir: string, adapter?: string): Promise<Float32Array> {
  const m = await loadPretrained(dir);
  try {
    if (adapter) await loadLora(m, adapter);
    return noGrad(() => m.forward({ tokens: ids }).toArray() as Float32Array);
  } finally {
    m.dispose();
  }
}
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};

describe('patentgpt sft with lora', () => {
  const ref = path.join(root, 'ref');

  it('resumes after kill -9 with exactly the loss sequence, adapter, dropout positions and optimizer state of an uninterrupted run (dropout 0.1)', async () => {
    const cfg = writeConfig('resume');
    const r0 = run(['--config', cfg, '--run-dir', ref, '--quiet']);
    expect(r0.status, r0.stderr).toBe(0);
    const summary = JSON.parse(r0.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(summary).toMatchObject({ status: 'completed', step: 30, final: path.join(ref, 'final'), adapter: path.join(ref, 'final', 'adapter') });
    const full = trainLosses(ref);
    expect(full).toHaveLength(30);

    const runDir = path.join(root, 'killed');
    const child = start('--config', cfg, '--run-dir', runDir, '--quiet');
    const done = exited(child);
    await waitFor(() => fs.existsSync(path.join(runDir, 'checkpoints', 'step-10')), child, 'checkpoint step-10', 90_000);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(runDir, 'final'))).toBe(false);

    const r1 = run(['--config', cfg, '--run-dir', runDir]);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stdout).toMatch(/resuming from .*step-(10|15|20|25)/);
    expect(r1.stdout).toMatch(/LoRA: r 4, alpha 8, dropout 0.1 on 14 layers/);
    expect(trainLosses(runDir)).toEqual(full);
    for (const f of [ADAPTER_WEIGHTS_FILE, 'optimizer.safetensors', 'lora_state.json'])
      expect(sha(path.join(runDir, 'checkpoints', 'step-30', f)), f).toBe(sha(path.join(ref, 'checkpoints', 'step-30', f)));
    for (const f of ['model.safetensors', `adapter/${ADAPTER_WEIGHTS_FILE}`])
      expect(sha(path.join(runDir, 'final', f)), f).toBe(sha(path.join(ref, 'final', f)));
  }, 300_000);

  it('merge folds the adapter into the base: logits of base + adapter, of transformers on the merged folder and of PEFT\'s merge_and_unload', async () => {
    const final = path.join(ref, 'final');
    const adapter = path.join(final, 'adapter');
    const out = path.join(root, 'merged');
    const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'sft', 'merge', '--base', final, '--adapter', adapter, '--out', out], { encoding: 'utf8', cwd: repo });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ event: 'summary', status: 'merged', out, layers: 14 });
    expect(fs.readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer_spec.json']);
    const merged = await readSafetensors(path.join(out, 'model.safetensors'));
    expect([...merged.keys()].some((n) => n.includes('lora'))).toBe(false);
    for (const t of merged.values()) t.dispose();

    const unmerged = await logits(final, adapter);
    const ours = await logits(out);
    const base = await logits(final);
    const report: Record<string, number> = { mergedVsAdapter: maxDiff(ours, unmerged), baseVsAdapter: maxDiff(base, unmerged) };
    expect(report.mergedVsAdapter).toBeLessThan(1e-4);
    expect(report.baseVsAdapter).toBeGreaterThan(1e-2); // the adapter changed the model

    // refusals: an existing model as --out, a folder that is no adapter
    let bad = spawnSync(process.execPath, ['--import', 'tsx', main, 'sft', 'merge', '--base', final, '--adapter', adapter, '--out', out], { encoding: 'utf8', cwd: repo });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--out .* already holds a model/);
    bad = spawnSync(process.execPath, ['--import', 'tsx', main, 'sft', 'merge', '--base', final, '--adapter', final, '--out', path.join(root, 'm2')], { encoding: 'utf8', cwd: repo });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/adapter_config\.json not found/);
    expect(fs.existsSync(path.join(root, 'm2'))).toBe(false);

    const { python, why } = findPython(['torch', 'transformers', 'peft']);
    if (!python) {
      console.warn(`skipped the transformers/PEFT merge check: ${why}`);
      return;
    }
    const code = [
      'import json, torch',
      'from transformers import AutoModelForCausalLM',
      'from peft import PeftModel',
      `ids = torch.tensor([${JSON.stringify([...ids])}])`,
      `ours = AutoModelForCausalLM.from_pretrained(${JSON.stringify(out)}, dtype=torch.float32)`,
      `base = AutoModelForCausalLM.from_pretrained(${JSON.stringify(final)}, dtype=torch.float32)`,
      `peft = PeftModel.from_pretrained(base, ${JSON.stringify(adapter)}).merge_and_unload()`,
      'with torch.no_grad():',
      '    print(json.dumps({"ours": ours(ids).logits[0].flatten().tolist(), "peft": peft(ids).logits[0].flatten().tolist()}))',
    ].join('\n');
    const theirs = JSON.parse(execFileSync(python, ['-c', code], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 })
      .trim().split('\n').pop()!) as { ours: number[]; peft: number[] };
    report.transformersOnMerged = maxDiff(theirs.ours, ours);
    report.peftMergeAndUnload = maxDiff(theirs.peft, ours);
    expect(report.transformersOnMerged).toBeLessThan(1e-4);
    expect(report.peftMergeAndUnload).toBeLessThan(1e-4);
    console.log(`sft merge, max |logit difference|: ${JSON.stringify(report)}`);
  }, 180_000);
});
