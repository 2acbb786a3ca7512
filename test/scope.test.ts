// scope(): what it keeps (whatever its result reaches, at any depth, and what keep() names) and
// async scopes (each owns what it makes across awaits, even when several run at once).
import { describe, expect, it } from 'vitest';
import { Tensor, add, keep, memoryStats, scope } from '../src/tensor/index.js';
import { numbers } from './helpers.js';

const live = (): number => memoryStats().cpu.liveCount;
const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Pair {
  constructor(readonly first: Tensor, readonly second: { inner: Tensor }) {}
}

describe('scope keeps what its result reaches', () => {
  it('through class instances (own fields), deep nesting, Sets, Map keys and cycles', () => {
    const before = live();
    const out = scope(() => {
      Tensor.zeros([3]); // dropped
      const deep = { a: { b: { c: { d: { e: { f: [Tensor.zeros([1])] } } } } } };
      const cyclic: { self?: unknown; t: Tensor } = { t: Tensor.zeros([2]) };
      cyclic.self = cyclic;
      const key = Tensor.zeros([4]);
      return {
        pair: new Pair(Tensor.zeros([5]), { inner: Tensor.zeros([6]) }),
        deep,
        cyclic,
        set: new Set([Tensor.zeros([7])]),
        map: new Map([[key, 'k']]),
        data: new Float32Array(1 << 16), // walked past, not into
      };
    });
    expect(live()).toBe(before + 6);
    const all = [out.pair.first, out.pair.second.inner, out.deep.a.b.c.d.e.f[0]!, out.cyclic.t, ...out.set, ...out.map.keys()];
    for (const t of all) expect(t.disposed).toBe(false);
    expect(numbers(out.pair.second.inner.toArray())).toEqual([0, 0, 0, 0, 0, 0]);
    all.forEach((t) => t.dispose());
    expect(live()).toBe(before);
  });

  it('through a 100k-deep chain and a cycle below the shallow levels, without stack overflow', () => {
    const before = live();
    const out = scope(() => {
      Tensor.zeros([1]); // dropped
      const ring: { next?: unknown; t?: Tensor } = {};
      let node: { next?: unknown; t?: Tensor } = { next: ring };
      ring.next = node; // a cycle, 100k levels down
      for (let i = 0; i < 100_000; i++) node = { next: node };
      ring.t = Tensor.zeros([2]);
      return node;
    });
    expect(live()).toBe(before + 1);
    let n = out as { next?: unknown; t?: Tensor };
    while (!n.t) n = n.next as typeof n;
    n.t.dispose();
    expect(live()).toBe(before);
  });

  it('nested scopes hand survivors to the enclosing scope, which disposes them unless kept', () => {
    const before = live();
    const kept = scope(() => {
      const inner = scope(() => new Pair(Tensor.zeros([1]), { inner: Tensor.zeros([1]) }));
      expect(inner.first.disposed).toBe(false);
      return keep(Tensor.zeros([2]));
    });
    expect(live()).toBe(before + 1);
    kept.dispose();
    expect(live()).toBe(before);
  });
});

describe('async scopes', () => {
  it('dispose what they made across awaits and keep what they resolve to', async () => {
    const before = live();
    const out = await scope(async () => {
      const a = Tensor.full([4], 1);
      await tick();
      const b = Tensor.full([4], 2);
      await tick();
      return { sum: add(a, b) };
    });
    expect(live()).toBe(before + 1);
    expect(numbers(out.sum.toArray())).toEqual([3, 3, 3, 3]);
    out.sum.dispose();
    expect(live()).toBe(before);
  });

  it('dispose what they made when fn throws after an await, and pass the error on', async () => {
    const before = live();
    await expect(
      scope(async () => {
        Tensor.zeros([8]);
        await tick();
        Tensor.zeros([8]);
        throw new Error('step failed');
      }),
    ).rejects.toThrow('step failed');
    expect(live()).toBe(before);
  });

  it('running at once, each owns what it makes (no scope disposes another one’s tensors)', async () => {
    const before = live();
    const run = (value: number, delays: number[]) =>
      scope(async () => {
        let acc = Tensor.full([2], 0);
        for (const ms of delays) {
          await tick(ms);
          // A synchronous scope inside an async one, as a training op would use.
          acc = scope(() => add(acc, Tensor.full([2], value)));
        }
        return acc;
      });
    // Interleaved: each resumes while the other is suspended; the short one ends first.
    const [a, b] = await Promise.all([run(1, [5, 1, 10, 1]), run(10, [1, 5, 1])]);
    expect(numbers(a.toArray())).toEqual([4, 4]);
    expect(numbers(b.toArray())).toEqual([30, 30]);
    expect(live()).toBe(before + 2);
    a.dispose();
    b.dispose();
    expect(live()).toBe(before);
  });

  it('an async scope nested in an async scope hands its result to the outer one', async () => {
    const before = live();
    const out = await scope(async () => {
      const inner = await scope(async () => {
        await tick();
        return [Tensor.zeros([1]), Tensor.zeros([1])];
      });
      Tensor.zeros([3]);
      return inner[0]!;
    });
    expect(live()).toBe(before + 1);
    out.dispose();
    expect(live()).toBe(before);
  });
});
