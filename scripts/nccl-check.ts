// The NCCL path on one GPU (scripts/gpu-check.sh's nccl phase; `npm run bench -- dp`'s NCCL row):
//   collectives  a 1-rank NCCL communicator (world size 1 is valid for NCCL): all-reduce (sum,
//                mean), reduce-scatter, all-gather and broadcast over CUDA tensors through the
//                dispatcher (src/distributed/collectives.ts), each equal to its input (one rank).
//                Then the overlap machinery: ncclReduce to a root, an NCCL group, collectives on
//                the communication stream ordered by events (order('compute') / order('comm')).
//   dp           the same pretraining config on 'cuda' twice: the single-process trainer, and with
//                the NCCL data-parallel engine (gradients all-reduced by NCCL each step, in small
//                buckets sent on NCCL's stream during backward): the losses must agree (one rank's
//                mean is its own gradient; within 1e-4, as CUDA's atomics make two single runs
//                differ in the last bits), the engine must have reduced every step, and buckets
//                must have gone during backward after the first step. Prints tokens/s of both and
//                NCCL's wait per step.
//   zero2        the same with ZeRO-2 over NCCL (gradients reduced to their owner, parameters
//                broadcast from it after the step): one rank equals the plain trainer.
// Without a GPU or NCCL it prints why and exits 2 (a skip, not a failure), before touching CUDA.
//   init-timeout a 2-rank communicator whose peer never joins: rank 0 fails within the 3 s limit
//                naming its rank (NCCL >= 2.17's non-blocking init), instead of hanging.
// Usage: npx tsx scripts/nccl-check.ts [collectives|init-timeout|dp|zero2|all] [--steps N]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { allGatherTensor, allReduceTensors, broadcastTensor, initNcclDataParallel, ncclStatus, reduceScatterTensor } from '../src/distributed/index.js';
import { availableDevices } from '../src/native/devices.js';
import { addon } from '../src/native/loader.js';
import { Tensor } from '../src/tensor/index.js';
import { validateStageConfig, type StageConfig } from '../src/train/config.js';
import type { MetricRecord } from '../src/train/metrics.js';
import { pretrain } from '../src/train/pretrain.js';

const mode = process.argv[2] ?? 'all';
const si = process.argv.indexOf('--steps');
const steps = si > 0 ? Number(process.argv[si + 1]) : 4;

/** Why the NCCL path cannot run here, or null. */
export function ncclSkipReason(): string | null {
  if (!availableDevices().includes('cuda')) return 'no usable CUDA device (patentgpt info says why)';
  const s = ncclStatus();
  return s.error ?? (s.cudaCompiled ? null : 'the addon was built without CUDA');
}

function same(name: string, got: Tensor, want: number[], shape: number[]): void {
  const g = Array.from(got.toArray() as Float32Array);
  if (got.device !== 'cuda') throw new Error(`${name}: result on ${got.device}, expected cuda`);
  if (JSON.stringify(got.shape) !== JSON.stringify(shape)) throw new Error(`${name}: shape ${JSON.stringify(got.shape)}, expected ${JSON.stringify(shape)}`);
  if (g.some((x, i) => x !== Math.fround(want[i]!))) throw new Error(`${name}: ${g.join(',')} != ${want.join(',')}`);
  console.log(`  ok ${name}`);
}

