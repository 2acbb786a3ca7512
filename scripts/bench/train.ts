// npm run bench -- train [--threads N] [--steps N] [--warmup N] [--gap-ms N] [--models llama-10m,llama-110m] [--seqs 64,256,1024] [--profile] [--bf16 0|1]
//
// Training throughput of the LLaMA stack beside PyTorch training the same model in the same run:
// transformers LlamaForCausalLM (eager attention) + torch.optim.AdamW, torch.set_num_threads
// equal to ours, the same config, the same batch shapes and token ids. One step is forward +
// loss, backward, global-norm clip 1.0 and AdamW (what the trainer does per step). For each
// shape both sides build their model, then take turns step by step (ours, torch, ours, ...,
// a pause of --gap-ms between turns so torch's spinning OpenMP threads are idle when ours
// starts), so a noisy neighbour hits both alike; each side's figure is the median of its timed
// steps after the warm-up steps. MFU is PaLM's 6N + 12LTd FLOPs per token x tokens/s, against the
// GEMM figure timed beside the shape's steps (our f32 GEMM at 1024^3) and against the measured FMA peak.
// Peak memory: ours is the native tensor high-water mark of the step (weights, gradients, AdamW
// moments and activations); torch's is the process's max RSS growth over the shape's run
// (its allocator caches included; a high-water mark, so only an upper bound after the first).
// --profile adds a phase split (forward+loss / backward / optimizer) for both.
// bf16 columns (--bf16 1, the default): the same model trained with "precision": "bf16" (matmul
// precision bf16: bf16 GEMMs forward and backward, f32 weights and AdamW state) beside torch
// with its forward under torch.autocast("cpu", bfloat16); the four take turns step by step on
// the same two models (each side's model alternates f32 and bf16 steps).
import { join } from 'node:path';
import { flopsPerToken, parameterCount, preset, toHFConfig } from '../../src/models/index.js';
import { addon } from '../../src/native/loader.js';
import { packageRoot } from '../../src/package.js';
import {
  Rng, Tensor, bf16MatmulKernel, measurePeakFlops, memoryStats, resetPeakMemory, runtimeInfo, setMatmulPrecision, setNumThreads,
} from '../../src/tensor/index.js';
import { findPython } from './_peers.js';
import { OursTrainer, PythonPeer, type StepTiming } from './_python-peer.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const threads = Number(arg('threads', '2'));
const timedSteps = Number(arg('steps', '5'));
const warmup = Number(arg('warmup', '2'));
const models = arg('models', 'llama-10m,llama-110m').split(',');
const seqs = arg('seqs', '64,256,1024').split(',').map(Number);
const profile = process.argv.includes('--profile');
const gapMs = Number(arg('gap-ms', '200'));
const withBf16 = arg('bf16', '1') !== '0';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Batch rows per (model, T): a few thousand tokens for ~10M; B=4 (B=1 at T=1024) for ~110M. */
function batchSize(model: string, T: number): number {
  if (model === 'llama-110m') return T >= 1024 ? 1 : 4;
  return Math.max(1, Math.round(2048 / T));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** The same token ids for both sides: B rows of T, each one document. */
function tokens(B: number, T: number, V: number, seed: number): Int32Array {
  const rng = new Rng(seed);
  return Int32Array.from({ length: B * T }, () => rng.int(V));
}

// ---- main ----

setNumThreads(threads);
const info = runtimeInfo();
// GEMM figure: our f32 GEMM at 1024^3. Timed once up front (median of 7 after 2 warm-ups) and
// again beside every timed step of ours, so each shape's MFU is over the GEMM speed of the same
// minutes (on a shared machine the load moves).
const gemmBench = (() => {
  const n = 1024;
  const a = Tensor.randn([n, n], { seed: 1 });
  const b = Tensor.randn([n, n], { seed: 2 });
  const c = Tensor.empty([n, n]);
  const seconds = (): number => {
    const t0 = performance.now();
    addon().gemm(false, false, n, n, n, 1, a.storage, a.offset, n, 0, b.storage, b.offset, n, 0, 0, c.storage, c.offset, n, 0, 1);
    return (performance.now() - t0) / 1000;
  };
  /** GFLOP/s of the faster of two products. */
  const sample = (): number => (2 * n ** 3) / Math.min(seconds(), seconds()) / 1e9;
  return { sample, bytes: 3 * 4 * n * n, dispose: () => [a, b, c].forEach((t) => t.dispose()) };
})();
const gemmGflops = (() => {
  gemmBench.sample();
  return median(Array.from({ length: 7 }, () => gemmBench.sample()));
})();
const peakGflops = measurePeakFlops(threads, 0.5) / 1e9;

const py = findPython(['torch', 'transformers']);
let peer: PythonPeer | null = null;
let peerInfo: Record<string, unknown> = {};
let peerWhy = py.why;
if (py.python) {
  try {
    // transformers' LlamaForCausalLM + AdamW (scripts/torch-train-peer.py), eager attention
    peer = PythonPeer.start('torch peer', py.python, [join(packageRoot(), 'scripts', 'torch-train-peer.py'), 'llama', String(threads), 'eager'], threads);
    peerInfo = await peer.next();
  } catch (err) {
    peer = null;
    peerWhy = (err as Error).message;
  }
}
console.log(`ours: ${info.simd}, ${info.threads} threads; GEMM 1024^3 ${gemmGflops.toFixed(1)} GFLOP/s; FP32 FMA peak ${peakGflops.toFixed(1)} GFLOP/s (measured)`);
console.log(`torch: ${peer ? JSON.stringify(peerInfo) + ', transformers LlamaForCausalLM eager + torch.optim.AdamW' : `not run (${peerWhy})`}`);
if (withBf16) console.log(`bf16: ours "precision": "bf16" (${bf16MatmulKernel()} kernel); torch: forward under torch.autocast("cpu", bfloat16)`);
console.log(`per shape: ${warmup} warm-up steps, median of ${timedSteps} timed steps, ours and torch taking turns step by step; a step = forward + loss + backward + clip 1.0 + AdamW\n`);

interface Row {
  model: string;
  params: number;
  T: number;
  B: number;
  /** GEMM 1024^3 GFLOP/s timed beside this shape's steps. */
  gemmGflops: number;
  ours: { tokPerSec: number; mfuGemm: number; mfuPeak: number; peakMiB: number; loss: number; phases: number[] };
  torch: { tokPerSec: number; mfuGemm: number; mfuPeak: number; rssMiB: number; loss: number; phases: number[] } | null;
  /** tokens/s with "precision": "bf16" (ours) and under autocast bf16 (torch). */
  bf16: { ours: number; torch: number | null; oursPhases: number[]; torchPhases: number[] | null } | null;
}
const rows: Row[] = [];
for (const name of models) {
  const cfg = preset(name).config;
  for (const T of seqs) {
    if (T > cfg.maxSeqLen) continue;
    const B = batchSize(name, T);
    const ids = tokens(B, T, cfg.vocabSize, T);
    const fpt = flopsPerToken(cfg, T).training;
    // Both sides build, then alternate steps; the first `warmup` steps of each are not timed.
    const ours = new OursTrainer(cfg, B, T, ids);
    if (peer) await peer.request({ cmd: 'init', config: toHFConfig(cfg), B, T, tokens: Array.from(ids) });
    const o: StepTiming[] = [];
    const gemmNow: number[] = []; // GEMM GFLOP/s beside each timed step of ours
    const t: StepTiming[] = [];
    const ob: StepTiming[] = [];
    const tb: StepTiming[] = [];
    for (let i = 0; i < warmup + timedSteps; i++) {
      if (i === warmup) resetPeakMemory();
      const os = ours.step();
      if (i >= warmup) {
        o.push(os);
        gemmNow.push(gemmBench.sample());
      }
      if (peer) {
        await sleep(gapMs);
        const ts = await peer.request<StepTiming>({ cmd: 'step' });
        if (i >= warmup) t.push(ts);
        await sleep(gapMs);
      }
      if (!withBf16) continue;
      const previous = setMatmulPrecision('bf16');
      let obs: StepTiming;
      try {
        obs = ours.step();
      } finally {
        setMatmulPrecision(previous);
      }
      if (i >= warmup) ob.push(obs);
      if (peer) {
        await sleep(gapMs);
        const ts = await peer.request<StepTiming>({ cmd: 'step', autocast: true });
        if (i >= warmup) tb.push(ts);
        await sleep(gapMs);
      }
    }
    const peakBytes = memoryStats().cpu.peakBytes - gemmBench.bytes; // the GEMM's own operands stay live
    ours.dispose();
    const rssGrowth = peer ? (await peer.request<{ rssGrowth: number }>({ cmd: 'free' })).rssGrowth : 0; // the process's max RSS growth since init
    const phaseMed = (xs: StepTiming[]): number[] => [0, 1, 2].map((k) => median(xs.map((x) => x.phases[k]!)));
    const oTps = (B * T) / median(o.map((x) => x.time));
    const shapeGemm = median(gemmNow);
    const mfuOf = (tps: number, peak: number): number => (fpt * tps) / (peak * 1e9);
    const row: Row = {
      model: name, params: parameterCount(cfg).total, T, B, gemmGflops: shapeGemm,
      ours: { tokPerSec: oTps, mfuGemm: mfuOf(oTps, shapeGemm), mfuPeak: mfuOf(oTps, peakGflops), peakMiB: peakBytes / 2 ** 20, loss: o.at(-1)!.loss, phases: phaseMed(o) },
      torch: null,
      bf16: withBf16
        ? {
          ours: (B * T) / median(ob.map((x) => x.time)), oursPhases: phaseMed(ob),
          torch: peer ? (B * T) / median(tb.map((x) => x.time)) : null, torchPhases: peer ? phaseMed(tb) : null,
        }
        : null,
    };
    if (peer) {
      const tTps = (B * T) / median(t.map((x) => x.time));
      row.torch = { tokPerSec: tTps, mfuGemm: mfuOf(tTps, shapeGemm), mfuPeak: mfuOf(tTps, peakGflops), rssMiB: rssGrowth / 2 ** 20, loss: t.at(-1)!.loss, phases: phaseMed(t) };
    }
    rows.push(row);
    const r = row;
    process.stderr.write(`${name} T=${T} B=${B}: ours ${r.ours.tokPerSec.toFixed(0)} tok/s, torch ${r.torch ? r.torch.tokPerSec.toFixed(0) : 'n/a'} tok/s` +
      (r.bf16 ? `; bf16: ours ${r.bf16.ours.toFixed(0)}, torch autocast ${r.bf16.torch?.toFixed(0) ?? 'n/a'} tok/s` : '') + '\n');
  }
}
peer?.stop();
gemmBench.dispose();

const f = (x: number | undefined | null, w: number, d = 1): string => (x === undefined || x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(d)).padStart(w);
console.log(
  `${'model'.padEnd(11)} ${'T'.padStart(5)} ${'B'.padStart(3)} ${'ours tok/s'.padStart(10)} ${'torch tok/s'.padStart(11)} ${'ratio'.padStart(6)} ` +
    `${'GEMM'.padStart(6)} ${'MFU/gemm'.padStart(8)} ${'MFU/peak'.padStart(8)} ${'torch/gemm'.padStart(10)} ${'peak MiB'.padStart(8)} ${'torch RSS+'.padStart(10)}`,
);
for (const r of rows)
  console.log(
    `${r.model.padEnd(11)} ${String(r.T).padStart(5)} ${String(r.B).padStart(3)} ${f(r.ours.tokPerSec, 10)} ${f(r.torch?.tokPerSec, 11)} ` +
      `${f(r.torch ? r.ours.tokPerSec / r.torch.tokPerSec : null, 6, 2)} ${f(r.gemmGflops, 6, 0)} ${f(r.ours.mfuGemm * 100, 7)}% ${f(r.ours.mfuPeak * 100, 7)}% ` +
      `${f(r.torch ? r.torch.mfuGemm * 100 : null, 9)}% ${f(r.ours.peakMiB, 8, 0)} ${f(r.torch?.rssMiB, 10, 0)}`,
  );
console.log('ratio = ours / torch tokens/s; GEMM = our GEMM 1024^3 GFLOP/s timed beside the shape\'s steps; MFU/gemm = model FLOP/s over it; MFU/peak = over the FMA peak;');
console.log('peak MiB = our native tensor high-water mark in a step; torch RSS+ = max RSS growth of the torch process over the shape (upper bound)');
if (withBf16) {
  console.log(`\n${'bf16: model'.padEnd(11)} ${'T'.padStart(5)} ${'B'.padStart(3)} ${'ours bf16'.padStart(10)} ${'torch ac'.padStart(9)} ${'vs torch'.padStart(9)} ${'vs ours f32'.padStart(12)} ${'torch ac/f32'.padStart(13)}`);
  for (const r of rows)
    console.log(
      `${r.model.padEnd(11)} ${String(r.T).padStart(5)} ${String(r.B).padStart(3)} ${f(r.bf16!.ours, 10)} ${f(r.bf16!.torch, 9)} ` +
        `${f(r.bf16!.torch ? r.bf16!.ours / r.bf16!.torch : null, 9, 2)} ${f(r.bf16!.ours / r.ours.tokPerSec, 12, 2)} ` +
        `${f(r.bf16!.torch && r.torch ? r.bf16!.torch / r.torch.tokPerSec : null, 13, 2)}`,
    );
  console.log('tokens/s; ours bf16 = "precision": "bf16"; torch ac = torch.autocast("cpu", bfloat16); vs torch = ours bf16 / torch ac; vs ours f32 = ours bf16 / ours f32');
}
if (profile) {
  console.log('\nphase split, seconds per step (forward+loss / backward / clip+AdamW):');
  for (const r of rows)
    console.log(`${r.model.padEnd(11)} T=${String(r.T).padEnd(5)} ours ${r.ours.phases.map((x) => x.toFixed(3)).join(' / ')}` +
      (r.torch ? `   torch ${r.torch.phases.map((x) => x.toFixed(3)).join(' / ')}` : ''));
}
console.log(
  '\n' +
    JSON.stringify({
      bench: 'train',
      threads,
      simd: info.simd,
      gemmGflops: +gemmGflops.toFixed(1),
      peakGflops: +peakGflops.toFixed(1),
      torch: peer ? peerInfo : peerWhy,
      results: rows.map((r) => ({
        model: r.model, params: r.params, T: r.T, B: r.B, gemmGflops: +r.gemmGflops.toFixed(1),
        ours: { tokensPerSec: +r.ours.tokPerSec.toFixed(1), mfuGemm: +r.ours.mfuGemm.toFixed(4), mfuPeak: +r.ours.mfuPeak.toFixed(4), peakMiB: +r.ours.peakMiB.toFixed(1), loss: +r.ours.loss.toFixed(4), phasesSec: r.ours.phases.map((x) => +x.toFixed(4)) },
        torch: r.torch ? { tokensPerSec: +r.torch.tokPerSec.toFixed(1), mfuGemm: +r.torch.mfuGemm.toFixed(4), rssGrowthMiB: +r.torch.rssMiB.toFixed(1), loss: +r.torch.loss.toFixed(4), phasesSec: r.torch.phases.map((x) => +x.toFixed(4)) } : null,
        ratio: r.torch ? +(r.ours.tokPerSec / r.torch.tokPerSec).toFixed(3) : null,
        ...(r.bf16
          ? {
            bf16: {
              kernel: bf16MatmulKernel(),
              ours: +r.bf16.ours.toFixed(1),
              torchAutocast: r.bf16.torch === null ? null : +r.bf16.torch.toFixed(1),
              ratioTorch: r.bf16.torch === null ? null : +(r.bf16.ours / r.bf16.torch).toFixed(3),
              ratioOursF32: +(r.bf16.ours / r.ours.tokPerSec).toFixed(3),
              phasesSec: r.bf16.oursPhases.map((x) => +x.toFixed(4)),
              torchPhasesSec: r.bf16.torchPhases?.map((x) => +x.toFixed(4)) ?? null,
            },
          }
          : {}),
      })),
    }),
);
