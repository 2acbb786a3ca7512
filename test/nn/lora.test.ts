// LoRA (src/nn/lora.ts): the adapted Linear against a float64 reference and finite differences,
// a fresh adapter (B = 0) leaving the model exactly as it was, PEFT's target rules, frozen base
// weights with only the adapters in the optimizer (its state measured), merging, dropout, and the
// engine serving base + adapter through the separate ops with the merged model's output.
import { afterAll, describe, expect, it } from 'vitest';
import { Engine, type GenerateOptions } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';
import {
  Linear, LoraAdapter, applyLora, loraLayers, loraParameters, matchesTarget, mergeLora, unmergeLora, withAdaptersDisabled,
} from '../../src/nn/index.js';
import { AdamW } from '../../src/train/optimizer.js';
import { Tensor, clearTape, memoryStats, noGrad, numel, resetPeakMemory, scope } from '../../src/tensor/index.js';
import { expectClose, randomArray } from '../helpers.js';

const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: 128 });
const batch = {
  tokens: Int32Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % 256),
  targets: Int32Array.from({ length: 24 }, (_, i) => (i * 37 + 42) % 256),
  cuSeqlens: [0, 10, 24],
};

function logitsOf(model: LlamaForCausalLM): Float32Array {
  return noGrad(() => {
    const t = model.forward(batch);
    const a = t.toArray() as Float32Array;
    t.dispose();
    return a;
  });
}

/** Fills every lora_B with random values (a fresh adapter's B is 0, which hides the adapter's term). */
function randomizeB(model: LlamaForCausalLM, seed: number, std = 0.05): void {
  for (const [n, p] of loraParameters(model))
    if (n.endsWith('lora_B.weight')) p.write(Float32Array.from(randomArray(p.size, seed++, std)));
}

describe('the LoRA linear', () => {
  it('is x W^T + (alpha / r) x A^T B^T (float64 reference) with A ~ U(-1/sqrt(in), 1/sqrt(in)) and B = 0 at init', () => {
    const [N, In, Out, r, alpha] = [5, 12, 7, 3, 6];
    const l = new Linear(In, Out, (s) => Tensor.from(Float32Array.from(randomArray(numel(s), 1, 0.3)), s));
    const a = new LoraAdapter(In, Out, { r, alpha, seed: 4 });
    const A = a.lora_A.weight.toArray() as Float32Array;
    expect(a.lora_A.weight.shape).toEqual([r, In]);
    expect(a.lora_B.weight.shape).toEqual([Out, r]);
    expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(In));
    expect(Math.max(...A.map(Math.abs))).toBeGreaterThan(0.5 / Math.sqrt(In));
    expect([...(a.lora_B.weight.toArray() as Float32Array)].every((v) => v === 0)).toBe(true);
    l.setAdapter(a);
    const B = Float32Array.from(randomArray(Out * r, 2, 0.5));
    a.lora_B.weight.write(B);
    const W = l.weight.toArray() as Float32Array;
    const x = Float32Array.from(randomArray(N * In, 3));
    const y = noGrad(() => l.forward(Tensor.from(x, [N, In])).toArray() as Float32Array);
    const want: number[] = [];
    for (let n = 0; n < N; n++)
      for (let o = 0; o < Out; o++) {
        let base = 0;
        for (let i = 0; i < In; i++) base += x[n * In + i]! * W[o * In + i]!;
        let low = 0;
        for (let k = 0; k < r; k++) {
          let ax = 0;
          for (let i = 0; i < In; i++) ax += x[n * In + i]! * A[k * In + i]!;
          low += B[o * r + k]! * ax;
        }
        want.push(base + (alpha / r) * low);
      }
    expectClose(y, want, 1e-5, 1e-5, 'adapted linear');
    l.dispose();
  });

  it('gradients of x, W, A and B (the real module\'s parameters) match central finite differences', () => {
    const [N, In, Out, r] = [4, 6, 5, 2];
    const l = new Linear(In, Out, (s) => Tensor.from(Float32Array.from(randomArray(numel(s), 6, 0.3)), s));
    const a = new LoraAdapter(In, Out, { r, alpha: 4, seed: 2 });
    l.setAdapter(a);
    a.lora_B.weight.write(Float32Array.from(randomArray(Out * r, 9, 0.4)));
    const x = Tensor.from(Float32Array.from(randomArray(N * In, 7)), [N, In], { requiresGrad: true });
    const R = Float32Array.from(randomArray(N * Out, 99));
    const lossAt = (): number =>
      noGrad(() => {
        const y = l.forward(x).toArray() as Float32Array;
        return y.reduce((s, v, i) => s + v * R[i]!, 0);
      });
    const out = l.forward(x);
    out.backward(Tensor.from(R, [N, Out]));
    out.dispose();
    clearTape();
    const probe = (t: Tensor, what: string): void => {
      const analytic = t.grad!.toArray() as Float32Array;
      const v = t.toArray() as Float32Array;
      const eps = 1e-2;
      const numeric: number[] = [];
      for (let i = 0; i < v.length; i++) {
        const orig = v[i]!;
        v[i] = orig + eps;
        t.write(v);
        const up = lossAt();
        v[i] = orig - eps;
        t.write(v);
        const down = lossAt();
        v[i] = orig;
        t.write(v);
        numeric.push((up - down) / (2 * eps));
      }
      expectClose(analytic, numeric, 2e-3, 2e-2, `dL/d${what}`);
    };
    probe(x, 'x');
    probe(l.weight, 'W');
    probe(a.lora_A.weight, 'A');
    probe(a.lora_B.weight, 'B');
    // a frozen base weight takes no gradient; the adapter's still do
    l.zeroGrad();
    l.weight.requiresGrad = false;
    const out2 = l.forward(x);
    out2.backward(Tensor.from(R, [N, Out]));
    out2.dispose();
    clearTape();
    expect(l.weight.grad).toBeNull();
    expect(a.lora_A.weight.grad).not.toBeNull();
    l.dispose();
    x.dispose();
  });
});

