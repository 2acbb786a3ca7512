// Every op's forward and backward against PyTorch. The committed fixture (made by
// scripts/torch-fixtures.py) needs no Python; where torch is installed the same checks also run
// live on freshly generated values with another seed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findPython } from '../scripts/bench/_peers.js';
import {
  Tensor, adamwStep, attention, clamp, clearTape, crossEntropy, div, embedding, exp, gather, linear, log, logSoftmax, logprobs,
  logsigmoid, matmul, max, maximum, mean, minimum, moeRouter, mul, neg, noGrad, rmsnorm, rope, scatterAdd, sigmoid, softmax, sub, sum, swiglu,
  where,
} from '../src/tensor/index.js';
import { expectClose, numbers } from './helpers.js';
import { moeSwigluLayer } from './reference/moe.js';

interface Arr { shape: number[]; data: number[] }
type Case = Record<string, unknown> & { inputs: Record<string, Arr>; upstream?: Arr; out: Arr; grads: Record<string, Arr> };
interface Fixture { torch: string; seed: number; cases: Record<string, Case> }

const ATOL = 2e-5;
const RTOL = 2e-4;

const leaf = (a: Arr): Tensor => Tensor.from(Float32Array.from(a.data), a.shape, { requiresGrad: true });
const ids = (a: Arr): Tensor => Tensor.from(Int32Array.from(a.data), a.shape);

/** Runs op on the case's inputs, back-propagates the case's upstream gradient, compares all. */
function checkCase(name: string, c: Case, op: (inputs: Record<string, Tensor>) => Tensor): void {
  const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, leaf(v)]));
  const out = op(inputs);
  expectClose(out.toArray() as Float32Array, c.out.data, ATOL, RTOL, `${name}: output`);
  out.backward(c.upstream ? Tensor.from(Float32Array.from(c.upstream.data), c.upstream.shape) : undefined);
  for (const [k, g] of Object.entries(c.grads)) {
    expect(inputs[k]!.grad, `${name}: no gradient for ${k}`).not.toBeNull();
    expectClose(inputs[k]!.grad!.toArray() as Float32Array, g.data, ATOL, RTOL, `${name}: gradient of ${k}`);
  }
  clearTape();
}

