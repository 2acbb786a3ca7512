// npm run bench -- attention [--lengths 2048,8192,16384] [--heads 4] [--kv-heads 2] [--dim 128] [--threads 2] [--no-peers]
// Fused causal attention, forward + backward, at growing sequence lengths: time, GFLOP/s
// (causal FLOPs: forward 4 * T^2 / 2 * D * H, backward 2.5x forward), time ratios between
// lengths (should grow ~T^2), peak native memory (should grow ~T), and GFLOP/s as a fraction of
// the GEMM measured in the same run (1024^3 f32) when this build has one. Peers in the same run
// when a Python with torch is found: torch's CPU scaled_dot_product_attention (fwd+bwd, same
// shapes, same thread count) and numpy's 1024^3 sgemm. --no-peers skips them.
import { addon } from '../../src/native/loader.js';
import { findPython, runPythonJson } from './_peers.js';
import { Tensor, attention, memoryStats, resetPeakMemory, runtimeInfo, setNumThreads } from '../../src/tensor/index.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const lengths = arg('lengths', '2048,8192,16384').split(',').map(Number);
const H = Number(arg('heads', '4'));
const Hkv = Number(arg('kv-heads', '2'));
const D = Number(arg('dim', '128'));
const threads = setNumThreads(Number(arg('threads', '2')));

/** GFLOP/s of a 1024^3 f32 GEMM through addon().gemm, or null when this build has none. */
function gemmGflops(): number | null {
  const native = addon() as unknown as Record<string, unknown>;
  if (typeof native.gemm !== 'function') return null;
  const n = 1024;
  const a = Tensor.randn([n, n], { seed: 1 });
  const b = Tensor.randn([n, n], { seed: 2 });
  const c = Tensor.zeros([n, n]);
  const run = (): void =>
    addon().gemm(false, false, n, n, n, 1, a.storage, a.offset, n, 0, b.storage, b.offset, n, 0, 0, c.storage, c.offset, n, 0, 1);
  run();
  let best = Infinity;
  for (let rep = 0; rep < 5; rep++) {
    const t0 = performance.now();
    run();
    best = Math.min(best, (performance.now() - t0) / 1e3);
  }
  [a, b, c].forEach((t) => t.dispose());
  return (2 * n ** 3) / best / 1e9;
}

interface Row {
  T: number;
  fwdMs: number;
  bwdMs: number;
  totalMs: number;
  gflops: number;
  peakMiB: number;
  timeRatio: number | null;
  memRatio: number | null;
}

function runLength(T: number, reps: number): Omit<Row, 'timeRatio' | 'memRatio'> {
  const q = Tensor.randn([T, H, D], { seed: 1, requiresGrad: true });
  const k = Tensor.randn([T, Hkv, D], { seed: 2, requiresGrad: true });
  const v = Tensor.randn([T, Hkv, D], { seed: 3, requiresGrad: true });
  const g = Tensor.randn([T, H, D], { seed: 4 });
  let fwd = Infinity;
  let bwd = Infinity;
  let peak = 0;
  for (let rep = 0; rep < reps; rep++) {
    resetPeakMemory();
    const t0 = performance.now();
    const out = attention(q, k, v, { causal: true });
    const t1 = performance.now();
    out.backward(g);
    const t2 = performance.now();
    peak = Math.max(peak, memoryStats().cpu.peakBytes);
    fwd = Math.min(fwd, t1 - t0);
    bwd = Math.min(bwd, t2 - t1);
    out.dispose();
    for (const t of [q, k, v]) {
      t.grad?.dispose();
      t.grad = null;
    }
  }
  [q, k, v, g].forEach((t) => t.dispose());
  const flops = 3.5 * ((4 * T * T) / 2) * D * H; // forward + 2.5x forward
  return { T, fwdMs: fwd, bwdMs: bwd, totalMs: fwd + bwd, gflops: flops / ((fwd + bwd) / 1e3) / 1e9, peakMiB: peak / 2 ** 20 };
}