describe('PEFT target rules', () => {
  it('a list matches a whole name or a "."-suffix; a string is a full-match regex; "all-linear" leaves lm_head out', () => {
    expect(matchesTarget('model.layers.0.self_attn.q_proj', ['q_proj', 'v_proj'])).toBe(true);
    expect(matchesTarget('model.layers.0.self_attn.xq_proj', ['q_proj'])).toBe(false);
    expect(matchesTarget('q_proj', ['q_proj'])).toBe(true);
    expect(matchesTarget('model.layers.1.self_attn.v_proj', '.*\\.1\\.self_attn\\.(q|v)_proj')).toBe(true);
    expect(matchesTarget('model.layers.0.self_attn.v_proj', '.*\\.1\\.self_attn\\.(q|v)_proj')).toBe(false);
    expect(matchesTarget('model.layers.0.self_attn.v_proj', 'v_proj')).toBe(false); // full match, not search
    expect(matchesTarget('model.layers.0.mlp.down_proj', 'all-linear')).toBe(true);
    expect(matchesTarget('lm_head', 'all-linear')).toBe(false);
  });

  it('wraps exactly the matching Linears of a model, names its parameters as PEFT does, and refuses bad targets', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 3, initStd: 0.05 });
    const params = applyLora(model, { r: 4, alpha: 8, targetModules: '.*\\.1\\.self_attn\\.(q|v)_proj' });
    expect(params.map(([n]) => n)).toEqual([
      'model.layers.1.self_attn.q_proj.lora_A.weight', 'model.layers.1.self_attn.q_proj.lora_B.weight',
      'model.layers.1.self_attn.v_proj.lora_A.weight', 'model.layers.1.self_attn.v_proj.lora_B.weight',
    ]);
    expect(params[2]![1].shape).toEqual([4, cfg.dim]);
    expect(params[3]![1].shape).toEqual([cfg.nKvHeads * (cfg.dim / cfg.nHeads), 4]);
    expect(loraLayers(model).map(([n]) => n)).toEqual(['model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
    expect(() => applyLora(model, { r: 4, targetModules: ['k_proj'] })).toThrow(/already has adapters/);
    model.dispose();
    const m2 = new LlamaForCausalLM(cfg, { seed: 3, initStd: 0.05 });
    expect(() => applyLora(m2, { r: 4, targetModules: ['qproj'] })).toThrow(/matches no Linear \(names look like model\.layers\.0\.self_attn\.q_proj/);
    expect(() => applyLora(m2, { r: 4, targetModules: ['lm_head'] })).toThrow(/lm_head/);
    expect(() => applyLora(m2, { r: 0, targetModules: ['q_proj'] })).toThrow(/field "r"/);
    expect(() => applyLora(m2, { r: 2, dropout: 1, targetModules: ['q_proj'] })).toThrow(/field "dropout"/);
    expect(() => applyLora(m2, { r: 2, targetModules: '(' })).toThrow(/not a valid regular expression/);
    expect(loraParameters(m2)).toEqual([]);
    m2.dispose();
  });
});