function checkFixture(fx: Fixture): void {
  const c = fx.cases;
  checkCase('linear', c.linear!, (i) => linear(i.x!, i.weight!));
  checkCase('matmul', c.matmul!, (i) => matmul(i.a!, i.b!));
  for (const name of ['attention_gqa_causal', 'attention_mha_varlen', 'attention_gqa8_full_varlen']) {
    const a = c[name]!;
    checkCase(name, a, (i) => attention(i.q!, i.k!, i.v!, { cuSeqlens: a.cuSeqlens as number[], causal: a.causal as boolean }));
  }
  checkCase('rmsnorm', c.rmsnorm!, (i) => rmsnorm(i.x!, i.weight!, c.rmsnorm!.eps as number));
  for (const name of ['rope', 'rope_scaled']) {
    const r = c[name]!;
    const pos = Tensor.from(Int32Array.from(r.positions as number[]));
    checkCase(name, r, (i) => rope(i.x!, pos, { theta: r.theta as number, posScale: r.posScale as number }));
  }
  checkCase('swiglu', c.swiglu!, (i) => swiglu(i.gate!, i.up!));
  checkCase('cross_entropy', c.cross_entropy!, (i) => crossEntropy(i.logits!, ids(c.cross_entropy!.targets as Arr)));
  checkCase('logprobs', c.logprobs!, (i) => logprobs(i.logits!, ids(c.logprobs!.ids as Arr)));
  checkCase('embedding', c.embedding!, (i) => embedding(ids(c.embedding!.ids as Arr), i.table!));

  // The elementwise and reduction family.
  const binaries = { sub_trailing: sub, mul_column: mul, div_scalar: div, minimum_row: minimum, maximum_trailing: maximum };
  for (const [name, op] of Object.entries(binaries)) checkCase(name, c[name]!, (i) => op(i.a!, i.b!));
  const unaries = { neg, exp, log, sigmoid, logsigmoid, softmax, log_softmax: logSoftmax };
  for (const [name, op] of Object.entries(unaries)) checkCase(name, c[name]!, (i) => op(i.x!));
  checkCase('clamp', c.clamp!, (i) => clamp(i.x!, c.clamp!.min as number, c.clamp!.max as number));
  checkCase('where', c.where!, (i) => where(ids(c.where!.cond as Arr), i.a!, i.b!));
  checkCase('sum_dim', c.sum_dim!, (i) => sum(i.x!, c.sum_dim!.dim as number));
  checkCase('mean_dim_keepdim', c.mean_dim_keepdim!, (i) => mean(i.x!, c.mean_dim_keepdim!.dim as number, { keepdim: true }));
  checkCase('max_dim', c.max_dim!, (i) => {
    const { values, indices } = max(i.x!, c.max_dim!.dim as number);
    expect(numbers(indices.toArray()), 'max_dim: indices').toEqual((c.max_dim!.indices as Arr).data);
    return values;
  });
  checkCase('gather', c.gather!, (i) => gather(i.x!, c.gather!.dim as number, ids(c.gather!.index as Arr)));
  checkCase('scatter_add', c.scatter_add!, (i) => scatterAdd(i.x!, c.scatter_add!.dim as number, ids(c.scatter_add!.index as Arr), i.src!));

  // Sparse MoE as Mixtral's block: torch.topk routing renormalised, per-expert matmuls, index_add.
  const moe = c.moe_swiglu!;
  checkCase('moe_swiglu', moe, (i) => {
    const { indices, weights } = noGrad(() => moeRouter(linear(i.x!, i.gate!), moe.k as number));
    expect(Array.from(indices.toArray() as Int32Array), 'moe_swiglu: top-k experts').toEqual((moe.indices as Arr).data);
    expectClose(weights.toArray() as Float32Array, (moe.weights as Arr).data, ATOL, RTOL, 'moe_swiglu: routing weights');
    [indices, weights].forEach((t) => t.dispose());
    return moeSwigluLayer(i.x!, i.gate!, i.w1!, i.w3!, i.w2!, moe.k as number);
  });

  const ad = c.adamw as unknown as { start: Arr; hp: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }; grads: Arr[]; params: Arr[] };
  const p = Tensor.from(Float32Array.from(ad.start.data));
  const m = Tensor.zeros(p.shape);
  const v = Tensor.zeros(p.shape);
  ad.grads.forEach((g, step) => {
    const grad = Tensor.from(Float32Array.from(g.data));
    adamwStep(p, grad, m, v, { ...ad.hp, step: step + 1 });
    expectClose(p.toArray() as Float32Array, ad.params[step]!.data, 1e-6, 1e-5, `adamw: parameters after step ${step + 1}`);
    grad.dispose();
  });
}

describe('parity with PyTorch', () => {
  it('matches the committed torch fixture (forward and backward of every op, AdamW steps)', () => {
    const fx = JSON.parse(readFileSync(new URL('./fixtures/torch-ops.json', import.meta.url), 'utf8')) as Fixture;
    checkFixture(fx);
  });

  const { python, why } = findPython(['torch']);
  it.skipIf(!python)(`matches torch live on fresh random values${python ? '' : ` (skipped: ${why})`}`, () => {
    const out = join(mkdtempSync(join(tmpdir(), 'pg-torch-')), 'ops.json');
    const script = new URL('../scripts/torch-fixtures.py', import.meta.url).pathname;
    execFileSync(python!, [script, '--seed', String(1 + (Date.now() % 1000)), '--out', out], { stdio: 'ignore' });
    checkFixture(JSON.parse(readFileSync(out, 'utf8')) as Fixture);
  });
});
