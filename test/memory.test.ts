// 200 training steps of a small LLaMA-shaped model built from the ops: native memory must come
// back to the same number of live bytes after every step, resident memory must stay flat, and
// the loss must fall (the steps are real).
import { describe, expect, it } from 'vitest';
import {
  Tensor, add, adamwStep, attention, clipGradNorm, crossEntropy, embedding, linear, memoryStats, releaseCachedMemory, rmsnorm, rope, scope,
  swiglu, tapeLength,
} from '../src/tensor/index.js';

const V = 96, C = 32, H = 4, HKV = 2, D = C / H, F = 64, T = 24;

function tinyModel() {
  let seed = 10;
  const p = (shape: number[], std = 0.08) => Tensor.randn(shape, { seed: seed++, std, requiresGrad: true });
  const ones = (n: number) => Object.assign(Tensor.full([n], 1), { requiresGrad: true });
  return {
    tok: p([V, C]), n1: ones(C), wq: p([C, C]), wk: p([HKV * D, C]), wv: p([HKV * D, C]), wo: p([C, C]),
    n2: ones(C), wg: p([F, C]), wu: p([F, C]), wd: p([C, F]), nf: ones(C), head: p([V, C]),
  };
}

type Params = ReturnType<typeof tinyModel>;

function lossOf(m: Params, ids: Tensor, targets: Tensor, pos: Tensor): Tensor {
  let x = embedding(ids, m.tok);
  const h = rmsnorm(x, m.n1);
  const q = rope(linear(h, m.wq).reshape([T, H, D]), pos);
  const k = rope(linear(h, m.wk).reshape([T, HKV, D]), pos);
  const v = linear(h, m.wv).reshape([T, HKV, D]);
  x = add(x, linear(attention(q, k, v).reshape([T, C]), m.wo));
  const h2 = rmsnorm(x, m.n2);
  x = add(x, linear(swiglu(linear(h2, m.wg), linear(h2, m.wu)), m.wd));
  return crossEntropy(linear(rmsnorm(x, m.nf), m.head), targets);
}

describe('memory over training steps', () => {
  it('200 steps keep native and resident memory flat while the loss falls', () => {
    const m = tinyModel();
    const params = Object.values(m);
    const state = params.map((p) => ({ m: Tensor.zeros(p.shape), v: Tensor.zeros(p.shape) }));
    const tokens = Int32Array.from({ length: T + 1 }, (_, i) => (i * 7 + 3) % V);
    const ids = Tensor.from(tokens.subarray(0, T), [T]);
    const targets = Tensor.from(tokens.subarray(1), [T]);
    const pos = Tensor.from(Int32Array.from({ length: T }, (_, i) => i), [T]);

    const losses: number[] = [];
    const live: number[] = [];
    const rss: number[] = [];
    for (let step = 1; step <= 200; step++) {
      const loss = scope(() => lossOf(m, ids, targets, pos));
      losses.push(loss.item());
      loss.backward();
      loss.dispose();
      const grads = params.map((p) => p.grad!);
      clipGradNorm(grads, 1.0);
      params.forEach((p, i) => adamwStep(p, grads[i]!, state[i]!.m, state[i]!.v, { lr: 1e-2, weightDecay: 0.01, step }));
      for (const p of params) {
        p.grad!.dispose();
        p.grad = null;
      }
      expect(tapeLength()).toBe(0);
      live.push(memoryStats().cpu.liveBytes);
      if (step % 20 === 0) rss.push(process.memoryUsage().rss);
    }
    // Exactly the same native bytes live after every step: nothing accumulates.
    expect(new Set(live.slice(1)).size).toBe(1);
    // Resident memory flat within 16 MiB after warm-up (the JS heap may breathe a little).
    expect(rss[rss.length - 1]! - rss[1]!).toBeLessThan(16 * 2 ** 20);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.1);
  });
});

describe('host block cache', () => {
  // 64 MiB: above the largest size glibc would keep in its heap, so without the cache every
  // allocation of it is a fresh mmap that page-faults all of its 16K pages again.
  const n = 1 << 24;

  it('reuses a freed block: refilling a recycled 64 MiB tensor does not fault its pages in again', () => {
    Tensor.full([n], 1).dispose(); // the block now waits in the cache
    const faults0 = process.resourceUsage().minorPageFault;
    for (let i = 0; i < 5; i++) Tensor.full([n], i).dispose();
    const pages = (4 * n) / 4096;
    expect(process.resourceUsage().minorPageFault - faults0).toBeLessThan(pages);
  });

  it('zeroes a recycled block for zeros() and counts it as live again', () => {
    const before = memoryStats().cpu.liveBytes;
    Tensor.full([n], 7).dispose();
    const z = Tensor.zeros([n]);
    expect(memoryStats().cpu.liveBytes).toBe(before + 4 * n);
    const values = z.toArray() as Float32Array;
    expect(values.every((x) => x === 0)).toBe(true);
    z.dispose();
    expect(memoryStats().cpu.liveBytes).toBe(before);
  });

  it('reports the cached bytes, and releaseCachedMemory() gives them back', () => {
    releaseCachedMemory();
    expect(memoryStats().cpu.cachedBytes).toBe(0);
    Tensor.full([n], 1).dispose();
    expect(memoryStats().cpu.cachedBytes).toBeGreaterThanOrEqual(4 * n);
    releaseCachedMemory();
    expect(memoryStats().cpu.cachedBytes).toBe(0);
  });
});