describe('LoRA on the tiny LLaMA', () => {
  const model = new LlamaForCausalLM(cfg, { seed: 11, initStd: 0.08 });
  const base = logitsOf(model);
  const baseNames = model.namedParameters().map(([n]) => n);
  const adapters = applyLora(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'], seed: 1 });
  afterAll(() => model.dispose());

  it('a fresh adapter (B = 0) gives the base model\'s logits exactly', () => {
    expect(logitsOf(model)).toEqual(base);
    expect(adapters).toHaveLength(2 * 5 * cfg.nLayers);
  });

  it('freezes every base weight: the loss\'s gradients reach the adapters only', () => {
    randomizeB(model, 100);
    expect(model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n)).toEqual(adapters.map(([n]) => n));
    const loss = model.loss(batch);
    loss.backward();
    loss.dispose();
    for (const [n, p] of model.namedParameters()) {
      if (n.includes('.lora_')) expect(p.grad, n).not.toBeNull();
      else expect(p.grad, n).toBeNull();
    }
    model.zeroGrad();
  });

  it('only the adapters get optimizer state: measured bytes equal 2 moments of the adapters, not of the model', () => {
    const adapterElems = adapters.reduce((s, [, p]) => s + p.size, 0);
    const allElems = model.parameters().reduce((s, p) => s + p.size, 0);
    // Even handed every parameter, the optimizer keeps state for the trainable ones only.
    const opt = new AdamW(model.namedParameters(), { weightDecay: 0 });
    const before = logitsOf(model);
    const loss = model.loss(batch);
    loss.backward();
    loss.dispose();
    const live = memoryStats().cpu.liveBytes;
    opt.step(1e-2);
    const stateBytes = memoryStats().cpu.liveBytes - live;
    expect(stateBytes).toBe(2 * 4 * adapterElems);
    const state = opt.exportState();
    expect(state.entries.map((e) => e.name)).toEqual(adapters.map(([n]) => n));
    console.log(`LoRA r=4: optimizer state ${stateBytes} bytes for ${adapterElems} adapter elements (full fine-tuning: ${2 * 4 * allElems} bytes, ${(allElems / adapterElems).toFixed(1)}x)`);
    expect(stateBytes).toBeLessThan((2 * 4 * allElems) / 5);
    // the step changed the adapters, so the outputs moved
    expect(logitsOf(model)).not.toEqual(before);
    opt.dispose();
    model.zeroGrad();
  });

  it('training through packed attention lowers the loss in a few AdamW steps', () => {
    const opt = new AdamW(adapters, { weightDecay: 0 });
    const losses: number[] = [];
    for (let s = 0; s < 8; s++) {
      const l = scope(() => model.loss(batch));
      losses.push(l.item());
      l.backward();
      l.dispose();
      opt.step(2e-2);
      model.zeroGrad();
    }
    expect(losses[7]!).toBeLessThan(losses[0]! - 0.05);
    opt.dispose();
  });

  it('the engine serves base + adapter through the separate ops, with the merged model\'s greedy output and log-probs', async () => {
    randomizeB(model, 300, 0.1); // an adapter that changes the outputs
    const layer0 = model.model.layers.items[0]!;
    expect(layer0.decodeWeights()).toBeNull(); // a wrapped projection is not fusable
    const perToken = 2 * cfg.nLayers * cfg.nKvHeads * (cfg.dim / cfg.nHeads) * 4;
    const prompts = [[1, 7, 99, 3, 4], [200, 13, 5, 80, 81, 82, 83, 9]];
    const opts: GenerateOptions = { maxTokens: 10, ignoreEos: true, logprobs: 0 };
    async function serve(m: LlamaForCausalLM): Promise<{ tokens: number[]; logprobs: number[] }[]> {
      const engine = new Engine(m, { kvCacheBytes: 16 * 16 * perToken, blockSize: 16 });
      const out = [];
      for (const p of prompts) {
        const tokens: number[] = [], logprobs: number[] = [];
        for await (const d of engine.generate(p, opts)) {
          tokens.push(...d.tokens);
          logprobs.push(...d.logprobs!.map((l) => l.logprob));
        }
        out.push({ tokens, logprobs });
      }
      engine.close();
      return out;
    }
    const adapted = await serve(model);
    const adaptedLogits = logitsOf(model);
    mergeLora(model);
    expect(model.namedParameters().map(([n]) => n)).toEqual(baseNames);
    expect(layer0.decodeWeights()).not.toBeNull(); // plain again: the fused path takes it
    expectClose(logitsOf(model), adaptedLogits, 1e-5, 1e-4, 'merged logits vs base + adapter');
    expect(logitsOf(model)).not.toEqual(base);
    const merged = await serve(model);
    for (let i = 0; i < prompts.length; i++) {
      expect(adapted[i]!.tokens).toEqual(merged[i]!.tokens);
      expectClose(adapted[i]!.logprobs, merged[i]!.logprobs, 1e-4, 1e-4, `prompt ${i} log-probs`);
    }
    // The base weights stay frozen after the merge, as they were.
    expect(model.parameters().every((p) => !p.requiresGrad)).toBe(true);
  });
});