// torch SDPA fwd+bwd ms per length (best of reps) and numpy sgemm GFLOP/s, or null.
function peers(): { sdpaMs: Record<string, number>; numpyGemm: number } | null {
  if (process.argv.includes('--no-peers')) return null;
  const { python, why } = findPython(['torch', 'numpy']);
  if (!python) {
    console.log(`peers: n/a (${why})`);
    return null;
  }
  const code = `
import json, time, torch, numpy as np
torch.set_num_threads(${threads})
H, Hkv, D = ${H}, ${Hkv}, ${D}
res = {}
for T in ${JSON.stringify(lengths)}:
    q = torch.randn(1, H, T, D, requires_grad=True)
    k = torch.randn(1, Hkv, T, D, requires_grad=True)
    v = torch.randn(1, Hkv, T, D, requires_grad=True)
    g = torch.randn(1, H, T, D)
    best = float('inf')
    for rep in range(3 if T <= 4096 else 2):
        t0 = time.perf_counter()
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=(H != Hkv))
        o.backward(g)
        best = min(best, time.perf_counter() - t0)
        q.grad = k.grad = v.grad = None
    res[str(T)] = best * 1e3
a = np.random.randn(1024, 1024).astype(np.float32); b = np.random.randn(1024, 1024).astype(np.float32)
a @ b
gb = float('inf')
for rep in range(5):
    t0 = time.perf_counter(); a @ b; gb = min(gb, time.perf_counter() - t0)
print(json.dumps({"sdpaMs": res, "numpyGemm": 2 * 1024**3 / gb / 1e9}))
`;
  return runPythonJson(python, code, { OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) });
}

const gemm = gemmGflops();
const rows: Row[] = [];
for (const T of lengths) {
  const r = runLength(T, T <= 4096 ? 3 : 2);
  const prev = rows[rows.length - 1];
  rows.push({ ...r, timeRatio: prev ? r.totalMs / prev.totalMs : null, memRatio: prev ? r.peakMiB / prev.peakMiB : null });
}

const peer = peers();
const info = runtimeInfo() as unknown as { simd?: string };
console.log(`attention fwd+bwd, causal, H=${H} Hkv=${Hkv} D=${D}, ${threads} threads, simd ${info.simd ?? '?'}`);
console.log(gemm === null ? 'gemm: n/a (not in this build)' : `gemm 1024^3 f32: ${gemm.toFixed(1)} GFLOP/s`);
if (peer) console.log(`numpy sgemm 1024^3 (peer): ${peer.numpyGemm.toFixed(1)} GFLOP/s`);
const header = ['T', 'fwd ms', 'bwd ms', 'total ms', 'GFLOP/s', 'of gemm', 'of numpy', 'x time', 'peak MiB', 'x mem', 'torch ms', 'vs torch'];
console.log(header.map((h) => h.padStart(10)).join(''));
for (const r of rows) {
  const cells = [
    String(r.T),
    r.fwdMs.toFixed(1),
    r.bwdMs.toFixed(1),
    r.totalMs.toFixed(1),
    r.gflops.toFixed(1),
    gemm === null ? 'n/a' : `${((100 * r.gflops) / gemm).toFixed(0)}%`,
    peer ? `${((100 * r.gflops) / peer.numpyGemm).toFixed(0)}%` : 'n/a',
    r.timeRatio === null ? '-' : r.timeRatio.toFixed(2),
    r.peakMiB.toFixed(1),
    r.memRatio === null ? '-' : r.memRatio.toFixed(2),
    peer ? peer.sdpaMs[String(r.T)]!.toFixed(1) : 'n/a',
    peer ? `${(peer.sdpaMs[String(r.T)]! / r.totalMs).toFixed(2)}x` : 'n/a',
  ];
  console.log(cells.map((c) => c.padStart(10)).join(''));
}
console.log(
  JSON.stringify({
    bench: 'attention',
    H,
    Hkv,
    D,
    threads,
    causal: true,
    gemmGflops: gemm,
    numpyGemmGflops: peer?.numpyGemm ?? null,
    rows: rows.map((r) => ({
      ...r,
      ofGemm: gemm === null ? null : r.gflops / gemm,
      torchSdpaMs: peer?.sdpaMs[String(r.T)] ?? null,
    })),
  }),
);
