// npm run bench -- cuda [--no-peers] [--skip attention,gemm,paged,moe,train]
// The CUDA backend beside PyTorch on the same GPU and shapes (scripts/cuda-bench-torch.py runs
// torch's side after ours, in the same run), one table at the end:
//   - fused attention forward + backward, causal, packed sequences: TFLOP/s (FLOPs of FA2's
//     benchmarks: forward 4 * L^2 / 2 * D * H per sequence, backward 2.5x) against torch's
//     scaled_dot_product_attention at f32 (ours is f32) and, for reference, bf16. Target >= 0.9x.
//   - GEMM 4096^3: ours (cuBLASLt) against torch.matmul, f32 (TF32 off on both) and bf16 inputs.
//     Target >= 0.95x.
//   - paged decode attention: GB/s of keys and values read, against the card's memory bandwidth
//     (its datasheet figure where known, else torch's measured copy bandwidth). Target >= 0.7.
//   - MoE routing + dispatch + permute + combine: GB/s of rows moved, beside torch's equivalent.
//   - a training step of a 125M and a 1B LLaMA config: tokens/s and MFU (PaLM's 6N + 12LTd FLOPs
//     per token) against the card's bf16 dense peak (target 45% on H100) and f32 peak, beside
//     transformers + torch (bf16 autocast, fused AdamW) on the same config and batch shape.
// Without a usable GPU it says why and exits 0. Each bench that fails is a row saying why.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { LlamaForCausalLM, flopsPerToken, parameterCount, preset, toHFConfig, type ModelConfig } from '../../src/models/index.js';
import { addon } from '../../src/native/loader.js';
import { packageRoot } from '../../src/package.js';
import {
  Tensor, moeCombine, moeDispatch, moePermute, moeRouter, noGrad, pagedAttention, runtimeInfo, scope,
} from '../../src/tensor/index.js';
import { AdamW } from '../../src/train/optimizer.js';
import { findPython } from './_peers.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const skip = new Set(arg('skip', '').split(',').filter(Boolean));
const peers = !process.argv.includes('--no-peers');

const info = runtimeInfo();
if (!info.cudaCompiled || info.gpus.length === 0) {
  const why = info.cudaCompiled ? `no usable GPU (${info.cudaStatus})` : 'this binary was built without CUDA (no nvcc at build time)';
  console.log(`cuda bench: nothing to measure: ${why}. Run scripts/gpu-check.sh on a machine with an NVIDIA GPU.`);
  process.exit(0);
}
const gpu = info.gpus[0]!;

// Datasheet figures (dense, no sparsity) by GPU name: memory GB/s, bf16 and f32 TFLOP/s.
const CARDS: [RegExp, { gbs: number; bf16: number; f32: number }][] = [
  [/H200/, { gbs: 4800, bf16: 989.4, f32: 66.9 }],
  [/H100.*(SXM|HBM3)/, { gbs: 3350, bf16: 989.4, f32: 66.9 }],
  [/H100.*NVL/, { gbs: 3900, bf16: 835.5, f32: 60 }],
  [/H100/, { gbs: 2000, bf16: 756.5, f32: 51.2 }], // PCIe
  [/A100.*80GB/, { gbs: 2039, bf16: 312, f32: 19.5 }],
  [/A100/, { gbs: 1555, bf16: 312, f32: 19.5 }],
  [/L40S/, { gbs: 864, bf16: 362, f32: 91.6 }],
  [/L4\b/, { gbs: 300, bf16: 121, f32: 30.3 }],
];
const card = CARDS.find(([re]) => re.test(gpu.name))?.[1] ?? null;

// Reading one element back waits for everything issued on the process stream.
const fence = Tensor.zeros([1], { device: 'cuda' });
const sync = (): void => void fence.read(new Float32Array(1));