describe('LoRA on the sparse MoE decoder (tiny-moe)', () => {
  it('wraps the experts\' and router\'s Linears by Mixtral\'s names; B = 0 is exact, a trained adapter merges to the same logits', () => {
    const moe = validateConfig({ ...preset('tiny-moe').config, vocabSize: 259, maxSeqLen: 128 });
    const model = new LlamaForCausalLM(moe, { seed: 13, initStd: 0.08 });
    const base = logitsOf(model);
    const params = applyLora(model, { r: 2, alpha: 4, targetModules: ['w1', 'w2', 'w3', 'q_proj'], seed: 3 });
    expect(params.map(([n]) => n)).toContain('model.layers.0.block_sparse_moe.experts.1.w2.lora_B.weight');
    expect(params).toHaveLength(2 * moe.nLayers * (3 * moe.numExperts + 1));
    expect(logitsOf(model)).toEqual(base);
    randomizeB(model, 500, 0.1);
    const adapted = logitsOf(model);
    expect(relDiff(adapted, base)).toBeGreaterThan(1e-3);
    mergeLora(model);
    expectClose(logitsOf(model), adapted, 1e-5, 1e-4, 'merged MoE vs adapted');
    model.dispose();
  });
});

describe('LoRA memory', () => {
  it('a training step\'s forward peaks no higher than full fine-tuning\'s (adapters free their intermediates as they go)', () => {
    const big = validateConfig({ ...cfg, maxSeqLen: 512 });
    const N = 2048;
    const step = {
      tokens: Int32Array.from({ length: N }, (_, i) => (i * 37 + 5) % 256), targets: Int32Array.from({ length: N }, (_, i) => (i * 37 + 42) % 256),
      cuSeqlens: [0, 512, 1024, 1536, 2048],
    };
    const forwardPeak = (lora: boolean): number => {
      const model = new LlamaForCausalLM(big, { seed: 3 });
      if (lora) applyLora(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 1 });
      const live = memoryStats().cpu.liveBytes;
      resetPeakMemory();
      const loss = scope(() => model.loss(step));
      const peak = memoryStats().cpu.peakBytes - live;
      loss.dispose();
      clearTape();
      model.dispose();
      return peak;
    };
    const full = forwardPeak(false), lora = forwardPeak(true);
    expect(lora / full).toBeLessThan(1.1); // 2.0 when each adapted layer kept its (N, out) base output and term to the end of the forward
  });
});

