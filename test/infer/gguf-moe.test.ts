// GGUF export of a Mixtral-style SMoE model in llama.cpp's layout (architecture llama with
// llama.expert_count / expert_used_count, the router blk.N.ffn_gate_inp in f32, each layer's
// experts stacked into ffn_gate_exps / ffn_up_exps / ffn_down_exps): the file read back by an
// independent reader equals the weights (f32 and f16); where node-llama-cpp (prebuilt
// llama.cpp) loads, its greedy continuations of a few prompts equal our engine's token for
// token, and so do transformers' MixtralForCausalLM generate() on the same model saved as a
// Hugging Face folder. Shared experts, which llama.cpp's llama architecture lacks, are refused;
// the CLI exports a Mixtral folder as the function does.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { PatentGPTError } from '../../src/errors.js';
import { exportGguf, toHalf } from '../../src/export/gguf.js';
import { Engine } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, savePretrained, validateConfig } from '../../src/models/index.js';
import { packageRoot } from '../../src/package.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/index.js';
import { firstDiff, greedyOnExport, readGguf, tensorBytes } from './gguf-helpers.js';

// tiny-moe (4 experts, top-2) with LLaMA-2's vocabulary, so that the file carries its tokenizer.
const cfg = validateConfig({ ...preset('tiny-moe').config, vocabSize: 32000 });
const E = cfg.numExperts;
const C = cfg.dim;
const F = cfg.ffnDim;
const dir = mkdtempSync(join(tmpdir(), 'pg-gguf-moe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tok = SentencePieceTokenizer.llama2();
// A large init std makes greedy choices and routing clear-cut (the transformers run below checks
// both margins), so float rounding cannot tip a token or an expert choice one way or the other.
const model = new LlamaForCausalLM(cfg, { seed: 21, initStd: 0.5 });
const params = new Map(model.namedParameters());
const w = (n: string): Float32Array => params.get(n)!.toArray() as Float32Array;
/** Expert `e`'s matrices of one projection, concatenated expert by expert. */
const stack = (l: number, proj: 'w1' | 'w2' | 'w3'): Float32Array => {
  const parts = Array.from({ length: E }, (_, e) => w(`model.layers.${l}.block_sparse_moe.experts.${e}.${proj}.weight`));
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return out;
};
const f32 = (b: Uint8Array): Float32Array => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);

const prompts = [
  [1, 450, 4660, 310, 263, 11647, 338],
  [1, 319, 1788, 363, 23011, 263, 4802, 29892, 18632, 297, 393],
  [1, 29871, 13, 1576, 2286],
];
const NEW = 24;

describe('GGUF export of an SMoE model (llama.cpp MoE layout)', () => {
  it('writes expert_count/expert_used_count, the f32 router and the stacked experts, exactly (f32)', async () => {
    const path = join(dir, 'moe.gguf');
    await exportGguf(model, tok, path);
    const g = readGguf(new Uint8Array(readFileSync(path)));
    expect(g.kv.get('general.architecture')).toBe('llama');
    expect(g.kv.get('llama.expert_count')).toBe(4);
    expect(g.kv.get('llama.expert_used_count')).toBe(2);
    expect(g.kv.get('llama.feed_forward_length')).toBe(F);
    // Per layer: 2 norms, 4 attention, router and 3 stacked experts; no dense ffn_gate/up/down.
    expect(g.tensors.size).toBe(1 + 2 * 10 + 2);
    expect([...g.tensors.keys()].filter((n) => /ffn_(gate|up|down)\.weight$/.test(n))).toEqual([]);
    for (let l = 0; l < cfg.nLayers; l++) {
      expect(g.tensors.get(`blk.${l}.ffn_gate_inp.weight`)).toMatchObject({ dims: [C, E], type: 0 });
      expect(g.tensors.get(`blk.${l}.ffn_gate_exps.weight`)).toMatchObject({ dims: [C, F, E], type: 0 });
      expect(g.tensors.get(`blk.${l}.ffn_up_exps.weight`)).toMatchObject({ dims: [C, F, E], type: 0 });
      expect(g.tensors.get(`blk.${l}.ffn_down_exps.weight`)).toMatchObject({ dims: [F, C, E], type: 0 });
      for (const n of ['ffn_gate_inp', 'ffn_gate_exps', 'ffn_up_exps', 'ffn_down_exps']) expect(g.tensors.get(`blk.${l}.${n}.weight`)!.offset % 32).toBe(0);
      expect(firstDiff(f32(tensorBytes(g, `blk.${l}.ffn_gate_inp.weight`)), w(`model.layers.${l}.block_sparse_moe.gate.weight`))).toBe(-1);
      expect(firstDiff(f32(tensorBytes(g, `blk.${l}.ffn_gate_exps.weight`)), stack(l, 'w1'))).toBe(-1);
      expect(firstDiff(f32(tensorBytes(g, `blk.${l}.ffn_up_exps.weight`)), stack(l, 'w3'))).toBe(-1);
      expect(firstDiff(f32(tensorBytes(g, `blk.${l}.ffn_down_exps.weight`)), stack(l, 'w2'))).toBe(-1);
    }
  });

  it('writes f16 stacked experts with dtype f16, the router staying f32', async () => {
    const path = join(dir, 'moe16.gguf');
    await exportGguf(model, tok, path, { dtype: 'f16' });
    const g = readGguf(new Uint8Array(readFileSync(path)));
    expect(g.kv.get('general.file_type')).toBe(1);
    expect(g.tensors.get('blk.1.ffn_gate_inp.weight')!.type).toBe(0);
    expect(firstDiff(f32(tensorBytes(g, 'blk.1.ffn_gate_inp.weight')), w('model.layers.1.block_sparse_moe.gate.weight'))).toBe(-1);
    for (const [name, proj] of [['ffn_gate_exps', 'w1'], ['ffn_up_exps', 'w3'], ['ffn_down_exps', 'w2']] as const) {
      expect(g.tensors.get(`blk.1.${name}.weight`)!.type).toBe(1);
      const b = tensorBytes(g, `blk.1.${name}.weight`);
      expect(firstDiff(new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2), Uint16Array.from(stack(1, proj), (x) => toHalf(x)))).toBe(-1);
    }
  });

  it('refuses shared experts (numSharedExperts > 0) naming the field, leaving no file', async () => {
    const shared = new LlamaForCausalLM(validateConfig({ ...preset('tiny-moe-shared').config, vocabSize: 32000 }), { seed: 1 });
    const path = join(dir, 'shared.gguf');
    const err = await exportGguf(shared, tok, path).catch((e: unknown) => e);
    shared.dispose();
    expect(err).toBeInstanceOf(PatentGPTError);
    expect((err as PatentGPTError).code).toBe('E_UNSUPPORTED');
    expect((err as Error).message).toMatch(/numSharedExperts 1: llama\.cpp's llama architecture has no shared experts; export a model with numSharedExperts 0/);
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('shared'))).toEqual([]);
  });

  it("'patentgpt export gguf' on a Mixtral folder writes the same file as exportGguf", async () => {
    const folder = join(dir, 'cli-folder');
    await savePretrained(model, folder, { dtype: 'f32' });
    const out = join(dir, 'cli.gguf');
    execFileSync(process.execPath, ['--import', 'tsx', join(packageRoot(), 'src', 'cli', 'main.ts'), 'export', 'gguf', folder, out, '--tokenizer', 'llama2', '--dtype', 'f16'],
      { encoding: 'utf8', stdio: 'pipe' });
    const direct = join(dir, 'cli-direct.gguf');
    await exportGguf(model, tok, direct, { dtype: 'f16' });
    expect(Buffer.compare(readFileSync(out), readFileSync(direct))).toBe(0);
  }, 60_000);

  let ours: number[][] | null = null;
  const engineGreedy = async (): Promise<number[][]> => {
    if (ours) return ours;
    const engine = new Engine(model, { kvCacheBytes: 2 ** 24 });
    try {
      ours = [];
      for (const p of prompts) ours.push((await engine.complete(p, { maxTokens: NEW, ignoreEos: true })).tokens);
      return ours;
    } finally {
      engine.close();
    }
  };

  it(`greedy continuations (${NEW} tokens, ${prompts.length} prompts) equal node-llama-cpp (llama.cpp) on the f32 file, and its first 8 on the f16 file`, async (ctx) => {
    const path = join(dir, 'parity.gguf');
    const greedy = await greedyOnExport(ctx, model, tok, path);
    if (!greedy) return;
    const theirs = await greedy(path, prompts, NEW);
    const mine = await engineGreedy();
    for (const o of mine) expect(new Set(o).size).toBeGreaterThan(6); // varied continuations, not one token repeated
    expect(mine).toEqual(theirs);
    // The f16 file loads and routes alike: its first 8 tokens agree (rounding may tip a later choice).
    const half = join(dir, 'parity16.gguf');
    await exportGguf(model, tok, half, { dtype: 'f16' });
    expect(await greedy(half, prompts, 8)).toEqual(mine.map((o) => o.slice(0, 8)));
  }, 120_000);

  const py = findPython(['torch', 'transformers']); // throws where peers are required (CI)
  it.skipIf(!py.python)(`greedy continuations equal transformers' MixtralForCausalLM generate() on the model saved by us${py.python ? '' : ` (skipped: ${py.why})`}`, async () => {
    const folder = join(dir, 'hf');
    await savePretrained(model, folder, { dtype: 'f32' });
    expect(JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')).architectures).toEqual(['MixtralForCausalLM']);
    writeFileSync(join(dir, 'prompts.json'), JSON.stringify(prompts));
    const out = execFileSync(py.python!, [join(packageRoot(), 'scripts', 'mixtral-generate.py'), folder, join(dir, 'prompts.json'), '--new', String(NEW)],
      { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const ref = JSON.parse(out.trim().split('\n').pop()!) as { outputs: number[][]; minGap: number; routerGap: number };
    expect(ref.minGap).toBeGreaterThan(1e-3); // no near tie between the top two tokens
    expect(ref.routerGap).toBeGreaterThan(1e-3); // nor between the k-th and (k+1)-th expert
    expect(await engineGreedy()).toEqual(ref.outputs);
  }, 120_000);
});
