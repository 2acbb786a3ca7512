// npm run bench -- dp: data-parallel scaling on this machine. The same pretraining config (global
// batch batchSize x gradAccum) on 1 rank and on 2 MPI ranks (`patentgpt launch --nproc 2
// --global-batch`), with gradient buckets started during backward and without (--no-overlap):
// tokens/s, the all-reduce time per step (inside MPI, on the communication thread), the time a step
// waited for it, and the overlap (the share of all-reduce time hidden behind backward). Where a GPU
// and NCCL exist, an NCCL row: 1 GPU through NCCL vs the single-process trainer (skipped elsewhere,
// with the reason).
// Prints a table and one JSON line. Run it on an otherwise idle machine: ranks share its cores.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const main = path.join(repo, 'src/cli/main.ts');
const steps = Number(process.env.DP_BENCH_STEPS ?? 12);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-bench-dp-'));
const config = path.join(root, 'dp.json');
fs.writeFileSync(config, JSON.stringify({
  name: 'bench-dp', model: { vocabSize: 259, dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, ffnDim: 352, maxSeqLen: 128 }, tokenizer: 'byte',
  data: { sample: true, weights: { patent: 0.6, law: 0.25, qa: 0.15 }, valFraction: 0.05 },
  seqLen: 128, batchSize: 4, gradAccum: 2, steps, optimizer: { lr: 0.002 }, schedule: { kind: 'constant' },
  evalEvery: 0, checkpointEvery: 0, logEvery: 1, seed: 1, threads: 0,
}));

/**
 * The NCCL row: 1 GPU through NCCL vs the single-process trainer on 'cuda' (the collective path's
 * overhead), by scripts/nccl-check.ts dp; where there is no GPU or no NCCL, the reason it skipped.
 */
function ncclRow(): { tokensPerSecSingle: number; tokensPerSecNccl: number; ncclWaitMsPerStep: number; maxLossDiff: number } | { skipped: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'scripts', 'nccl-check.ts'), 'dp', '--steps', String(steps)], { cwd: repo, encoding: 'utf8' });
  const line = r.stdout.split('\n').filter((l) => l.startsWith('{"check":"nccl')).pop();
  const rec = line ? (JSON.parse(line) as { skipped?: string; ok?: boolean; tokensPerSecSingle: number; tokensPerSecNccl: number; ncclWaitMsPerStep: number; maxLossDiff: number }) : null;
  if (r.status === 2 && rec?.skipped) return { skipped: rec.skipped };
  // A failed NCCL row is reported, not fatal: the CPU rows above stand on their own.
  if (r.status !== 0 || !rec) return { skipped: `FAILED (exit ${r.status}): ${(r.stderr.trim().split('\n').find((l) => /Error/.test(l)) ?? r.stderr.trim().split('\n').pop() ?? '').slice(0, 300)}` };
  return rec;
}

interface Run { name: string; tokensPerSec: number; commMsPerStep?: number; waitMsPerStep?: number; overlap?: number; stepMs: number }

function run(name: string, args: string[]): Run {
  const runDir = path.join(root, name);
  const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };
  const r = spawnSync(process.execPath, ['--import', 'tsx', main, ...args, 'pretrain', '--config', config, '--run-dir', runDir, '--quiet'], { cwd: repo, env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name}: exit ${r.status}\n${r.stderr}\n${r.stdout}`);
  const recs = fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; tokensPerSec?: number; elapsedSec: number });
  // steady state: the median throughput after the first two steps (start-up, first allocations)
  const tps = recs.filter((x) => x.step > 2 && x.tokensPerSec).map((x) => x.tokensPerSec!).sort((a, b) => a - b);
  const last = recs.at(-1)!;
  const third = recs.find((x) => x.step === 2)!;
  const out: Run = { name, tokensPerSec: tps[Math.floor(tps.length / 2)]!, stepMs: ((last.elapsedSec - third.elapsedSec) * 1000) / (last.step - 2) };
  const sums = r.stdout.split('\n').filter((l) => l.includes('"allReduce"')).map((l) => (JSON.parse(l) as { allReduce: { commMsPerStep: number; waitMsPerStep: number } }).allReduce);
  if (sums.length > 0) {
    out.commMsPerStep = sums.reduce((a, s) => a + s.commMsPerStep, 0) / sums.length;
    out.waitMsPerStep = sums.reduce((a, s) => a + s.waitMsPerStep, 0) / sums.length;
    out.overlap = Math.max(0, 1 - out.waitMsPerStep / out.commMsPerStep);
  }
  return out;
}

try {
  const one = run('1-rank', []);
  const ov = run('2-ranks', ['launch', '--nproc', '2', '--global-batch', '--bucket-mb', '1', '--']);
  const no = run('2-ranks-no-overlap', ['launch', '--nproc', '2', '--global-batch', '--bucket-mb', '1', '--no-overlap', '--']);
  const f = (x: number | undefined, d = 1): string => (x === undefined ? '-' : x.toFixed(d));
  console.log(`data parallel, ${os.availableParallelism()} cores, ${steps} steps of ${4 * 2 * 128} tokens (1 rank: gradAccum 2; 2 ranks: 1 each)`);
  console.log('run                  tokens/s   step ms   all-reduce ms/step   waited ms/step   overlap');
  for (const r of [one, ov, no])
    console.log(`${r.name.padEnd(20)} ${f(r.tokensPerSec).padStart(8)}   ${f(r.stepMs).padStart(7)}   ${f(r.commMsPerStep, 2).padStart(18)}   ${f(r.waitMsPerStep, 2).padStart(14)}   ${r.overlap === undefined ? '-' : (r.overlap * 100).toFixed(0) + '%'}`);
  console.log(`2 ranks / 1 rank tokens/s: ${(ov.tokensPerSec / one.tokensPerSec).toFixed(2)}x (no overlap: ${(no.tokensPerSec / one.tokensPerSec).toFixed(2)}x)`);
  const nccl = ncclRow();
  if ('skipped' in nccl) console.log(`1 GPU via NCCL vs single process: skipped (${nccl.skipped})`);
  else
    console.log(`1 GPU via NCCL vs single process (cuda): ${f(nccl.tokensPerSecNccl)} vs ${f(nccl.tokensPerSecSingle)} tokens/s ` +
      `(${(nccl.tokensPerSecNccl / nccl.tokensPerSecSingle).toFixed(3)}x), NCCL wait ${f(nccl.ncclWaitMsPerStep, 2)} ms/step, losses within ${nccl.maxLossDiff.toExponential(1)}`);
  console.log(JSON.stringify({ bench: 'dp', cores: os.availableParallelism(), steps, runs: [one, ov, no], speedup: ov.tokensPerSec / one.tokensPerSec, speedupNoOverlap: no.tokensPerSec / one.tokensPerSec, nccl }));
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