describe('withAdaptersDisabled (PEFT\'s disable_adapter)', () => {
  it('runs on the base\'s logits, puts the adapters back even when the call throws, and refuses a merged adapter', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 12, initStd: 0.08 });
    const base = logitsOf(model);
    applyLora(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'down_proj'], seed: 2 });
    randomizeB(model, 40, 0.1);
    const adapted = logitsOf(model);
    expect(relDiff(adapted, base)).toBeGreaterThan(1e-4);
    expect(withAdaptersDisabled(model, () => logitsOf(model))).toEqual(base);
    expect(() => withAdaptersDisabled(model, () => { throw new Error('inside'); })).toThrow('inside');
    expect(logitsOf(model)).toEqual(adapted); // back on after the throw
    mergeLora(model, { unload: false });
    expect(() => withAdaptersDisabled(model, () => 0)).toThrow(/merged into its weight; unmergeLora first/);
  });
});

describe('merge and unmerge (PEFT\'s merge_adapter / unmerge_adapter)', () => {
  it('merging with unload false keeps the adapters, marked merged and fusable; unmerging restores the weights; a later unload does not add twice', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 12, initStd: 0.08 });
    applyLora(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'down_proj'], seed: 2 });
    randomizeB(model, 40, 0.1);
    const names = model.namedParameters().map(([n]) => n);
    const layer0 = model.model.layers.items[0]!;
    const q = layer0.self_attn.q_proj;
    const w0 = q.weight.toArray() as Float32Array;
    const adapted = logitsOf(model);
    expect(layer0.decodeWeights()).toBeNull();

    mergeLora(model, { unload: false });
    expect(model.namedParameters().map(([n]) => n)).toEqual(names); // adapters still there
    expect(q.adapter!.merged).toBe(true);
    expect(layer0.decodeWeights()).not.toBeNull(); // W alone is the layer: the fused path may read it
    expect(q.weight.requiresGrad).toBe(false);
    const merged = logitsOf(model);
    expectClose(merged, adapted, 1e-5, 1e-4, 'merged (adapters kept) vs adapted');
    expect(relDiff(q.weight.toArray() as Float32Array, w0)).toBeGreaterThan(1e-4);

    unmergeLora(model);
    expect(q.adapter!.merged).toBe(false);
    expect(layer0.decodeWeights()).toBeNull();
    expectClose(q.weight.toArray() as Float32Array, w0, 1e-6, 0, 'weight after merge + unmerge');
    expectClose(logitsOf(model), adapted, 1e-5, 1e-4, 'unmerged vs adapted');

    mergeLora(model, { unload: false });
    mergeLora(model); // unload: the term is already in W
    expect(model.namedParameters().map(([n]) => n).some((n) => n.includes('lora_'))).toBe(false);
    expectClose(logitsOf(model), adapted, 1e-5, 1e-4, 'unloaded after a kept merge');
    model.dispose();
  });
});

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

describe('LoRA dropout', () => {
  it('drops the adapter\'s input while gradients are recorded, seeded; never under noGrad', () => {
    const run = (seed: number): number[] => {
      const model = new LlamaForCausalLM(cfg, { seed: 11, initStd: 0.08 });
      applyLora(model, { r: 4, alpha: 8, dropout: 0.3, targetModules: ['q_proj', 'v_proj'], seed });
      randomizeB(model, 7, 0.2);
      const evalA = logitsOf(model);
      const evalB = logitsOf(model);
      expect(evalA).toEqual(evalB); // no dropout when serving or evaluating
      const losses = [0, 1].map(() => {
        const l = model.loss(batch);
        const v = l.item();
        l.backward();
        l.dispose();
        return v;
      });
      model.zeroGrad();
      const noGradLoss = noGrad(() => {
        const l = model.loss(batch);
        const v = l.item();
        l.dispose();
        return v;
      });
      model.dispose();
      return [...losses, noGradLoss];
    };
    const a = run(5), b = run(5), c = run(6);
    expect(a).toEqual(b); // the same seed, the same masks
    expect(a[0]).not.toBe(a[1]); // a fresh mask every forward
    expect(a[0]).not.toBe(a[2]); // training differs from the dropout-free loss
    expect(c[0]).not.toBe(a[0]);
  });
});