/** Median seconds of one call of fn, after warm-up, each call fenced. */
function timed(fn: () => void, warmup = 2, reps = 5): number {
  for (let i = 0; i < warmup; i++) fn();
  sync();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    sync();
    times.push((performance.now() - t0) / 1e3);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

interface Row {
  bench: string;
  shape: string;
  unit: string;
  ours: number | null;
  torch: number | null;
  /** ours / torch, or ours / the card's figure for bandwidth rows. */
  ratio: number | null;
  target: number | null;
  note: string;
}
const rows: Row[] = [];
const cudaRand = (shape: number[], seed: number): Tensor => Tensor.randn(shape, { seed }).to('cuda');
const fail = (bench: string, shape: string, err: unknown): void => {
  rows.push({ bench, shape, unit: '', ours: null, torch: null, ratio: null, target: null, note: `failed: ${String((err as Error)?.message ?? err).slice(0, 200)}` });
};

// ---- our side ----
const attentionShapes = [
  { B: 4, L: 2048, H: 16, Hkv: 16, D: 128 },
  { B: 4, L: 2048, H: 32, Hkv: 8, D: 128 },
  { B: 8, L: 1024, H: 16, Hkv: 16, D: 64 },
];
const attnFlops = (s: (typeof attentionShapes)[number]): number => 3.5 * s.B * ((4 * s.L * s.L) / 2) * s.D * s.H;
const ours: Record<string, number> = {};

if (!skip.has('attention')) {
  for (const s of attentionShapes) {
    const key = `attention ${s.B}x${s.L} H${s.H}/${s.Hkv} D${s.D}`;
    try {
      const T = s.B * s.L, nq = [T, s.H, s.D], nkv = [T, s.Hkv, s.D];
      const [q, k, v, dout] = [cudaRand(nq, 1), cudaRand(nkv, 2), cudaRand(nkv, 3), cudaRand(nq, 4)];
      const [out, dq] = [Tensor.empty(nq, { device: 'cuda' }), Tensor.empty(nq, { device: 'cuda' })];
      const [dk, dv] = [Tensor.empty(nkv, { device: 'cuda' }), Tensor.empty(nkv, { device: 'cuda' })];
      const [lse, delta] = [Tensor.empty([s.H, T], { device: 'cuda' }), Tensor.empty([s.H, T], { device: 'cuda' })];
      const cu = Tensor.from(Int32Array.from({ length: s.B + 1 }, (_, b) => b * s.L), [s.B + 1], { dtype: 'i32', device: 'cuda' });
      const scale = 1 / Math.sqrt(s.D);
      const n = addon();
      ours[key] = timed(() => {
        n.attentionForward(out.storage, out.offset, lse.storage, lse.offset, q.storage, q.offset, k.storage, k.offset, v.storage, v.offset,
          cu.storage, cu.offset, s.B, T, s.H, s.Hkv, s.D, scale, true);
        n.attentionBackward(dq.storage, dq.offset, dk.storage, dk.offset, dv.storage, dv.offset, delta.storage, delta.offset,
          dout.storage, dout.offset, out.storage, out.offset, lse.storage, lse.offset, q.storage, q.offset, k.storage, k.offset,
          v.storage, v.offset, cu.storage, cu.offset, s.B, T, s.H, s.Hkv, s.D, scale, true);
      });
      for (const t of [q, k, v, dout, out, dq, dk, dv, lse, delta, cu]) t.dispose();
    } catch (err) {
      fail('attention fwd+bwd', key, err);
    }
  }
}

const gemmShapes = [{ M: 4096, N: 4096, K: 4096 }];
if (!skip.has('gemm')) {
  for (const g of gemmShapes) {
    for (const dtype of ['f32', 'bf16'] as const) {
      const key = `gemm ${dtype} ${g.M}x${g.N}x${g.K}`;
      try {
        const a = Tensor.randn([g.M, g.K], { seed: 5 }).to(dtype).to('cuda');
        const b = Tensor.randn([g.K, g.N], { seed: 6 }).to(dtype).to('cuda');
        const c = Tensor.empty([g.M, g.N], { device: 'cuda' });
        const run = dtype === 'f32' ? addon().gemm.bind(addon()) : addon().gemmBf16.bind(addon());
        ours[key] = timed(() => run(false, false, g.M, g.N, g.K, 1, a.storage, a.offset, g.K, 0, b.storage, b.offset, g.N, 0, 0,
          c.storage, c.offset, g.N, 0, 1), 3, 10);
        for (const t of [a, b, c]) t.dispose();
      } catch (err) {
        fail('gemm', key, err);
      }
    }
  }
}

if (!skip.has('paged')) {
  const nseq = 64, ctx = 2048, H = 32, Hkv = 8, D = 128, blockSize = 16;
  const maxBlocks = ctx / blockSize, numBlocks = nseq * maxBlocks;
  for (const dtype of ['f32', 'bf16'] as const) {
    const shape = `${nseq} seqs x ${ctx} ctx, H${H}/${Hkv} D${D}, ${dtype} cache`;
    try {
      const kc = Tensor.zeros([numBlocks, blockSize, Hkv, D], { dtype, device: 'cuda' });
      const vc = Tensor.zeros([numBlocks, blockSize, Hkv, D], { dtype, device: 'cuda' });
      const q = cudaRand([nseq, H, D], 7);
      const tables = Tensor.from(Int32Array.from({ length: numBlocks }, (_, i) => i), [nseq, maxBlocks], { dtype: 'i32', device: 'cuda' });
      const cuQ = Tensor.from(Int32Array.from({ length: nseq + 1 }, (_, i) => i), [nseq + 1], { dtype: 'i32', device: 'cuda' });
      const lens = Tensor.from(new Int32Array(nseq).fill(ctx), [nseq], { dtype: 'i32', device: 'cuda' });
      const out = Tensor.empty([nseq, H, D], { device: 'cuda' });
      const s = timed(() => void pagedAttention(q, kc, vc, { blockTables: tables, maxBlocks, cuQ, contextLens: lens, out, maxContextLen: ctx }), 3, 10);
      const gbs = (nseq * ctx * Hkv * D * 2 * (dtype === 'f32' ? 4 : 2)) / s / 1e9;
      rows.push({ bench: 'paged decode', shape, unit: 'GB/s', ours: gbs, torch: null, ratio: card ? gbs / card.gbs : null, target: 0.7,
        note: card ? `vs datasheet ${card.gbs} GB/s` : 'vs torch copy bandwidth (below)' });
      for (const t of [kc, vc, q, tables, cuQ, lens, out]) t.dispose();
    } catch (err) {
      fail('paged decode', shape, err);
    }
  }
}

const moeShapes = [{ N: 16384, C: 4096, E: 8, k: 2 }];
const moeBytes = (m: (typeof moeShapes)[number]): number => (3 * m.N * m.k + m.N) * m.C * 4;
if (!skip.has('moe')) {
  for (const m of moeShapes) {
    const key = `moe N${m.N} C${m.C} E${m.E} k${m.k}`;
    try {
      const x = cudaRand([m.N, m.C], 8);
      const logits = cudaRand([m.N, m.E], 9);
      ours[key] = timed(() => noGrad(() => scope(() => {
        const { indices, weights } = moeRouter(logits, m.k);
        const plan = moeDispatch(indices, m.E);
        const xs = moePermute(x, plan);
        moeCombine(xs, weights, plan); // the identity expert: dispatch and combine alone
      })), 2, 5);
      for (const t of [x, logits]) t.dispose();
    } catch (err) {
      fail('moe dispatch+combine', key, err);
    }
  }
}

const base = preset('llama-110m').config;
const trainConfigs: { name: string; cfg: ModelConfig; B: number; T: number }[] = [
  { name: '125M', cfg: { ...base, tieEmbeddings: false }, B: 8, T: 1024 },
  { name: '1B', cfg: { ...base, dim: 2048, nLayers: 16, nHeads: 32, nKvHeads: 8, ffnDim: 8192, maxSeqLen: 2048, tieEmbeddings: false }, B: 4, T: 1024 },
];
const trainOurs: Record<string, number> = {};
if (!skip.has('train')) {
  for (const t of trainConfigs) {
    try {
      const model = new LlamaForCausalLM(t.cfg, { seed: 0 }).to('cuda');
      const opt = new AdamW(model.namedParameters(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0 });
      const n = t.B * t.T;
      const tokens = Int32Array.from({ length: n }, (_, i) => (i * 7919) % t.cfg.vocabSize);
      const targets = Int32Array.from({ length: n }, (_, i) => ((i + 1) % t.T === 0 ? -100 : tokens[i + 1]!));
      const positions = Int32Array.from({ length: n }, (_, i) => i % t.T);
      const cuSeqlens = Int32Array.from({ length: t.B + 1 }, (_, b) => b * t.T);
      const batch = { tokens, targets, positions, cuSeqlens };
      trainOurs[t.name] = timed(() => {
        const l = scope(() => model.loss(batch));
        l.item();
        l.backward();
        l.dispose();
        opt.step(1e-4);
        opt.zeroGrad();
      }, 2, 3);
      opt.dispose();
      model.dispose();
    } catch (err) {
      fail(`train step ${t.name}`, `B${t.B} x T${t.T}`, err);
    }
  }
}
fence.dispose();

// ---- torch's side, same shapes, same GPU (after ours: the GPU is not shared while timing) ----
interface TorchOut {
  device?: string;
  error?: string;
  copyGBs?: number | null;
  attention?: { B: number; L: number; H: number; Hkv: number; D: number; dtype: string; seconds?: number; error?: string }[];
  gemm?: { M: number; N: number; K: number; dtype: string; seconds?: number; error?: string }[];
  moe?: { N: number; C: number; E: number; k: number; seconds?: number; error?: string }[];
  train?: { name: string; seconds?: number; error?: string }[];
}
let torch: TorchOut = {};
if (peers) {
  const { python, why } = findPython(['torch']);
  if (!python) torch = { error: why };
  else {
    const spec = {
      attention: skip.has('attention') ? [] : attentionShapes,
      gemm: skip.has('gemm') ? [] : gemmShapes,
      moe: skip.has('moe') ? [] : moeShapes,
      train: skip.has('train') ? [] : trainConfigs.map((t) => ({ name: t.name, hf: toHFConfig(t.cfg), B: t.B, T: t.T, steps: 3 })),
    };
    try {
      const out = execFileSync(python, [join(packageRoot(), 'scripts', 'cuda-bench-torch.py'), JSON.stringify(spec)],
        { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
      torch = JSON.parse(out.trim().split('\n').pop()!) as TorchOut;
    } catch (err) {
      torch = { error: String((err as Error).message).slice(0, 300) };
    }
  }
} else torch = { error: '--no-peers' };

// ---- the table ----
const torchNote = (x: { error?: string } | undefined): string => (x?.error ? `torch: ${x.error.slice(0, 80)}` : '');
for (const s of skip.has('attention') ? [] : attentionShapes) {
  const key = `attention ${s.B}x${s.L} H${s.H}/${s.Hkv} D${s.D}`;
  if (!(key in ours)) continue;
  const tf = (sec: number | undefined): number | null => (sec ? attnFlops(s) / sec / 1e12 : null);
  const t32 = torch.attention?.find((a) => a.L === s.L && a.H === s.H && a.Hkv === s.Hkv && a.D === s.D && a.B === s.B && a.dtype === 'f32');
  const t16 = torch.attention?.find((a) => a.L === s.L && a.H === s.H && a.Hkv === s.Hkv && a.D === s.D && a.B === s.B && a.dtype === 'bf16');
  const o = tf(ours[key]), t = tf(t32?.seconds);
  rows.push({ bench: 'attention fwd+bwd f32', shape: key.slice(10), unit: 'TFLOP/s', ours: o, torch: t, ratio: o && t ? o / t : null, target: 0.9,
    note: [torchNote(t32), t16?.seconds ? `torch bf16 ${tf(t16.seconds)!.toFixed(1)} TFLOP/s` : ''].filter(Boolean).join('; ') });
}
for (const g of skip.has('gemm') ? [] : gemmShapes) {
  for (const dtype of ['f32', 'bf16']) {
    const key = `gemm ${dtype} ${g.M}x${g.N}x${g.K}`;
    if (!(key in ours)) continue;
    const tg = torch.gemm?.find((x) => x.M === g.M && x.N === g.N && x.K === g.K && x.dtype === dtype);
    const tf = (sec: number | undefined): number | null => (sec ? (2 * g.M * g.N * g.K) / sec / 1e12 : null);
    const o = tf(ours[key]), t = tf(tg?.seconds);
    rows.push({ bench: `gemm ${dtype}`, shape: `${g.M}x${g.N}x${g.K}`, unit: 'TFLOP/s', ours: o, torch: t, ratio: o && t ? o / t : null, target: 0.95, note: torchNote(tg) });
  }
}
if (!card && torch.copyGBs) {
  for (const r of rows) if (r.bench === 'paged decode' && r.ours) r.ratio = r.ours / torch.copyGBs;
}
for (const m of skip.has('moe') ? [] : moeShapes) {
  const key = `moe N${m.N} C${m.C} E${m.E} k${m.k}`;
  if (!(key in ours)) continue;
  const tm = torch.moe?.find((x) => x.N === m.N && x.C === m.C);
  const gbs = (sec: number | undefined): number | null => (sec ? moeBytes(m) / sec / 1e9 : null);
  const o = gbs(ours[key]), t = gbs(tm?.seconds);
  rows.push({ bench: 'moe route+dispatch+combine', shape: key.slice(4), unit: 'GB/s', ours: o, torch: t, ratio: o && t ? o / t : null, target: null, note: torchNote(tm) });
}
for (const t of skip.has('train') ? [] : trainConfigs) {
  if (!(t.name in trainOurs)) continue;
  const tokens = t.B * t.T;
  const fpt = flopsPerToken(t.cfg, t.T).training;
  const tt = torch.train?.find((x) => x.name === t.name);
  const o = tokens / trainOurs[t.name]!, th = tt?.seconds ? tokens / tt.seconds : null;
  const mfu = (tps: number | null, peak: number | undefined): string => (tps && peak ? `${((100 * tps * fpt) / (peak * 1e12)).toFixed(1)}%` : '?');
  rows.push({
    bench: `train step ${t.name}`, shape: `${(parameterCount(t.cfg).total / 1e6).toFixed(0)}M params, B${t.B} x T${t.T}`, unit: 'tokens/s',
    ours: o, torch: th, ratio: th ? o / th : null, target: null,
    note: `MFU ours ${mfu(o, card?.bf16)} of bf16 peak (${mfu(o, card?.f32)} of f32), torch ${mfu(th, card?.bf16)} of bf16 peak (target 45%); ${torchNote(tt)}`,
  });
}

// scripts/gpu-check.sh's phases before the bench ("name|result|seconds|note" lines), as the first rows.
const checks = (process.env.PG_CHECK_PHASES ?? '').split('\n').filter(Boolean).map((line): Row => {
  const [name, result, secs, note] = line.split('|');
  return { bench: `check: ${name}`, shape: '', unit: 's', ours: Number(secs), torch: null, ratio: null, target: null, note: `${result}${note ? `: ${note}` : ''}` };
});
rows.unshift(...checks);

const fmt = (v: number | null, d = 2): string => (v === null ? '-' : v >= 100 ? v.toFixed(0) : v.toFixed(d));
console.log(`\ncuda bench on ${gpu.name} (sm_${gpu.computeCapability.replace('.', '')}, ${(gpu.totalMemory / 2 ** 30).toFixed(0)} GiB)` +
  `${torch.device ? `; torch on ${torch.device}` : ''}${torch.error ? `; torch: ${torch.error}` : ''}` +
  `${torch.copyGBs ? `; torch copy bandwidth ${torch.copyGBs.toFixed(0)} GB/s` : ''}`);
const header = ['bench', 'shape', 'unit', 'ours', 'torch', 'ratio', 'target', 'ok', 'note'];
const table = rows.map((r) => [r.bench, r.shape, r.unit, fmt(r.ours), fmt(r.torch), fmt(r.ratio), r.target === null ? '-' : `>= ${r.target}`,
  r.target === null || r.ratio === null ? '-' : r.ratio >= r.target ? 'yes' : 'NO', r.note]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
for (const line of [header, widths.map((w) => '-'.repeat(w)), ...table]) console.log(line.map((c, i) => c.padEnd(widths[i]!)).join('  '));
console.log(JSON.stringify({ bench: 'cuda', gpu: gpu.name, rows }));
