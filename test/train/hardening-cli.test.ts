// `patentgpt pretrain` as a new user meets it (issue 13, hardening), in child processes run from
// a working directory other than the configs' folder: a diverging learning rate exits non-zero
// as 'diverged' with no checkpoint; a refused resume leaves the run folder untouched; a stage-2
// init whose newest checkpoint is corrupt warns naming both; a run folder of corrupt checkpoints
// is refused until --restart-from-scratch; stage 2's init finds stage 1's default run folder.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../src/train/metrics.js';

const repo = new URL('../../', import.meta.url).pathname;
const main = path.join(repo, 'src/cli/main.ts');
const tsx = pathToFileURL(createRequire(path.join(repo, 'package.json')).resolve('tsx')).href;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-harden-'));
const work = path.join(root, 'work'); // the working directory
const cfgDir = path.join(root, 'configs'); // where the configs live
fs.mkdirSync(work);
fs.mkdirSync(cfgDir);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', tsx, main, 'pretrain', ...args], { encoding: 'utf8', cwd: work });
const summary = (out: string) => JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;

function writeConfig(name: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(cfgDir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    name,
    model: { vocabSize: 259, dim: 32, nLayers: 1, nHeads: 2, nKvHeads: 1, ffnDim: 64, maxSeqLen: 64 },
    tokenizer: 'byte', seqLen: 64, batchSize: 2, steps: 2, optimizer: { lr: 0.003 }, schedule: { kind: 'constant' },
    evalEvery: 0, checkpointEvery: 1, keepCheckpoints: 0, seed: 1, threads: 1, ...extra,
  }));
  return file;
}

/** Every file under dir with its size, mtime and hash. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = `${fs.statSync(p).mtimeMs} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir);
  return out;
}

const corrupt = (file: string): void => {
  const b = fs.readFileSync(file);
  b[b.length >> 1] = b[b.length >> 1]! ^ 0xff;
  fs.writeFileSync(file, b);
};

describe('patentgpt pretrain hardening', () => {
  it('a diverging learning rate: exit code 3, status "diverged" (never "completed"), no checkpoint written', () => {
    const r = cli('--config', writeConfig('diverge', { optimizer: { lr: 1e30 }, steps: 10, checkpointEvery: 2 }), '--quiet');
    expect(r.status, r.stderr).toBe(3);
    expect(summary(r.stdout)).toMatchObject({ status: 'diverged', nonFiniteSteps: 4, checkpoint: null });
    expect(r.stderr).toMatch(/the run diverged: 4 consecutive steps with a non-finite loss or gradient norm .*Lower optimizer\.lr/);
    expect(fs.existsSync(path.join(work, 'runs', 'diverge', 'checkpoints'))).toBe(false);
  });

  it('refused resume changes nothing; stage 2 init warns when it falls back; corrupt checkpoints need --restart-from-scratch', () => {
    const s1 = writeConfig('first');
    const r1 = cli('--config', s1, '--quiet');
    expect(r1.status, r1.stderr).toBe(0);
    const runDir = path.join(work, 'runs', 'first'); // the default runs/<name>, in the working directory
    expect(fs.readdirSync(path.join(runDir, 'checkpoints')).sort()).toEqual(['step-1', 'step-2']);

    // a resume under another config is refused before anything in the run folder changes
    const before = snapshot(runDir);
    const other = cli('--config', writeConfig('first', { seed: 2 }), '--quiet');
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/configHash: .* differs from this config's/);
    expect(snapshot(runDir)).toEqual(before);
    writeConfig('first'); // back to the config the run was started with

    // stage 2, its config in another folder, names stage 1's run as stage 1 printed it (runs/first)
    corrupt(path.join(runDir, 'checkpoints', 'step-2', 'model.safetensors'));
    const s2 = cli('--config', writeConfig('second', { init: 'runs/first', steps: 1 }));
    expect(s2.status, s2.stderr).toBe(0);
    expect(s2.stdout).toMatch(new RegExp(`warning: init: the newest checkpoint ${path.join(runDir, 'checkpoints', 'step-2')} does not verify \\(.*sha256 mismatch.*\\); starting from the older ${path.join(runDir, 'checkpoints', 'step-1')}`));
    expect(s2.stdout).toContain(`initial weights from ${path.join(runDir, 'checkpoints', 'step-1')}`);

    // every checkpoint corrupt: refused, naming the folder; metrics.jsonl kept as it was
    corrupt(path.join(runDir, 'checkpoints', 'step-1', 'model.safetensors'));
    const log = fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8');
    const refused = cli('--config', s1, '--quiet');
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`${path.join('runs', 'first', 'checkpoints')}: none of its 2 checkpoints verifies`);
    expect(refused.stderr).toMatch(/--restart-from-scratch/);
    expect(fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')).toBe(log);
    const again = cli('--config', s1, '--quiet', '--restart-from-scratch');
    expect(again.status, again.stderr).toBe(0);
    expect(summary(again.stdout)).toMatchObject({ status: 'completed', step: 2 });
    expect(fs.readFileSync(path.join(runDir, 'metrics.jsonl.before-restart'), 'utf8')).toBe(log);
    expect(readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.loss !== undefined)).toHaveLength(2);
  });
});
