// npm run bench -- gemm [--reps N] [--threads N] [--shapes square|llama|all] [--gap-ms N] [--warm-ms N] [--bf16 0|1]
//
// GFLOP/s of our f32 GEMM beside OpenBLAS sgemm (numpy) and torch.matmul, all on the same
// threads, shapes and (row-major) layouts, in the same run: every repetition times all of them,
// in an order that rotates, each after a pause of gap-ms (spinning worker threads of the last
// library to run must not tax the next), so a noisy neighbour hits all three alike. Each timed call
// follows untimed calls of the same product for warm-ms (at least one), for every library alike:
// after the pause the cores and the library's workers sleep, and the first calls pay for waking
// them (at 200 ms pauses, 2048 x 768 x 768 bf16: torch's first call 1.6-5x slower than back to
// back, ours 2-3x, ours still 1.4x after one untimed call and back to back after 5 ms of them),
// which measured the wake-up rather than the GEMM (warm-ms 5 by default). Each result is the
// median of the repetitions. Also prints the machine's FP32 peak, measured by a native FMA
// throughput loop, and the fraction of it each shape reaches.
//
// bf16 rows (--bf16 1, the default): our bf16-compute GEMM (native/cpu/gemm_bf16.cpp: AMX or
// AVX-512 BF16, f32 sums and output) on bf16 inputs and on f32 inputs rounded while packing (what
// mixed-precision training runs), beside torch.matmul on bf16 tensors, timed in the same rotation.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { addon } from '../../src/native/loader.js';
import { Tensor, setNumThreads, runtimeInfo } from '../../src/tensor/index.js';
import { findPython } from './_peers.js';

interface Shape {
  name: string;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const reps = Number(arg('reps', '7'));
const threads = Number(arg('threads', '2'));
const which = arg('shapes', 'all');
const gapMs = Number(arg('gap-ms', '200'));
const withBf16 = arg('bf16', '1') !== '0';
const warmMs = Number(arg('warm-ms', '5'));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// A 110M LLaMA (dim 768, ffn 2048, vocab 32000) at 2048 tokens; linear layers are x @ W^T with W
// (out, in), so forward is transB; the up projection's backward is dx = dy @ W and dW = dy^T @ x.
const SQUARE: Shape[] = [
  { name: '1024^3', M: 1024, N: 1024, K: 1024, transA: false, transB: false },
  { name: '4096x4096x1024', M: 4096, N: 4096, K: 1024, transA: false, transB: false },
];
const LLAMA: Shape[] = [
  { name: 'attn q/k/v/o fwd', M: 2048, N: 768, K: 768, transA: false, transB: true },
  { name: 'mlp gate/up fwd', M: 2048, N: 2048, K: 768, transA: false, transB: true },
  { name: 'mlp down fwd', M: 2048, N: 768, K: 2048, transA: false, transB: true },
  { name: 'lm head fwd', M: 2048, N: 32000, K: 768, transA: false, transB: true },
  { name: 'mlp up bwd dx', M: 2048, N: 768, K: 2048, transA: false, transB: false },
  { name: 'mlp up bwd dW', M: 2048, N: 768, K: 2048, transA: true, transB: false },
];
const shapes = which === 'square' ? SQUARE : which === 'llama' ? LLAMA : [...SQUARE, ...LLAMA];

const shapeLabel = (s: Shape): string =>
  `${s.M}x${s.N}x${s.K} ${s.transA ? 'T' : 'N'}${s.transB ? 'T' : 'N'}`;

// ---- Python peers: a small server per library that times one product per request ----

const PEER_SERVER = String.raw`
import json, os, sys, time
lib = sys.argv[1]
threads = int(sys.argv[2])
if lib == 'numpy':
    import numpy as np
    info = {}
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(threads)
        pools = [p for p in threadpoolctl.threadpool_info() if p.get('user_api') == 'blas']
        info = {k: pools[0].get(k) for k in ('internal_api', 'version', 'architecture', 'num_threads', 'threading_layer')} if pools else {}
    except ImportError:
        cfg = np.show_config(mode='dicts') if 'mode' in np.show_config.__code__.co_varnames else {}
        info = {'config': str(cfg.get('Build Dependencies', {}).get('blas', ''))[:200], 'note': 'threadpoolctl not installed'}
    info['numpy'] = np.__version__
    def make(shape, seed):
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    def mm(a, b, c):
        np.matmul(a, b, out=c)
    def empty(m, n):
        return np.empty((m, n), dtype=np.float32)
else:
    import torch
    torch.set_num_threads(threads)
    import re
    cfg = torch.__config__.show()
    blas = re.search(r'BLAS_INFO=(\w+)', cfg)
    cap = re.search(r'CPU capability usage: (\w+)', cfg)
    info = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'blas': blas.group(1) if blas else 'unknown',
            'cpu_capability': cap.group(1) if cap else 'unknown'}
    def make(shape, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(shape, generator=g, dtype=torch.float32)
    def mm(a, b, c):
        torch.matmul(a, b, out=c)
    def empty(m, n, dtype=torch.float32):
        return torch.empty((m, n), dtype=dtype)
print(json.dumps(info), flush=True)
cache = {}
for line in sys.stdin:
    r = json.loads(line)
    key = (r['M'], r['N'], r['K'], r['transA'], r['transB'], r.get('dtype', 'f32'))
    if key not in cache:
        cache.clear()
        M, N, K, ta, tb, dtype = key
        a = make((K, M) if ta else (M, K), 1)
        b = make((N, K) if tb else (K, N), 2)
        a = a.T if ta else a
        b = b.T if tb else b
        c = empty(M, N)
        if dtype == 'bf16':  # torch only: bf16 tensors in and out, as torch.matmul runs them
            a, b, c = a.to(torch.bfloat16), b.to(torch.bfloat16), empty(M, N, torch.bfloat16)
        for _ in range(2):
            mm(a, b, c)
        cache[key] = (a, b, c)
    a, b, c = cache[key]
    t0 = time.perf_counter()
    while True:  # untimed: wakes the cores and this library's workers after the pause
        mm(a, b, c)
        if time.perf_counter() - t0 >= r['warm']:
            break
    t0 = time.perf_counter()
    mm(a, b, c)
    print(json.dumps({'t': time.perf_counter() - t0}), flush=True)
`;

class Peer {
  readonly info: Record<string, unknown>;
  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    private readonly lines: AsyncIterator<string>,
    info: Record<string, unknown>,
  ) {
    this.info = info;
  }

