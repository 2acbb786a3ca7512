// The decoder on its own: names and counts, packed batches, determinism, the full-model
// gradient check by finite differences, overfitting one batch, and flat memory.
import { describe, expect, it } from 'vitest';
import {
  LlamaForCausalLM, Rng, Tensor, adamwStep, clipGradNorm, memoryStats, noGrad, packDocuments, parameterCount, preset, scope,
  tapeLength, validateConfig, type PackedBatch,
} from '../../src/index.js';
import { expectClose, numbers } from '../helpers.js';

const tiny = preset('tiny').config;

function docs(seed: number, lengths: number[], V = tiny.vocabSize): number[][] {
  const rng = new Rng(seed);
  return lengths.map((n) => Array.from({ length: n }, () => rng.int(V)));
}

const logitsOf = (m: LlamaForCausalLM, b: PackedBatch): Float32Array =>
  noGrad(() => {
    const t = m.forward(b);
    const a = t.toArray() as Float32Array;
    t.dispose();
    return a;
  });

describe('LlamaForCausalLM', () => {
  it('has Hugging Face parameter names and the parameter count of its config', () => {
    for (const name of ['tiny', 'tiny-tied']) {
      const m = new LlamaForCausalLM(preset(name).config);
      const names = m.namedParameters().map(([n]) => n);
      expect(names.slice(0, 10)).toEqual([
        'model.embed_tokens.weight',
        'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.k_proj.weight',
        'model.layers.0.self_attn.v_proj.weight', 'model.layers.0.self_attn.o_proj.weight',
        'model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.0.mlp.down_proj.weight',
        'model.layers.0.input_layernorm.weight', 'model.layers.0.post_attention_layernorm.weight',
      ]);
      expect(names.includes('lm_head.weight')).toBe(name === 'tiny');
      expect(names.at(-1)).toBe(name === 'tiny' ? 'lm_head.weight' : 'model.norm.weight');
      expect(m.getParameter('model.layers.1.self_attn.k_proj.weight')!.shape).toEqual([32, 64]); // 2 kv heads x 16
      expect(m.parameters().reduce((a, p) => a + p.size, 0)).toBe(parameterCount(m.config).total);
      m.dispose();
    }
  });

  it('initialises deterministically from a seed: normal(0, 0.02) matrices, unit norms', () => {
    const a = new LlamaForCausalLM(tiny, { seed: 3 });
    const b = new LlamaForCausalLM(tiny, { seed: 3 });
    const c = new LlamaForCausalLM(tiny, { seed: 4 });
    const wa = a.model.embed_tokens.weight.toArray() as Float32Array;
    expect(wa).toEqual(b.model.embed_tokens.weight.toArray());
    expect(wa).not.toEqual(c.model.embed_tokens.weight.toArray());
    // different tensors draw different values
    expect(a.getParameter('model.layers.0.self_attn.q_proj.weight')!.toArray()).not.toEqual(
      a.getParameter('model.layers.0.self_attn.o_proj.weight')!.toArray());
    const mean = wa.reduce((s, x) => s + x, 0) / wa.length;
    const std = Math.sqrt(wa.reduce((s, x) => s + (x - mean) ** 2, 0) / wa.length);
    expect(Math.abs(mean)).toBeLessThan(1e-3);
    expect(std).toBeGreaterThan(0.0195);
    expect(std).toBeLessThan(0.0205);
    expect(numbers(a.model.norm.weight.toArray())).toEqual(new Array(64).fill(1));
    for (const m of [a, b, c]) m.dispose();
  });

  it('a packed batch computes each document as if alone: attention never crosses a boundary', () => {
    const m = new LlamaForCausalLM(tiny, { seed: 1, initStd: 0.1 });
    const ds = docs(9, [7, 12, 1, 5]);
    const packed = logitsOf(m, packDocuments(ds));
    let at = 0;
    for (const d of ds) {
      const alone = logitsOf(m, { tokens: Int32Array.from(d) });
      expectClose(packed.subarray(at * 256, (at + d.length) * 256), alone, 1e-5, 1e-4, `document at ${at}`);
      at += d.length;
    }
    // changing the first document leaves the others untouched, and changes the first
    const other = [docs(77, [7])[0]!, ...ds.slice(1)];
    const changed = logitsOf(m, packDocuments(other));
    expect(Array.from(changed.subarray(7 * 256))).toEqual(Array.from(packed.subarray(7 * 256)));
    expect(Array.from(changed.subarray(0, 7 * 256))).not.toEqual(Array.from(packed.subarray(0, 7 * 256)));
    // one sequence: later tokens do not change earlier logits (causal)
    const seq = ds[1]!;
    const a = logitsOf(m, { tokens: Int32Array.from(seq) });
    const b = logitsOf(m, { tokens: Int32Array.from([...seq.slice(0, 6), ...seq.slice(6).map((t) => (t + 1) % 256)]) });
    expect(Array.from(b.subarray(0, 6 * 256))).toEqual(Array.from(a.subarray(0, 6 * 256)));
    m.dispose();
  });

  it('positions default to restarting at 0 per document; explicit positions are used', () => {
    const m = new LlamaForCausalLM(tiny, { seed: 2, initStd: 0.1 });
    const b = packDocuments(docs(4, [5, 6]));
    expect(Array.from(b.positions)).toEqual([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5]);
    expect(Array.from(b.targets.subarray(3, 6))).toEqual([b.tokens[4], -100, b.tokens[6]]);
    expect(logitsOf(m, { tokens: b.tokens, cuSeqlens: b.cuSeqlens })).toEqual(logitsOf(m, b));
    const shifted = logitsOf(m, { ...b, positions: b.positions.map((p) => p + 3) });
    expect(shifted).not.toEqual(logitsOf(m, b));
    m.dispose();
  });

  it('refuses malformed batches, naming the field', () => {
    const m = new LlamaForCausalLM(tiny);
    const tokens = Int32Array.of(1, 2, 3, 4);
    expect(() => m.forward({ tokens, cuSeqlens: [0, 2, 5] })).toThrow(/batch\.cuSeqlens must run from 0 to N = 4/);
    expect(() => m.forward({ tokens, cuSeqlens: [0, 3, 2, 4] })).toThrow(/batch\.cuSeqlens decreases at index 2/);
    expect(() => m.forward({ tokens, positions: Int32Array.of(0, 1, 2) })).toThrow(/batch\.positions has 3 entries, expected 4/);
    expect(() => m.forward({ tokens, positions: Int32Array.of(0, -1, 2, 3) })).toThrow(/batch\.positions\[1\] = -1/);
    expect(() => m.loss({ tokens, targets: Int32Array.of(1, 2) })).toThrow(/batch\.targets has 2 entries/);
    expect(() => m.loss({ tokens })).toThrow(/no targets/);
    expect(() => m.forward({ tokens: Int32Array.of(1, 256) })).toThrow(/batch\.tokens\[1\] = 256 is outside the vocabulary \[0, 256\)/);
    expect(tapeLength()).toBe(0);
    m.dispose();
  });

  it('loss is the mean cross-entropy of the logits over the targets that are not -100', () => {
    const m = new LlamaForCausalLM(tiny, { seed: 8, initStd: 0.1 });
    const b = packDocuments(docs(5, [9, 8]));
    const logits = logitsOf(m, b);
    let sum = 0;
    let n = 0;
    b.targets.forEach((t, i) => {
      if (t === -100) return;
      const row = logits.subarray(i * 256, (i + 1) * 256);
      const mx = Math.max(...row);
      sum += mx + Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0)) - row[t]!;
      n++;
    });
    const loss = noGrad(() => m.loss(b));
    expect(loss.item()).toBeCloseTo(sum / n, 5);
    loss.dispose();
    m.dispose();
  });

  it('full-model gradient check: finite differences on a sample of every parameter tensor', () => {
    // f64 central differences of the f32 loss; a wide init makes the gradients large against f32 noise.
    const cfg = validateConfig({ ...tiny, vocabSize: 32, dim: 16, nHeads: 4, nKvHeads: 2, ffnDim: 24, nLayers: 2 });
    const m = new LlamaForCausalLM(cfg, { seed: 11, initStd: 0.3 });
    for (const [, p] of m.namedParameters()) if (p.shape.length === 1) {
      // norm gains away from 1, so a missing gain multiply would show
      const v = p.toArray() as Float32Array;
      p.write(v.map((x, i) => x + 0.3 * Math.sin(i * 1.7)));
    }
    const b = packDocuments(docs(21, [6, 5], 32));
    const loss = m.loss(b);
    loss.backward();
    loss.dispose();
    const lossAt = () => noGrad(() => {
      const l = m.loss(b);
      const v = l.item();
      l.dispose();
      return v;
    });
    const eps = 1e-2;
    let probes = 0;
    for (const [name, p] of m.namedParameters()) {
      const analytic = p.grad!.toArray() as Float32Array;
      const values = p.toArray() as Float32Array;
      const got: number[] = [];
      const want: number[] = [];
      // the largest gradients plus a spread of ordinary ones
      const order = Array.from(analytic.keys()).sort((i, j) => Math.abs(analytic[j]!) - Math.abs(analytic[i]!));
      const picks = [...order.slice(0, 3), ...Array.from({ length: 3 }, (_, k) => order[Math.floor(((k + 1) * order.length) / 5)]!)];
      for (const i of picks) {
        const orig = values[i]!;
        values[i] = orig + eps;
        p.write(values);
        const up = lossAt();
        values[i] = orig - eps;
        p.write(values);
        const down = lossAt();
        values[i] = orig;
        p.write(values);
        want.push((up - down) / (2 * eps));
        got.push(analytic[i]!);
        probes++;
      }
      expectClose(got, want, 2e-4, 3e-2, `gradient of ${name}`);
      // the check can fail: the largest gradient is not lost in the noise
      expect(Math.abs(want[0]!), `${name}: largest gradient`).toBeGreaterThan(2e-3);
    }
    expect(probes).toBe(6 * m.namedParameters().length);
    m.dispose();
  });

  it('overfits one batch to near-zero loss', () => {
    const m = new LlamaForCausalLM(tiny, { seed: 12 });
    const b = packDocuments(docs(31, [20, 12]));
    const params = m.parameters();
    const state = params.map((p) => ({ m: Tensor.zeros(p.shape), v: Tensor.zeros(p.shape) }));
    const losses: number[] = [];
    const live: number[] = [];
    for (let step = 1; step <= 150; step++) {
      const l = scope(() => m.loss(b));
      losses.push(l.item());
      l.backward();
      l.dispose();
      clipGradNorm(params.map((p) => p.grad!), 1.0);
      params.forEach((p, i) => adamwStep(p, p.grad!, state[i]!.m, state[i]!.v, { lr: 1e-2, weightDecay: 0, step }));
      m.zeroGrad();
      live.push(memoryStats().cpu.liveBytes);
    }
    expect(losses[0]!).toBeGreaterThan(5); // ln 256 = 5.55 at the start
    console.log(`overfit one batch: loss ${losses[0]!.toFixed(3)} -> ${losses.at(-1)!.toFixed(4)} in ${losses.length} steps`);
    expect(losses.at(-1)!).toBeLessThan(1e-3);
    expect(new Set(live.slice(1)).size).toBe(1); // no tensor leaks from forward or loss
    expect(tapeLength()).toBe(0);
    for (const s of state) (s.m.dispose(), s.v.dispose());
    m.dispose();
  });
});
