// decodeMoeFfn (src/tensor/ops/decode.ts over native/cpu/decode.cpp): the sparse MoE feed-forward
// of a few decode rows in one native call equals x + SparseMoE.forward(rmsnorm(x)) on the
// separate ops, for 1..8 rows, top-1 and top-2, with and without a shared expert, with ties and
// NaN among the router logits; it reads only the chosen experts (the others NaN-poisoned) from
// their own storages (an in-place write is seen by the next call of the same prepared list);
// arguments out of shape are refused.
import { describe, expect, it } from 'vitest';
import { ForwardRecorder, SparseMoE, Tensor, add, noGrad, rmsnorm, type ParamInit } from '../../src/index.js';
import { addon } from '../../src/native/loader.js';
import { decodeMoeFfn, decodeMoeScratchSize, type DecodeMoeWeights } from '../../src/tensor/ops/decode.js';
import { expectClose, randomArray } from '../helpers.js';

const arr = (t: Tensor): Float32Array => t.toArray() as Float32Array;
function initFrom(seed0: number, std = 0.3): ParamInit {
  let seed = seed0;
  return (shape, kind) => (kind === 'ones' ? Tensor.full(shape, 1) : Tensor.randn(shape, { seed: seed++, std }));
}

const C = 32, F = 48;

function setup(E: number, K: number, S: number, seed: number) {
  const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: E, topK: K, numSharedExperts: S }, initFrom(seed));
  const norm = Tensor.from(Float32Array.from(randomArray(C, seed + 1, 0.2), (v) => 1 + v), [C]);
  const w = moe.moeDecodeWeights()!;
  const weights: DecodeMoeWeights = { normWeight: norm, eps: 1e-5, ...w };
  return { moe, norm, weights };
}

function scratchFor(M: number, E: number, K: number, S: number) {
  const need = decodeMoeScratchSize(M, C, F, E, K, S);
  return { h: Tensor.empty([M, C]), scratch: Tensor.full([need.floats], NaN), index: Tensor.zeros([need.ints], { dtype: 'i32' }) };
}

/** x + SparseMoE(rmsnorm(x)) on the separate ops, and the experts each row chose. */
function reference(moe: SparseMoE, norm: Tensor, xData: Float32Array, M: number): { y: Float32Array; used: Set<number> } {
  const rec = new ForwardRecorder();
  const y = noGrad(() => {
    const x = Tensor.from(xData, [M, C]);
    return arr(add(x, moe.forward(rmsnorm(x, norm, 1e-5), rec)));
  });
  rec.dispose();
  return { y, used: new Set(moe.lastRouting!.experts) };
}

function fused(weights: DecodeMoeWeights, xData: Float32Array, M: number, E: number, K: number, S: number): Float32Array {
  const x = Tensor.from(xData, [M, C]);
  decodeMoeFfn(x, weights, scratchFor(M, E, K, S));
  return arr(x);
}

