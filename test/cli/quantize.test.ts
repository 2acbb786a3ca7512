// patentgpt quantize: a saved model folder to a quantized one (config.json, tokenizer, model.gguf)
// whose GGUF holds llama.cpp's type ids per tensor as llama-quantize picks them (projections and
// token embedding in the model's type, output Q8_0, norms f32), that Engine.fromPretrained and
// `patentgpt generate` serve, with the same blocks (and greedy tokens) as quantizeModel in memory.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readGgufFile } from '../../src/models/gguf-read.js';
import { Engine, ThreadedEngine, loadQuantized, quantizeModel } from '../../src/infer/index.js';
import { LlamaForCausalLM, savePretrained, validateConfig } from '../../src/models/index.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/index.js';

const mainTs = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', mainTs, ...args], { encoding: 'utf8' });
const cfg = validateConfig({ vocabSize: 32000, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, ropeTheta: 10000, ropeScaling: null,
  maxSeqLen: 256, normEps: 1e-5, tieEmbeddings: false, numExperts: 1, topK: 1 });
const dir = mkdtempSync(join(tmpdir(), 'pg-quantize-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const prompt = [1, 450, 4660, 310, 263, 11647, 338];

async function greedy(model: LlamaForCausalLM): Promise<number[]> {
  const engine = new Engine(model, { kvCacheBytes: 2 ** 24 });
  try {
    return (await engine.complete(prompt, { maxTokens: 24, ignoreEos: true })).tokens;
  } finally {
    engine.close();
  }
}

describe('patentgpt quantize', () => {
  const tok = SentencePieceTokenizer.llama2();
  const src = join(dir, 'f32');

  it('writes a folder with llama.cpp type ids that the engine loads with the same blocks as quantizeModel', async () => {
    const model = new LlamaForCausalLM(cfg, { seed: 4, initStd: 0.5 });
    await savePretrained(model, src, { tokenizer: tok });
    for (const [type, id, fileType] of [['q8_0', 8, 7], ['q4_0', 2, 2], ['bf16', 30, 32], ['f16', 1, 1]] as const) {
      const out = join(dir, type);
      const r = cli('quantize', src, '--type', type, '--out', out);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`wrote ${out} (${type}`);
      for (const f of ['config.json', 'tokenizer.model', 'model.gguf']) expect(existsSync(join(out, f))).toBe(true);
      expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
      const g = await readGgufFile(join(out, 'model.gguf'));
      expect(g.kv.get('general.file_type')).toBe(fileType);
      expect(g.tensors.get('blk.1.attn_q.weight')!.type).toBe(id);
      expect(g.tensors.get('blk.0.ffn_down.weight')!.type).toBe(id);
      expect(g.tensors.get('token_embd.weight')!.type).toBe(id);
      // llama.cpp keeps the output at >= 6 bits (Q8_0 here); 16-bit models keep their type throughout
      expect(g.tensors.get('output.weight')!.type).toBe(type === 'bf16' || type === 'f16' ? id : 8);
      expect(g.tensors.get('blk.0.attn_norm.weight')!.type).toBe(0);
      expect(g.tensors.get('output_norm.weight')!.type).toBe(0);

      const loaded = await loadQuantized(out);
      const mem = new LlamaForCausalLM(cfg, { seed: 4, initStd: 0.5 });
      quantizeModel(mem, type);
      // q and k rows come back from llama.cpp's RoPE order: the same bytes as quantizing our rows
      for (const p of ['q_proj', 'k_proj', 'v_proj'] as const) {
        const a = loaded.model.layers.items[1]!.self_attn[p].quantized!.bytes(), b = mem.model.layers.items[1]!.self_attn[p].quantized!.bytes();
        expect(Buffer.from(a).equals(Buffer.from(b)), p).toBe(true);
      }
      expect(await greedy(loaded)).toEqual(await greedy(mem));
      loaded.dispose();
      mem.dispose();

      const engine = await Engine.fromPretrained(out, { kvCacheBytes: 2 ** 24 }); // what generate calls
      const four = (await engine.complete(prompt, { maxTokens: 4, ignoreEos: true })).tokens;
      engine.close();
      const threaded = await ThreadedEngine.fromPretrained(out, { kvCacheBytes: 2 ** 24 }); // serve's: loads in its worker
      expect((await threaded.complete(prompt, { maxTokens: 4, ignoreEos: true })).tokens).toEqual(four);
      await threaded.close();
    }
    model.dispose();
  }, 240_000);

  it('a tied model: token_embd in Q8_0 is also the head, read as blocks by the engine as by llama.cpp', async () => {
    const tied = validateConfig({ ...cfg, tieEmbeddings: true });
    const model = new LlamaForCausalLM(tied, { seed: 6, initStd: 0.5 });
    const folder = join(dir, 'tied'), out = join(dir, 'tied-q4_0');
    await savePretrained(model, folder, { tokenizer: tok });
    const r = cli('quantize', folder, '--type', 'q4_0', '--out', out);
    expect(r.status, r.stderr).toBe(0);
    const g = await readGgufFile(join(out, 'model.gguf'));
    expect(g.tensors.has('output.weight')).toBe(false);
    expect(g.tensors.get('token_embd.weight')!.type).toBe(8); // the output's type, as llama-quantize treats a tied table
    expect(g.tensors.get('blk.0.attn_v.weight')!.type).toBe(2);
    const loaded = await loadQuantized(out);
    quantizeModel(model, 'q4_0');
    expect(await greedy(loaded)).toEqual(await greedy(model));
    loaded.dispose();
    model.dispose();
  }, 120_000);

  it('`patentgpt generate` serves the quantized folder; bad types are refused', () => {
    const out = join(dir, 'q8_0');
    const g = cli('generate', '--model', out, '--prompt', 'A baseball bat', '--max-tokens', '8', '--ignore-eos');
    expect(g.status, g.stderr).toBe(0);
    expect(g.stdout.length).toBeGreaterThan(0);
    const bad = cli('quantize', src, '--type', 'q5_1', '--out', join(dir, 'bad'));
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--type must be one of q8_0, q4_0, q4_k, f16, bf16/);
  }, 120_000);
});
