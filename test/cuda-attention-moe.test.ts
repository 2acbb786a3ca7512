// The CUDA kernels of fused attention, the paged KV cache and sparse MoE (native/cuda/attention.cu,
// paged_attention.cu, moe.cu) against the CPU kernels, on shapes that reach each launch plan's
// branches (native/cpu/cuda_plan.cpp): head dims 64, 128 and a generic one (80, 256) with GQA,
// packed sequences with an empty one, causal and full; paged decode split in partitions (one
// long sequence) and not (a batch of rows), over f32 and bf16 caches; MoE routing with ties, a
// stable dispatch, grouped GEMMs forward and backward with an empty expert. The op suites
// (test/ops/*) run the same ops on 'cuda' against their references; these compare the devices
// directly. Skipped with a message on a machine without a GPU (scripts/gpu-check.sh runs them).
import { describe, expect, it } from 'vitest';
import { kernelDevices } from '../src/native/devices.js';
import {
  Tensor, attention, moeCombine, moeDispatch, moeGroupedMatmul, moePermute, moeRouter, pagedAttention, pagedKvStore,
  runtimeInfo, sum, mul,
} from '../src/tensor/index.js';
import { expectClose, randomArray } from './helpers.js';

const info = runtimeInfo();
const gpu = info.cudaCompiled && info.gpus.length > 0;
const noGpu = info.cudaCompiled ? `no GPU: ${info.cudaStatus}` : 'this binary was built without CUDA';

const KERNELS = [
  'attentionForward', 'attentionBackward', 'pagedKvStore', 'pagedAttentionForward',
  'moeRouterForward', 'moeRouterBackward', 'moeDispatch', 'moePermuteForward', 'moePermuteBackward',
  'moeGroupedGemmForward', 'moeGroupedGemmBackward', 'moeExpertsGemmForward', 'moeExpertsGemmBackward',
  'moeCombineForward', 'moeCombineBackward',
];

describe.skipIf(!info.cudaCompiled)('a binary built with CUDA: attention, paged attention and MoE', () => {
  it('registers a cuda kernel for every attention, paged-attention and MoE op', () => {
    expect(KERNELS.filter((fn) => !kernelDevices(fn).includes('cuda'))).toEqual([]);
    for (const fn of KERNELS) expect(kernelDevices(fn)).toContain('cpu');
  });
});

const f32 = (n: number, seed: number, shape: number[], scale = 1): Tensor =>
  Tensor.from(Float32Array.from(randomArray(n, seed, scale)), shape);
const arr = (t: Tensor): Float32Array => t.toArray() as Float32Array;