  static async start(python: string, lib: 'numpy' | 'torch', env: NodeJS.ProcessEnv): Promise<Peer> {
    const proc = spawn(python, ['-c', PEER_SERVER, lib, String(threads)], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const rl: Interface = createInterface({ input: proc.stdout });
    const lines = rl[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`${lib} peer exited: ${stderr.trim().split('\n').slice(-3).join(' ')}`);
    return new Peer(proc, lines, JSON.parse(first.value) as Record<string, unknown>);
  }

  async time(s: Shape, dtype: 'f32' | 'bf16' = 'f32'): Promise<number> {
    this.proc.stdin.write(JSON.stringify({ ...s, dtype, warm: warmMs / 1000 }) + '\n');
    const r = await this.lines.next();
    if (r.done) throw new Error('peer exited');
    return (JSON.parse(r.value) as { t: number }).t;
  }

  stop(): void {
    this.proc.stdin.end();
  }
}

async function startPeer(lib: 'numpy' | 'torch'): Promise<{ peer: Peer | null; why: string }> {
  const { python, why } = findPython([lib]);
  if (!python) return { peer: null, why: `not installed (${why})` };
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads) };
  if (lib === 'numpy') {
    // OpenBLAS picks its kernel and blocking itself: no overrides in this process.
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    env.OPENBLAS_NUM_THREADS = String(threads);
  }
  try {
    return { peer: await Peer.start(python, lib, env), why: '' };
  } catch (err) {
    return { peer: null, why: `failed: ${(err as Error).message}` };
  }
}

// ---- ours ----

interface Ours {
  a: Tensor;
  b: Tensor;
  c: Tensor;
  run(): void;
  /** The bf16-compute GEMM on the same f32 inputs (rounded while packing). */
  runBf16F32In(): void;
  /** The bf16-compute GEMM on bf16 copies of the inputs. */
  runBf16(): void;
  dispose(): void;
}

