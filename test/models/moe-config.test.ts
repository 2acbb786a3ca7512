// The SMoE config: validation at the edge, Mixtral's config.json in and out, presets, and total
// against active parameter counts.
import { describe, expect, it } from 'vitest';
import { flopsPerToken, fromHFConfig, parameterCount, toHFConfig, validateConfig } from '../../src/models/config.js';
import { LlamaForCausalLM } from '../../src/models/llama.js';
import { preset } from '../../src/models/presets.js';
import { memoryStats } from '../../src/tensor/index.js';

describe('SMoE config', () => {
  const tiny = preset('tiny').config;
  const moe = preset('tiny-moe').config;

  it('Mixtral 8x7B is 46.7B total and 12.9B active; PatentGPT-1.0-MoE adds the 55,296 vocabulary', () => {
    const m = parameterCount(preset('mixtral-8x7b').config);
    expect(m.total).toBe(46_702_792_704); // the published 46.7B (transformers' num_parameters() of Mixtral-8x7B)
    expect(m.active).toBe(12_879_925_248); // 12.9B: two of eight experts per layer
    const p = preset('patentgpt-1.0-moe').config;
    expect(p.vocabSize).toBe(55296);
    expect(parameterCount(p).total - m.total).toBe(2 * (55296 - 32000) * 4096);
    expect(parameterCount(p).active - m.active).toBe(2 * (55296 - 32000) * 4096);
    // dense models: active is total
    expect(parameterCount(preset('llama2-7b').config).active).toBe(parameterCount(preset('llama2-7b').config).total);
    // FLOPs per token count the active experts only
    const f = flopsPerToken(preset('mixtral-8x7b').config, 1);
    expect(f.matmulParams).toBe(m.active - 32000 * 4096 - (2 * 32 + 1) * 4096);
  });

  it('shared experts count in total and active', () => {
    const s = preset('tiny-moe-shared').config;
    const e = 3 * 64 * 128;
    expect(parameterCount(s).total - parameterCount(moe).total).toBe(2 * e);
    expect(parameterCount(s).active - parameterCount(moe).active).toBe(2 * e);
    expect(parameterCount(moe).total - parameterCount(moe).active).toBe(2 * 2 * e);
  });

  it('bad SMoE configs are refused naming the field, before any memory is allocated', () => {
    const before = memoryStats().cpu.liveBytes;
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ numExperts: 4, topK: 5 }, /field "topK" \(5\) cannot exceed "numExperts" \(4\)/],
      [{ numExperts: 0 }, /field "numExperts" must be a positive integer, got 0/],
      [{ topK: 0 }, /field "topK" must be a positive integer, got 0/],
      [{ numSharedExperts: -1 }, /field "numSharedExperts" must be an integer >= 0/],
      [{ routerAuxLossCoef: -0.1 }, /field "routerAuxLossCoef" must be a finite number >= 0/],
      [{ routerZLossCoef: Number.NaN }, /field "routerZLossCoef"/],
      [{ routerJitter: 1 }, /field "routerJitter" must be a finite number >= 0 and < 1/],
      [{ dim: 66 }, /field "dim" \(66\) must be a multiple of "nHeads"/],
    ];
    for (const [patch, re] of bad) {
      expect(() => validateConfig({ ...moe, ...patch }, 'moe.json')).toThrow(re);
      expect(() => new LlamaForCausalLM({ ...moe, ...patch } as never)).toThrow(re);
    }
    // dense configs refuse SMoE fields that would mean something
    expect(() => validateConfig({ ...tiny, numSharedExperts: 1 })).toThrow(/field "numSharedExperts" \(1\) applies to a mixture of experts only/);
    expect(() => validateConfig({ ...tiny, topK: 2 })).toThrow(/topK/);
    expect(memoryStats().cpu.liveBytes).toBe(before);
  });

  it('dense configs keep their shape (no SMoE fields), SMoE configs get the defaults', () => {
    expect(Object.keys(validateConfig(tiny))).not.toContain('routerAuxLossCoef');
    expect(validateConfig({ ...tiny, numExperts: 4, topK: 2 })).toEqual({
      ...tiny, numExperts: 4, topK: 2, numSharedExperts: 0, routerAuxLossCoef: 0.02, routerZLossCoef: 0, routerJitter: 0,
    });
  });

  it("Mixtral's config.json in and out", () => {
    const hf = toHFConfig(moe);
    expect(hf).toMatchObject({
      architectures: ['MixtralForCausalLM'], model_type: 'mixtral', num_local_experts: 4, num_experts_per_tok: 2,
      router_aux_loss_coef: 0.02, sliding_window: null,
    });
    expect(fromHFConfig(JSON.parse(JSON.stringify(hf)))).toEqual(moe);
    for (const name of ['mixtral-8x7b', 'patentgpt-1.0-moe']) {
      const c = preset(name).config;
      expect(fromHFConfig(JSON.parse(JSON.stringify(toHFConfig(c))))).toEqual(c);
    }
    // Mistral AI's Mixtral-8x7B-v0.1 config.json
    const mistral = {
      architectures: ['MixtralForCausalLM'], attention_dropout: 0.0, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
      hidden_size: 4096, initializer_range: 0.02, intermediate_size: 14336, max_position_embeddings: 32768, model_type: 'mixtral',
      num_attention_heads: 32, num_experts_per_tok: 2, num_hidden_layers: 32, num_key_value_heads: 8, num_local_experts: 8,
      output_router_logits: false, rms_norm_eps: 1e-5, rope_theta: 1e6, router_aux_loss_coef: 0.02, sliding_window: null,
      tie_word_embeddings: false, torch_dtype: 'bfloat16', use_cache: true, vocab_size: 32000,
    };
    expect(fromHFConfig(mistral)).toEqual(preset('mixtral-8x7b').config);
    expect(() => fromHFConfig({ ...mistral, sliding_window: 4096 })).toThrow(/field "sliding_window" is 4096/);
    expect(() => fromHFConfig({ ...mistral, model_type: 'llama' })).toThrow(/model_type/);
    expect(() => fromHFConfig({ ...mistral, num_experts_per_tok: 9 })).toThrow(/field "topK" \(9\) cannot exceed "numExperts" \(8\)/);
    expect(() => fromHFConfig({ ...toHFConfig(tiny), num_local_experts: 8 })).toThrow(/num_local_experts.*mixtral/);
    expect(() => toHFConfig(preset('tiny-moe-shared').config)).toThrow(/numSharedExperts/);
  });
});

describe('patentgpt model info (SMoE)', () => {
  it('prints total and active parameters and FLOPs per token of mixtral-8x7b', async () => {
    const { spawnSync } = await import('node:child_process');
    const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
    const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'model', 'info', '--preset', 'mixtral-8x7b'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/mixture of experts: 8 experts, top-2/);
    expect(r.stdout).toMatch(/parameters\s+46,702,792,704\s+\(46\.70 G\)/);
    expect(r.stdout).toMatch(/active\/token\s+12,879,925,248\s+\(12\.88 G\)/);
    expect(r.stdout).toMatch(/FLOPs per token at T = 32768 .*active experts only/);
    const j = spawnSync(process.execPath, ['--import', 'tsx', main, 'model', 'info', '--preset', 'patentgpt-1.0-moe', '--json'], { encoding: 'utf8' });
    const info = JSON.parse(j.stdout) as { parameters: { total: number; active: number } };
    expect(info.parameters.total).toBe(46_702_792_704 + 2 * 23296 * 4096);
    expect(info.parameters.active).toBe(12_879_925_248 + 2 * 23296 * 4096);
  });
});
