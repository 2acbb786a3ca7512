import { describe, expect, it } from 'vitest';
import { addon } from '../../src/native/loader.js';
import { Tensor, embedding, setNumThreads } from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';
import { embeddingBackwardRef, embeddingRef } from '../reference/kernels.js';


describeDevices('embedding', ['embeddingForward', 'embeddingBackward'], (device) => {
  const dev = on(device);
  it('gathers rows for ids of any shape', () => {
    const V = 7, C = 19;
    const table = randomArray(V * C, 1);
    const idsData = [3, 0, 6, 3, 3, 1];
    const ids = dev.i32(idsData, [2, 3]);
    const t = dev.f32(table, [V, C]);
    const out = embedding(ids, t);
    expect(out.shape).toEqual([2, 3, C]);
    expectClose(out.toArray() as Float32Array, embeddingRef(idsData, Float32Array.from(table), C), 0, 0);
    [ids, t, out].forEach((x) => x.dispose());
  });

  it('scatter-adds gradients for repeated ids, bit-identical with 1 or 2 threads', () => {
    const V = 5, C = 37, N = 41;
    const idsData = Array.from({ length: N }, (_, i) => (i * 7) % 3); // ids 0..2 repeated, 3..4 unused
    const dout = randomArray(N * C, 2);
    const ref = embeddingBackwardRef(idsData, Float32Array.from(dout), V, C);
    const grads = [1, 2].map((threads) => {
      setNumThreads(threads);
      const ids = dev.i32(idsData);
      const t = dev.f32(randomArray(V * C, 3), [V, C], true);
      embedding(ids, t).backward(dev.f32(dout, [N, C]));
      const g = t.grad!.toArray() as Float32Array;
      [ids, t].forEach((x) => x.dispose());
      return g;
    });
    setNumThreads(0);
    expectClose(grads[0]!, ref, 1e-5, 1e-5, 'dtable');
    expect(Array.from(grads[1]!)).toEqual(Array.from(grads[0]!));
  });

  it('passes a finite-difference gradient check (size-1 rows and odd widths)', () => {
    for (const [V, C] of [[1, 1], [4, 3], [3, 17]] as const) {
      const ids = dev.i32([0, V - 1, 0, Math.floor(V / 2)]);
      dev.gradCheck((_, table) => embedding(ids, table!), [{ data: [], shape: [], tensor: ids }, { data: randomArray(V * C, 5), shape: [V, C] }]);
      ids.dispose();
    }
  });

  it('rejects ids outside the table, naming the op, the id, its position and V', () => {
    const t = dev.f32(randomArray(12, 1), [4, 3]);
    const bad = dev.i32([0, 2, 4]);
    expect(() => embedding(bad, t)).toThrow(/embedding: id 4 at position 2 is outside \[0, V = 4\)/);
    const neg = dev.i32([-1]);
    expect(() => embedding(neg, t)).toThrow(/embedding: id -1 at position 0/);
    const fl = dev.f32([0, 1], [2]);
    expect(() => embedding(fl, t)).toThrow(/embedding: ids is f32\[2\].*i32/);
    const flat = dev.f32([0, 1], [2]);
    const ok = dev.i32([0]);
    expect(() => embedding(ok, flat)).toThrow(/embedding: table.*2 dimensions/);
    [t, bad, neg, fl, flat, ok].forEach((x) => x.dispose());
  });

  it('refuses raw calls whose ids share memory with the output (a race past the id check)', () => {
    const a = addon();
    const s = new a.Storage(64 * 4, 'cpu', true); // zeros: every id 0 is valid
    const table = new a.Storage(4 * 4, 'cpu', true);
    expect(() => a.embeddingForward(s, 0, s, 4, table, 0, 4, 1, 4)).toThrow(/embedding: out and ids share memory/);
    expect(() => a.embeddingBackward(table, 0, s, 0, table, 0, 1, 1, 4)).toThrow(/embedding backward: dtable and ids share memory/);
    expect(() => a.embeddingForward(s, 0, s, 40, table, 0, 4, 1, 4)).not.toThrow();
    expect(() => a.embeddingForward(s, 0, s, 60, table, 0, 9, 1, 4)).toThrow(/embedding: ids needs 9 elements from offset 60/);
    s.free();
    table.free();
  });
});
