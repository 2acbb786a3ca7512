import { describe, expect, it } from 'vitest';
import {
  extendContext, flopsPerToken, fromHFConfig, parameterCount, ropeParams, toHFConfig, validateConfig,
} from '../../src/models/config.js';
import { preset, presetNames } from '../../src/models/presets.js';

describe('model config', () => {
  it('parameter counts equal the published LLaMA-2 7B / 13B / 70B', () => {
    expect(parameterCount(preset('llama2-7b').config).total).toBe(6_738_415_616);
    expect(parameterCount(preset('llama2-13b').config).total).toBe(13_015_864_320);
    expect(parameterCount(preset('llama2-70b').config).total).toBe(68_976_648_192);
  });

  it('the 55,296-token presets add exactly the new rows to the embedding and the output layer', () => {
    for (const size of ['7b', '13b', '70b']) {
      const base = preset(`llama2-${size}`).config;
      const big = preset(`llama2-${size}-55k`).config;
      expect(big.vocabSize).toBe(55296);
      expect(parameterCount(big).total - parameterCount(base).total).toBe(2 * (55296 - 32000) * base.dim);
      expect({ ...big, vocabSize: 32000 }).toEqual(base);
    }
  });

  it('every preset validates, and the 70B uses 8 kv heads', () => {
    for (const name of presetNames()) expect(() => preset(name)).not.toThrow();
    expect(preset('llama2-70b').config.nKvHeads).toBe(8);
    expect(() => preset('llama2-8b')).toThrow(/unknown model preset "llama2-8b".*llama2-7b/);
  });

  it('FLOPs per token follow 6N + 12 L T d', () => {
    const c = preset('llama2-7b').config;
    const f = flopsPerToken(c, 4096);
    // N that multiplies activations: everything but the input table and the norms.
    expect(f.matmulParams).toBe(6_738_415_616 - 32000 * 4096 - (2 * 32 + 1) * 4096);
    expect(f.training).toBe(6 * f.matmulParams + 12 * 32 * 4096 * 4096);
    expect(f.forward * 3).toBe(f.training);
    // tied: the table is the output layer too, so it multiplies activations once
    const t = preset('tiny-tied').config;
    expect(flopsPerToken(t, 1).matmulParams).toBe(parameterCount(t).total - parameterCount(t).norms);
  });

  it('validation names the field', () => {
    const good = preset('tiny').config;
    expect(() => validateConfig({ ...good, dim: 0 }, 'x.json')).toThrow(/x\.json: field "dim" must be a positive integer, got 0/);
    expect(() => validateConfig({ ...good, nKvHeads: 3 })).toThrow(/field "nKvHeads" \(3\) must divide "nHeads" \(4\)/);
    expect(() => validateConfig({ ...good, nLayer: 2 })).toThrow(/field "nLayer" is not a model config field/);
    const { ffnDim: _, ...noFfn } = good;
    expect(() => validateConfig(noFfn)).toThrow(/field "ffnDim" is missing/);
    expect(() => validateConfig({ ...good, ropeScaling: { type: 'yarn', factor: 2 } })).toThrow(/ropeScaling\.type/);
    expect(() => validateConfig({ ...good, tieEmbeddings: 'yes' })).toThrow(/tieEmbeddings/);
    // a mixture of experts is accepted now (test/models/moe-config.test.ts covers its checks)
    expect(validateConfig({ ...good, numExperts: 8, topK: 2 })).toMatchObject({ numExperts: 8, topK: 2, numSharedExperts: 0 });
    expect(() => validateConfig({ ...good, topK: 2 })).toThrow(/topK/);
    // defaults fill the optional fields
    expect(validateConfig({ vocabSize: 10, dim: 8, nLayers: 1, nHeads: 2, ffnDim: 16 })).toEqual({
      vocabSize: 10, dim: 8, nLayers: 1, nHeads: 2, nKvHeads: 2, ffnDim: 16, ropeTheta: 10000, ropeScaling: null,
      maxSeqLen: 4096, normEps: 1e-5, tieEmbeddings: false, numExperts: 1, topK: 1,
    });
  });

  it('round-trips through a Hugging Face config.json, v4 and v5 rope fields', () => {
    for (const name of ['tiny', 'tiny-tied', 'llama2-70b-55k']) {
      const c = preset(name).config;
      expect(fromHFConfig(JSON.parse(JSON.stringify(toHFConfig(c))))).toEqual(c);
    }
    const lin = validateConfig({ ...preset('tiny').config, ropeScaling: { type: 'linear', factor: 4 } });
    const hf = toHFConfig(lin, 'bf16');
    expect(hf).toMatchObject({ architectures: ['LlamaForCausalLM'], torch_dtype: 'bfloat16', rope_scaling: { rope_type: 'linear', factor: 4 } });
    expect(fromHFConfig(hf)).toEqual(lin);
    const v5 = { ...hf, rope_theta: undefined, rope_scaling: undefined, rope_parameters: { rope_type: 'dynamic', rope_theta: 5e5, factor: 2 } };
    expect(fromHFConfig(v5)).toMatchObject({ ropeTheta: 5e5, ropeScaling: { type: 'dynamic-base', factor: 2 } });
    expect(() => fromHFConfig({ ...hf, hidden_act: 'gelu' }, 'm/config.json')).toThrow(/m\/config\.json: field "hidden_act"/);
    expect(() => fromHFConfig({ ...hf, architectures: ['MistralForCausalLM'] })).toThrow(/architectures/);
    expect(() => fromHFConfig({ ...hf, rope_scaling: { rope_type: 'yarn', factor: 2 } })).toThrow(/"yarn" is not supported/);
    expect(() => fromHFConfig({ ...hf, num_hidden_layers: undefined })).toThrow(/field "nLayers" is missing/);
  });

  it('context extension is a config change: base raise, linear interpolation, NTK', () => {
    const c = validateConfig({ ...preset('tiny').config, maxSeqLen: 64 });
    const base = extendContext(c, { method: 'base', maxSeqLen: 256, ropeTheta: 500000 });
    expect(ropeParams(base, 200)).toEqual({ theta: 500000, posScale: 1 });
    const lin = extendContext(c, { method: 'linear', maxSeqLen: 256 });
    expect(lin.ropeScaling).toEqual({ type: 'linear', factor: 4 });
    expect(ropeParams(lin, 200)).toEqual({ theta: 10000, posScale: 4 });
    const ntk = extendContext(c, { method: 'ntk', maxSeqLen: 256 });
    expect(ropeParams(ntk).theta).toBeCloseTo(10000 * 4 ** (16 / 14), 6);
    // toHF folds the static NTK base into rope_theta
    expect(toHFConfig(ntk).rope_theta).toBeCloseTo(10000 * 4 ** (16 / 14), 6);
    const dyn = extendContext(c, { method: 'dynamic-base', maxSeqLen: 256 });
    expect(ropeParams(dyn, 63).theta).toBe(10000);
    expect(ropeParams(dyn, 127).theta).toBeCloseTo(10000 * (4 * 128 / 64 - 3) ** (16 / 14), 6);
    expect(() => extendContext(c, { method: 'base', maxSeqLen: 32, ropeTheta: 1e6 })).toThrow(/maxSeqLen/);
  });
});