// Without a GPU there is nothing to compare: the suite is skipped, its title saying why (the
// 2-core CI machine has nvcc but no GPU; scripts/gpu-check.sh runs it on one).
const title = `attention, paged attention and MoE on cuda against cpu${gpu ? '' : ` (skipped: ${noGpu})`}`;
describe.skipIf(!gpu)(title, () => {
  const attentionCases = [
    { D: 64, H: 8, Hkv: 2, cu: [0, 70, 70, 133, 300], causal: true },
    { D: 128, H: 4, Hkv: 4, cu: [0, 257], causal: true },
    { D: 128, H: 6, Hkv: 2, cu: [0, 5, 100], causal: false },
    { D: 80, H: 4, Hkv: 1, cu: [0, 33, 97], causal: true },
    { D: 256, H: 2, Hkv: 1, cu: [0, 48], causal: true },
    { D: 33, H: 3, Hkv: 3, cu: [0, 40, 41], causal: true }, // no float4 reads
  ];
  for (const c of attentionCases) {
    it(`attention forward and backward: D ${c.D}, H ${c.H}/${c.Hkv}, cu [${c.cu.join(',')}], ${c.causal ? 'causal' : 'full'}`, () => {
      const T = c.cu[c.cu.length - 1]!;
      const run = (device: 'cpu' | 'cuda') => {
        const q = f32(T * c.H * c.D, 1, [T, c.H, c.D]).to(device);
        const k = f32(T * c.Hkv * c.D, 2, [T, c.Hkv, c.D]).to(device);
        const v = f32(T * c.Hkv * c.D, 3, [T, c.Hkv, c.D]).to(device);
        const g = f32(T * c.H * c.D, 4, [T, c.H, c.D]).to(device);
        for (const t of [q, k, v]) t.requiresGrad = true;
        const cuSeqlens = Tensor.from(Int32Array.from(c.cu), [c.cu.length], { dtype: 'i32', device });
        const out = attention(q, k, v, { cuSeqlens, causal: c.causal });
        out.backward(g);
        const r = [out, q.grad!, k.grad!, v.grad!].map(arr);
        for (const t of [q, k, v, g, out, cuSeqlens]) t.dispose();
        return r;
      };
      const cpu = run('cpu');
      const cuda = run('cuda');
      ['out', 'dq', 'dk', 'dv'].forEach((name, i) => expectClose(cuda[i]!, cpu[i]!, 1e-4, 1e-3, name));
    });
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    it(`paged decode with and without split-K over a ${dtype} cache`, () => {
      const Hkv = 2, H = 8, D = 128, blockSize = 16, numBlocks = 300;
      // One long sequence (split-K) decoding one row, and a prefill chunk of 3 rows of a short one.
      const ctx = [3000, 40];
      const maxBlocks = Math.ceil(3000 / blockSize);
      const tables = new Int32Array(2 * maxBlocks);
      const perm = Array.from({ length: numBlocks }, (_, i) => (i * 7) % numBlocks); // scattered blocks
      for (let b = 0; b < maxBlocks; b++) tables[b] = perm[b]!;
      for (let b = 0; b < 3; b++) tables[maxBlocks + b] = perm[maxBlocks + b]!;
      const slots: number[] = [];
      for (let s = 0; s < 2; s++)
        for (let t = 0; t < ctx[s]!; t++) slots.push(tables[s * maxBlocks + Math.floor(t / blockSize)]! * blockSize + (t % blockSize));
      const T = slots.length;
      const run = (device: 'cpu' | 'cuda', partitionSize: number) => {
        const kc = Tensor.zeros([numBlocks, blockSize, Hkv, D], { dtype, device });
        const vc = Tensor.zeros([numBlocks, blockSize, Hkv, D], { dtype, device });
        const k = f32(T * Hkv * D, 5, [T, Hkv, D]).to(device);
        const v = f32(T * Hkv * D, 6, [T, Hkv, D]).to(device);
        const sm = Tensor.from(Int32Array.from(slots), [T], { dtype: 'i32', device });
        pagedKvStore(kc, vc, k, v, sm);
        const q = f32(4 * H * D, 7, [4, H, D]).to(device);
        const bt = Tensor.from(tables, [2, maxBlocks], { dtype: 'i32', device });
        const cuQ = Tensor.from(Int32Array.of(0, 1, 4), [3], { dtype: 'i32', device });
        const cl = Tensor.from(Int32Array.from(ctx), [2], { dtype: 'i32', device });
        const out = pagedAttention(q, kc, vc, { blockTables: bt, maxBlocks, cuQ, contextLens: cl, partitionSize, maxContextLen: 3000 });
        const r = [arr(out), kc.to('cpu').to('f32')].map((x) => (x instanceof Tensor ? arr(x) : x));
        for (const t of [kc, vc, k, v, sm, q, bt, cuQ, cl, out]) t.dispose();
        return r;
      };
      for (const partitionSize of [256, 1024]) {
        const cpu = run('cpu', partitionSize);
        const cuda = run('cuda', partitionSize);
        expect(Array.from(cuda[1]!)).toEqual(Array.from(cpu[1]!)); // stores round the same way
        expectClose(cuda[0]!, cpu[0]!, 1e-5, 1e-4, `out (partitionSize ${partitionSize})`);
      }
    });
  }

  it('MoE routing, dispatch, permute, grouped GEMM and combine, forward and backward', () => {
    const N = 300, E = 8, k = 2, C = 48, O = 72;
    const logitsData = Float32Array.from(randomArray(N * E, 11, 2));
    logitsData.fill(1.5, 0, 4); // a tie across more than k experts: the lower ids win
    for (let n = 0; n < N; n++) logitsData[n * E + 7] = -30; // expert 7 is never chosen: an empty group
    const run = (device: 'cpu' | 'cuda', perExpert: boolean) => {
      const logits = Tensor.from(logitsData, [N, E]).to(device);
      const x = f32(N * C, 12, [N, C]).to(device);
      const w = f32(E * O * C, 13, [E, O, C], 0.2).to(device);
      const ws = Array.from({ length: E }, (_, e) => f32(O * C, 20 + e, [O, C], 0.2).to(device));
      const up = f32(N * O, 14, [N, O]).to(device);
      for (const t of [logits, x, w, ...ws]) t.requiresGrad = true;
      const { indices, weights } = moeRouter(logits, k);
      const plan = moeDispatch(indices, E);
      const xs = moePermute(x, plan);
      const y = moeGroupedMatmul(xs, perExpert ? ws : w, plan);
      const out = moeCombine(y, weights, plan);
      sum(mul(out, up)).backward();
      const ints = [indices, plan.order, plan.slotPos, plan.offsets].map((t) => Array.from(t.toArray() as Int32Array));
      const floats = [weights, out, logits.grad!, x.grad!, ...(perExpert ? ws.map((t) => t.grad!) : [w.grad!])].map(arr);
      for (const t of [logits, x, w, ...ws, up, indices, weights, xs, y, out]) t.dispose();
      return { ints, floats };
    };
    for (const perExpert of [false, true]) {
      const cpu = run('cpu', perExpert);
      const cuda = run('cuda', perExpert);
      ['indices', 'order', 'slotPos', 'offsets'].forEach((name, i) => expect(cuda.ints[i], name).toEqual(cpu.ints[i]));
      expect(cpu.ints[0]!.slice(0, 2)).toEqual([0, 1]);
      cuda.floats.forEach((a, i) => expectClose(a, cpu.floats[i]!, 1e-4, 1e-3, `float output ${i} (perExpert ${perExpert})`));
    }
  });
});