function prepare(s: Shape): Ours {
  const a = Tensor.randn(s.transA ? [s.K, s.M] : [s.M, s.K], { seed: 1 });
  const b = Tensor.randn(s.transB ? [s.N, s.K] : [s.K, s.N], { seed: 2 });
  const c = Tensor.empty([s.M, s.N]);
  const ah = a.to('bf16'), bh = b.to('bf16');
  const lda = s.transA ? s.M : s.K, ldb = s.transB ? s.K : s.N;
  const ext = addon();
  const run = () =>
    ext.gemm(s.transA, s.transB, s.M, s.N, s.K, 1, a.storage, a.offset, lda, 0, b.storage, b.offset, ldb, 0, 0,
      c.storage, c.offset, s.N, 0, 1);
  const runBf16F32In = () =>
    ext.gemmBf16Compute(s.transA, s.transB, s.M, s.N, s.K, 1, a.storage, a.offset, lda, 0, b.storage, b.offset, ldb, 0, 0,
      c.storage, c.offset, s.N, 0, 1);
  const runBf16 = () =>
    ext.gemmBf16ComputeBf16(s.transA, s.transB, s.M, s.N, s.K, 1, ah.storage, ah.offset, lda, 0, bh.storage, bh.offset, ldb, 0, 0,
      c.storage, c.offset, s.N, 0, 1);
  return { a, b, c, run, runBf16F32In, runBf16, dispose: () => [a, b, c, ah, bh].forEach((x) => x.dispose()) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

// ---- main ----

const ext = addon();
setNumThreads(threads);
const info = runtimeInfo();
const cfg = ext.gemmConfig();
// The peak is measured before and after the shapes, and the best is kept: a busy neighbour can
// only make a throughput loop slower.
const peaks = [ext.gemmPeakGflops(threads, 0.5)];

const [numpyPeer, torchPeer] = await Promise.all([startPeer('numpy'), startPeer('torch')]);

const bf16Kernel = ext.bf16GemmKernel();
console.log(`ours: ${cfg.isa} microkernel ${cfg.mr}x${cfg.nr}, blocking mc ${cfg.mc} kc ${cfg.kc} nc ${cfg.nc}, ${info.threads} threads`);
if (withBf16) console.log(`ours bf16: ${bf16Kernel} kernel${bf16Kernel === 'f32' ? ' (this CPU has neither AMX-BF16 nor AVX512_BF16: the f32 fallback)' : ''}`);
console.log(`OpenBLAS (numpy): ${numpyPeer.peer ? JSON.stringify(numpyPeer.peer.info) : numpyPeer.why}`);
console.log(`torch.matmul: ${torchPeer.peer ? JSON.stringify(torchPeer.peer.info) : torchPeer.why}`);
console.log(`median of ${reps} repetitions after 2 warm-ups; each repetition times the three in a rotating order, ${gapMs} ms apart, each timed call after ${warmMs} ms of untimed ones\n`);

interface Row {
  shape: string;
  name: string;
  ours: number;
  openblas: number | null;
  torch: number | null;
  oursBf16: number | null;
  oursBf16F32In: number | null;
  torchBf16: number | null;
}
const rows: Row[] = [];
const started = Date.now();
for (const s of shapes) {
  const gflop = (2 * s.M * s.N * s.K) / 1e9;
  const ours = prepare(s);
  ours.run();
  ours.run();
  const t: Record<'ours' | 'openblas' | 'torch' | 'oursBf16' | 'oursBf16F32In' | 'torchBf16', number[]> = {
    ours: [], openblas: [], torch: [], oursBf16: [], oursBf16F32In: [], torchBf16: [],
  };
  const timed = (fn: () => void) => async () => {
    const w0 = process.hrtime.bigint();
    do fn(); while (Number(process.hrtime.bigint() - w0) / 1e6 < warmMs);  // untimed, as the peers do
    const t0 = process.hrtime.bigint();
    fn();
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  const runners: [keyof typeof t, () => Promise<number>][] = [['ours', timed(ours.run)]];
  if (numpyPeer.peer) runners.push(['openblas', () => numpyPeer.peer!.time(s)]);
  if (torchPeer.peer) runners.push(['torch', () => torchPeer.peer!.time(s)]);
  if (withBf16) {
    for (let w = 0; w < 2; w++) { ours.runBf16(); ours.runBf16F32In(); }
    runners.push(['oursBf16', timed(ours.runBf16)], ['oursBf16F32In', timed(ours.runBf16F32In)]);
    if (torchPeer.peer) {
      for (let w = 0; w < 2; w++) await torchPeer.peer.time(s, 'bf16');
      runners.push(['torchBf16', () => torchPeer.peer!.time(s, 'bf16')]);
    }
  }
  for (let r = 0; r < reps; r++) {
    // The order rotates each repetition, and each timing starts after a pause: OpenBLAS and
    // OpenMP workers spin for a while after a call, which would tax whoever runs next.
    for (let i = 0; i < runners.length; i++) {
      const [name, time] = runners[(i + r) % runners.length]!;
      await sleep(gapMs);
      t[name].push(await time());
    }
  }
  ours.dispose();
  const rate = (ts: number[]) => (ts.length ? gflop / median(ts) : null);
  rows.push({
    shape: shapeLabel(s), name: s.name, ours: rate(t.ours)!, openblas: rate(t.openblas), torch: rate(t.torch),
    oursBf16: rate(t.oursBf16), oursBf16F32In: rate(t.oursBf16F32In), torchBf16: rate(t.torchBf16),
  });
  // The tables come at the end; where torch's bf16 matmul is slow (AVX2 CPUs: seconds a call) the
  // run takes many minutes, so each shape says when it is done.
  console.error(`gemm: ${rows.length}/${shapes.length} shapes timed (${shapeLabel(s)}), ${((Date.now() - started) / 1000).toFixed(0)} s`);
}
numpyPeer.peer?.stop();
torchPeer.peer?.stop();
peaks.push(ext.gemmPeakGflops(threads, 0.5));
const peak = Math.max(...peaks);
console.log(
  `FP32 peak: ${peak.toFixed(1)} GFLOP/s, measured: ${threads} threads each running a ${cfg.isa} FMA loop of ` +
    `independent accumulator chains (throughput-bound); best of ${peaks.length * 3} runs before and after the shapes ` +
    `(${peaks.map((p) => p.toFixed(1)).join(', ')})\n`,
);

const fmt = (x: number | null, w: number, d = 1) => (x === null ? 'n/a' : x.toFixed(d)).padStart(w);
const na = (p: { peer: Peer | null }) => (p.peer ? null : 'not installed');
console.log(
  `${'shape (M x N x K, op(A) op(B))'.padEnd(26)} ${'workload'.padEnd(18)} ${'ours'.padStart(8)} ${'OpenBLAS'.padStart(9)} ${'torch'.padStart(8)} ${'ours/OB'.padStart(8)} ${'of peak'.padStart(8)}`,
);
for (const r of rows)
  console.log(
    `${r.shape.padEnd(26)} ${r.name.padEnd(18)} ${fmt(r.ours, 8)} ${fmt(r.openblas, 9)} ${fmt(r.torch, 8)} ` +
      `${fmt(r.openblas ? r.ours / r.openblas : null, 8, 2)} ${fmt(r.ours / peak, 8, 2)}`,
  );
if (na(numpyPeer) || na(torchPeer))
  console.log(`(n/a: ${[na(numpyPeer) && 'OpenBLAS', na(torchPeer) && 'torch'].filter(Boolean).join(', ')} not installed)`);
console.log('GFLOP/s; ours/OB = ours / OpenBLAS; of peak = ours / measured FP32 peak\n');
const ratio = (x: number | null, y: number | null) => (x !== null && y !== null ? x / y : null);
if (withBf16) {
  console.log(
    `${'bf16: shape'.padEnd(26)} ${'workload'.padEnd(18)} ${'ours bf16'.padStart(10)} ${'f32 in'.padStart(8)} ${'torch bf16'.padStart(11)} ` +
      `${'vs torch'.padStart(9)} ${'vs f32'.padStart(7)} ${'f32in/torch'.padStart(12)}`,
  );
  for (const r of rows)
    console.log(
      `${r.shape.padEnd(26)} ${r.name.padEnd(18)} ${fmt(r.oursBf16, 10)} ${fmt(r.oursBf16F32In, 8)} ${fmt(r.torchBf16, 11)} ` +
        `${fmt(ratio(r.oursBf16, r.torchBf16), 9, 2)} ${fmt(ratio(r.oursBf16, r.ours), 7, 2)} ${fmt(ratio(r.oursBf16F32In, r.torchBf16), 12, 2)}`,
    );
  console.log(
    `GFLOP/s; ours bf16: ${bf16Kernel} kernel on bf16 inputs, f32 in: the same on f32 inputs ` +
      `${bf16Kernel === 'f32' ? '(the fallback does not round them)' : 'rounded while packing (mixed precision)'}; ` +
      'torch bf16: torch.matmul on bf16 tensors (bf16 out); vs torch = ours bf16 / torch bf16; vs f32 = ours bf16 / ours f32\n',
  );
}
console.log(
  JSON.stringify({
    bench: 'gemm',
    threads,
    isa: cfg.isa,
    peakGflops: +peak.toFixed(1),
    openblas: numpyPeer.peer ? numpyPeer.peer.info : 'not installed',
    torch: torchPeer.peer ? torchPeer.peer.info : 'not installed',
    results: rows.map((r) => ({
      shape: r.shape,
      name: r.name,
      ours: +r.ours.toFixed(1),
      openblas: r.openblas === null ? null : +r.openblas.toFixed(1),
      torch: r.torch === null ? null : +r.torch.toFixed(1),
      ratioOpenblas: r.openblas === null ? null : +(r.ours / r.openblas).toFixed(3),
      fractionOfPeak: +(r.ours / peak).toFixed(3),
      ...(withBf16
        ? {
          bf16: {
            kernel: bf16Kernel,
            ours: r.oursBf16 === null ? null : +r.oursBf16.toFixed(1),
            oursF32In: r.oursBf16F32In === null ? null : +r.oursBf16F32In.toFixed(1),
            torch: r.torchBf16 === null ? null : +r.torchBf16.toFixed(1),
            ratioTorch: ratio(r.oursBf16, r.torchBf16) === null ? null : +ratio(r.oursBf16, r.torchBf16)!.toFixed(3),
            ratioF32: +ratio(r.oursBf16, r.ours)!.toFixed(3),
          },
        }
        : {}),
    })),
  }),
);
