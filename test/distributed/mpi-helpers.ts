// Running a script or a CLI command as N MPI ranks in the data-parallel tests. Without mpirun the
// tests skip with a message (CI installs Open MPI through scripts/install-peers.sh and sets
// PATENTGPT_REQUIRE_PEERS=1, where a missing MPI fails instead).
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { ensureMpiModule } from '../../src/distributed/mpi.js';
import { readMetrics, type MetricRecord } from '../../src/train/metrics.js';

export const repo = new URL('../../', import.meta.url).pathname;
export const mainTs = path.join(repo, 'src/cli/main.ts');

function probeMpi(): string | null {
  const r = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'no mpirun on PATH (install openmpi-bin libopenmpi-dev: scripts/install-peers.sh)';
  try {
    ensureMpiModule();
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

/** Why the MPI tests cannot run here, or null; a missing MPI is an error under PATENTGPT_REQUIRE_PEERS=1. */
export const mpiMissing: string | null = probeMpi();
if (mpiMissing && process.env.PATENTGPT_REQUIRE_PEERS === '1') throw new Error(`MPI is required (PATENTGPT_REQUIRE_PEERS=1): ${mpiMissing}`);
if (mpiMissing) console.warn(`data-parallel tests skipped: ${mpiMissing}`);

export const mpiEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', ...extra,
});

/** `mpirun -np n node --import tsx <script> args`, synchronously. */
export function mpirunScript(n: number, script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): SpawnSyncReturns<string> {
  return spawnSync('mpirun', ['-np', String(n), '--oversubscribe', '--bind-to', 'none', process.execPath, '--import', 'tsx', script, ...args],
    { encoding: 'utf8', cwd: repo, env: mpiEnv(env), timeout: timeoutMs });
}

/** `patentgpt <args>` (args may start with launch), asynchronously, with its output. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', mainTs, ...args], { cwd: repo, env: mpiEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
  });
}

/**
 * A PPO config at root/ppo.json run on 1 rank (`one`) or 2 (`two`, launch --global-batch), a file
 * of its step-`steps` checkpoint, its logged steps, and the fields that may differ (timings).
 */
export function ppoRuns(root: string, steps: number) {
  const config = path.join(root, 'ppo.json');
  return {
    config,
    one: (run: string) => cli(['ppo', '--config', config, '--run-dir', run, '--quiet']),
    two: (run: string) => cli(['launch', '--nproc', '2', '--global-batch', '--', 'ppo', '--config', config, '--run-dir', run, '--quiet']),
    file: (run: string, name: string): string => path.join(run, 'checkpoints', `step-${steps}`, name),
    steps: (run: string): MetricRecord[] => readMetrics(path.join(run, 'metrics.jsonl')).filter((m) => typeof m.loss === 'number'),
    // timings differ; everything else, the tokens count included (summed over the ranks), is 1 rank's
    TIMING: new Set(['step', 'tokensPerSec', 'mfu', 'elapsedSec', 'rolloutTokensPerSec']),
  };
}

/** Keeps the run's checkpoints up to `step` (as if it had stopped there). */
export function cutBackTo(run: string, step: number): void {
  for (const d of fs.readdirSync(path.join(run, 'checkpoints')))
    if (Number(d.slice('step-'.length)) > step) fs.rmSync(path.join(run, 'checkpoints', d), { recursive: true });
}

/** Per-step losses within 1e-6 of the reference run's (issue 20's bar for N ranks against 1). */
export function expectStepsClose(got: number[], want: number[], what: string): void {
  expect(got, what).toHaveLength(want.length);
  got.forEach((x, i) => expect(Math.abs(x - want[i]!), `${what}: step ${i + 1}: ${x} vs ${want[i]}`).toBeLessThanOrEqual(1e-6));
}