describe('decodeMoeFfn', () => {
  for (const [E, K, S] of [[4, 2, 0], [6, 1, 0], [8, 2, 1]] as const) {
    it(`equals the separate ops for 1..8 rows (E = ${E}, top-${K}, ${S} shared), reading only the chosen experts`, () => {
      const { moe, norm, weights } = setup(E, K, S, 10 * E + K + S);
      for (let M = 1; M <= 8; M++) {
        const xData = Float32Array.from(randomArray(M * C, 100 + M));
        const { y } = reference(moe, norm, xData, M);
        expectClose(fused(weights, xData, M, E, K, S), y, 1e-5, 1e-4, `${M} rows`);
      }
      // One row chooses K of E: poison the other experts in place (the same storages the list
      // names); the step neither reads them nor changes.
      const xData = Float32Array.from(randomArray(C, 7));
      const { y, used } = reference(moe, norm, xData, 1);
      let poisoned = 0;
      weights.experts.forEach((ex, e) => {
        if (used.has(e)) return;
        poisoned++;
        for (const t of [ex.w1, ex.w3, ex.w2]) t.write(new Float32Array(t.size).fill(NaN));
      });
      expect(poisoned).toBe(E - K);
      const out = fused(weights, xData, 1, E, K, S);
      expect(out.every(Number.isFinite)).toBe(true);
      expectClose(out, y, 1e-5, 1e-4, 'with the unchosen experts NaN');
      moe.dispose();
    });
  }

  it('routes ties to the lower expert and a NaN logit first, as moeRouter', () => {
    const E = 4, K = 2, M = 3;
    const { moe, norm, weights } = setup(E, K, 0, 5);
    // Experts 1 and 2 have the same router row: every row ties them.
    const g = arr(weights.router);
    g.copyWithin(2 * C, 1 * C, 2 * C);
    weights.router.write(g);
    const xData = Float32Array.from(randomArray(M * C, 9));
    expectClose(fused(weights, xData, M, E, K, 0), reference(moe, norm, xData, M).y, 1e-5, 1e-4, 'ties');
    // A NaN in expert 3's router row: every row's logit 3 is NaN, chosen first; its weight is NaN.
    g[3 * C + 5] = NaN;
    weights.router.write(g);
    const ref = reference(moe, norm, xData, M);
    expect(Array.from(moe.lastRouting!.experts).filter((_, i) => i % K === 0)).toEqual([3, 3, 3]);
    const out = fused(weights, xData, M, E, K, 0);
    expect(Array.from(out, Number.isNaN)).toEqual(Array.from(ref.y, Number.isNaN));
    moe.dispose();
  });

  it('sees an in-place update of an expert weight (its own storage, no copy)', () => {
    const E = 4, K = 2;
    const { moe, norm, weights } = setup(E, K, 0, 21);
    const xData = Float32Array.from(randomArray(C, 22));
    const before = fused(weights, xData, 1, E, K, 0);
    const { used } = reference(moe, norm, xData, 1);
    const e = [...used][0]!;
    const w2 = weights.experts[e]!.w2;
    w2.write(Float32Array.from(arr(w2), (v) => 2 * v)); // as an optimizer step: the same tensor, new values
    const after = fused(weights, xData, 1, E, K, 0);
    expectClose(after, reference(moe, norm, xData, 1).y, 1e-5, 1e-4, 'after the update');
    expect(after.some((v, i) => Math.abs(v - before[i]!) > 1e-4)).toBe(true);
    moe.dispose();
  });

  it('refuses a short scratch, a bad topK and a wrong expert list', () => {
    const E = 4, K = 2, M = 2;
    const { moe, weights } = setup(E, K, 0, 31);
    const x = Tensor.zeros([M, C]);
    const s = scratchFor(M, E, K, 0);
    expect(() => decodeMoeFfn(x, weights, { ...s, scratch: Tensor.zeros([10]) })).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => decodeMoeFfn(x, { ...weights, topK: 5 }, s)).toThrow(expect.objectContaining({ code: 'E_ARGUMENT' }));
    expect(() => decodeMoeFfn(x, { ...weights, experts: weights.experts.slice(0, 3) }, s)).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    // Natively: a list one matrix short, and an entry past its storage.
    const list = [...weights.experts].flatMap((e) => [e.w1, e.w3, e.w2]).map((t) => ({ storage: t.storage, offset: t.offset }));
    const call = (experts: typeof list) => addon().decodeMoeFfn(x.storage, 0, s.h.storage, 0, s.scratch.storage, 0, s.index.storage, 0,
      weights.normWeight.storage, 0, weights.router.storage, 0, experts, F, E, K, 0, 1e-5, M, C);
    expect(() => call(list)).not.toThrow();
    expect(() => call(list.slice(1))).toThrow(expect.objectContaining({ code: 'E_NATIVE_ARG' }));
    expect(() => call([...list.slice(1), { storage: list[0]!.storage, offset: 1 }])).toThrow(expect.objectContaining({ code: 'E_NATIVE_ARG' }));
    moe.dispose();
  });
});