async function collectives(): Promise<void> {
  const dp = await initNcclDataParallel({ env: { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0' } });
  const nccl = dp.nccl;
  const v = Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 3);
  const a = Tensor.from(v, [1000], { device: 'cuda' });
  const b = Tensor.from(v.slice(0, 10), [10], { device: 'cuda' });
  allReduceTensors(nccl, [a, b], 'sum');
  same('all-reduce sum (2 tensors, one synchronize)', a, v, [1000]);
  same('all-reduce sum, second tensor', b, v.slice(0, 10), [10]);
  allReduceTensors(nccl, [a], 'mean');
  same('all-reduce mean', a, v, [1000]);
  same('reduce-scatter', reduceScatterTensor(nccl, Tensor.from(v, [10, 100], { device: 'cuda' })), v, [10, 100]);
  same('all-gather', allGatherTensor(nccl, Tensor.from(v, [10, 100], { device: 'cuda' })), v, [10, 100]);
  const c = Tensor.from(v, [1000], { device: 'cuda' });
  broadcastTensor(nccl, c, 0);
  same('broadcast', c, v, [1000]);
  // ZeRO-2's reduce to the owner and DDP's overlap: a group on the communication stream, after an
  // event on the compute stream, and the compute stream after it
  const d = Tensor.from(v, [1000], { device: 'cuda' });
  const e = Tensor.from(v.slice(0, 10), [10], { device: 'cuda' });
  nccl.order('compute');
  nccl.useCommStream(true);
  nccl.group(() => {
    nccl.reduceAsync(d, 0, 'mean');
    nccl.allReduceAsync(e, 'mean');
  });
  nccl.useCommStream(false);
  nccl.order('comm');
  nccl.synchronize();
  same('reduce (mean) + all-reduce in a group on the communication stream', d, v, [1000]);
  same('second tensor of the group', e, v.slice(0, 10), [10]);
  console.log(JSON.stringify({ check: 'nccl-collectives', ok: true, version: ncclStatus().version, waitMs: nccl.waitMs }));
}

/**
 * The bounded join (NCCL >= 2.17: non-blocking init polled up to the timeout): rank 0 of 2 whose
 * peer never comes must fail within the timeout, naming its rank, not hang.
 */
function initTimeout(): void {
  const version = ncclStatus().version ?? 0;
  if (version < 21700) {
    console.log(JSON.stringify({ check: 'nccl-init-timeout', skipped: `NCCL ${version} has no non-blocking init (needs 2.17)` }));
    return;
  }
  const n = addon() as unknown as { ncclUniqueId(): Uint8Array; ncclCommInit(id: Uint8Array, nranks: number, rank: number, timeoutMs?: number): number };
  const t0 = performance.now();
  let message = '';
  try {
    n.ncclCommInit(n.ncclUniqueId(), 2, 0, 3000);
  } catch (err) {
    message = (err as Error).message;
  }
  const ms = performance.now() - t0;
  const ok = /rank 0 of 2: the NCCL communicator was not set up within 3 s/.test(message) && ms < 30_000;
  console.log(JSON.stringify({ check: 'nccl-init-timeout', ok, ms: Math.round(ms), message }));
  if (!ok) throw new Error(`a 2-rank NCCL init with its peer missing: ${message || 'no error'} after ${Math.round(ms)} ms`);
}

async function dpCompare(zero: 0 | 2): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-nccl-dp-'));
  try {
    const cfg = (name: string) => validateStageConfig({
      name, runDir: path.join(root, name), device: 'cuda',
      model: { vocabSize: 259, dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, ffnDim: 352, maxSeqLen: 128 }, tokenizer: 'byte',
      data: { sample: true, weights: { patent: 1 }, valFraction: 0.05 },
      seqLen: 128, batchSize: 4, gradAccum: 2, steps, optimizer: { lr: 0.002 }, schedule: { kind: 'constant' },
      evalEvery: 0, checkpointEvery: 0, logEvery: 1, seed: 1, threads: 2,
    }) as Extract<StageConfig, { kind: 'pretrain' }>;
    const losses = async (name: string, extra: Parameters<typeof pretrain>[1]): Promise<{ loss: number[]; tps: number }> => {
      const recs: MetricRecord[] = [];
      await pretrain(cfg(name), { progress: null, onMetrics: (r) => recs.push(r), ...extra });
      const train = recs.filter((r) => r.loss !== undefined);
      const tps = train.slice(1).map((r) => r.tokensPerSec ?? 0).sort((x, y) => x - y);
      return { loss: train.map((r) => r.loss!), tps: tps[Math.floor(tps.length / 2)] ?? 0 };
    };
    const single = await losses('single', {});
    // 64 KB buckets: several per step, sent on NCCL's stream during backward from the second step on
    const dp = await initNcclDataParallel({ env: { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0' }, zero, options: { bucketBytes: 64 * 1024 } });
    const viaNccl = await losses(zero ? 'nccl-zero2' : 'nccl', { rank: 0, worldSize: 1, dataParallel: dp });
    const st = dp.stats();
    if (!st || st.steps !== steps)
      throw new Error(`the NCCL engine reduced ${st?.steps ?? 0} of ${steps} steps: the trainer used no data-parallel engine on one rank ` +
        '(src/train/trainer.ts takes opts.dataParallel only when worldSize > 1; it must take a given engine on 1 rank too)');
    if (steps > 1 && st.overlapped === 0) throw new Error(`no bucket was sent during backward in ${steps} steps (${st.buckets} buckets): the overlap is off`);
    const diff = Math.max(...single.loss.map((l, i) => Math.abs(l - viaNccl.loss[i]!)));
    console.log(`  losses single: ${single.loss.map((l) => l.toFixed(6)).join(' ')}`);
    console.log(`  losses NCCL:   ${viaNccl.loss.map((l) => l.toFixed(6)).join(' ')}`);
    // Not bit-equal by design: CUDA's scatter-adds (embedding backward) sum in atomics' order, so two
    // single-process runs already differ in the last bits.
    const ok = single.loss.length === steps && viaNccl.loss.length === steps && diff <= 1e-4;
    console.log(JSON.stringify({ check: zero ? 'nccl-zero2' : 'nccl-dp', ok, steps, maxLossDiff: diff, tokensPerSecSingle: single.tps, tokensPerSecNccl: viaNccl.tps, ncclWaitMsPerStep: st.waitMs / st.steps, overlappedBuckets: st.overlapped, buckets: st.buckets }));
    if (!ok) throw new Error(`1-rank NCCL data parallel${zero ? ' (ZeRO-2)' : ''} vs single process: losses differ by ${diff}`);
    dp.nccl.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const skip = ncclSkipReason();
if (skip) {
  console.log(JSON.stringify({ check: 'nccl', skipped: skip }));
  process.exit(2);
}
if (mode === 'collectives' || mode === 'all') await collectives();
if (mode === 'init-timeout' || mode === 'all') initTimeout();
if (mode === 'dp' || mode === 'all') await dpCompare(0);
if (mode === 'zero2' || mode === 'all') await dpCompare(2);
