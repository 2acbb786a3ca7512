// GGUF export: the file read back by an independent little reader (header, metadata, tensor
// table, alignment, data equal to the weights with q/k permuted), f16 rounding against the
// native cast, and — where node-llama-cpp (prebuilt llama.cpp) can be loaded — its greedy
// continuation equals our engine's token for token for 64 tokens. Non-finite weights and write
// errors are refused by name; the CLI takes the tokenizer the model folder records.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportGguf, permuteForRope, toHalf } from '../../src/export/gguf.js';
import { Engine } from '../../src/infer/index.js';
import { LlamaForCausalLM, savePretrained, validateConfig } from '../../src/models/index.js';
import { PatentGPTError } from '../../src/errors.js';
import { Tensor, noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../../src/tokenizer/index.js';
import { firstDiff, greedyOnExport, readGguf } from './gguf-helpers.js';

const cfg = validateConfig({ vocabSize: 32000, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 96, ropeTheta: 10000, ropeScaling: null,
  maxSeqLen: 256, normEps: 1e-5, tieEmbeddings: false, numExperts: 1, topK: 1 });
const dir = mkdtempSync(join(tmpdir(), 'pg-gguf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('GGUF export', () => {
  const tok = SentencePieceTokenizer.llama2();
  const model = new LlamaForCausalLM(cfg, { seed: 9, initStd: 0.5 });

  it('writes a file an independent reader finds complete and exact (f32)', async () => {
    const path = join(dir, 'm.gguf');
    await exportGguf(model, tok, path);
    const g = readGguf(new Uint8Array(readFileSync(path)));
    expect(g.kv.get('general.architecture')).toBe('llama');
    expect(g.kv.get('llama.block_count')).toBe(2);
    expect(g.kv.get('llama.attention.head_count_kv')).toBe(2);
    expect(g.kv.get('llama.rope.dimension_count')).toBe(16);
    expect((g.kv.get('tokenizer.ggml.tokens') as string[]).length).toBe(32000);
    expect((g.kv.get('tokenizer.ggml.tokens') as string[])[29871]).toBe(tok.idToPiece(29871));
    expect(g.kv.get('tokenizer.ggml.bos_token_id')).toBe(1);
    expect(g.tensors.size).toBe(1 + 2 * 9 + 2);
    const q = g.tensors.get('blk.1.attn_q.weight')!;
    expect(q.dims).toEqual([64, 64]);
    expect(q.offset % 32).toBe(0);
    const read = (name: string): Float32Array => {
      const t = g.tensors.get(name)!;
      const n = t.dims.reduce((a, d) => a * d, 1);
      return new Float32Array(g.bytes.slice(g.dataStart + t.offset, g.dataStart + t.offset + 4 * n).buffer);
    };
    const params = new Map(model.namedParameters());
    const w = (n: string): Float32Array => params.get(n)!.toArray() as Float32Array;
    expect(firstDiff(read('blk.1.attn_v.weight'), w('model.layers.1.self_attn.v_proj.weight'))).toBe(-1);
    expect(firstDiff(read('output.weight'), w('lm_head.weight'))).toBe(-1);
    expect(firstDiff(read('token_embd.weight'), w('model.embed_tokens.weight'))).toBe(-1);
    expect(firstDiff(read('blk.0.ffn_down.weight'), w('model.layers.0.mlp.down_proj.weight'))).toBe(-1);
    // k rows: head h, pair i -> rows 2i, 2i + 1 come from rows i and i + D/2.
    const k = w('model.layers.0.self_attn.k_proj.weight');
    const kp = read('blk.0.attn_k.weight');
    expect(firstDiff(kp.subarray(1 * 64, 2 * 64), k.subarray(8 * 64, 9 * 64))).toBe(-1);
    expect(firstDiff(kp.subarray(16 * 64 + 2 * 64, 16 * 64 + 3 * 64), k.subarray(17 * 64, 18 * 64))).toBe(-1);
    expect(firstDiff(kp, k)).not.toBe(-1); // permuted, not copied
    expect(permuteForRope(Float32Array.of(0, 1, 2, 3), 1, 4, 1)).toEqual(Float32Array.of(0, 2, 1, 3));
  });

  it('writes f16 matrices and f32 norms with --dtype f16', async () => {
    const path = join(dir, 'm16.gguf');
    await exportGguf(model, tok, path, { dtype: 'f16' });
    const g = readGguf(new Uint8Array(readFileSync(path)));
    expect(g.kv.get('general.file_type')).toBe(1);
    expect(g.tensors.get('blk.0.attn_norm.weight')!.type).toBe(0);
    const t = g.tensors.get('blk.0.ffn_up.weight')!;
    expect(t.type).toBe(1);
    const n = t.dims[0]! * t.dims[1]!;
    const half = new Uint16Array(g.bytes.slice(g.dataStart + t.offset, g.dataStart + t.offset + 2 * n).buffer);
    const w = new Map(model.namedParameters()).get('model.layers.0.mlp.up_proj.weight')!.toArray() as Float32Array;
    expect(Array.from(half)).toEqual(Array.from(w, (x) => toHalf(x)));
  });

  it("'patentgpt export gguf' writes the same file as exportGguf", async () => {
    const folder = join(dir, 'folder');
    await savePretrained(model, folder, { dtype: 'f32' });
    const out = join(dir, 'cli.gguf');
    const log = execFileSync(process.execPath, ['--import', 'tsx', new URL('../../src/cli/main.ts', import.meta.url).pathname,
      'export', 'gguf', folder, out, '--tokenizer', 'llama2', '--dtype', 'f16'], { encoding: 'utf8' });
    expect(log).toMatch(/wrote .*cli\.gguf \(f16/);
    const direct = join(dir, 'direct.gguf');
    await exportGguf(model, tok, direct, { dtype: 'f16' });
    expect(Buffer.compare(readFileSync(out), readFileSync(direct))).toBe(0);
    expect(() => execFileSync(process.execPath, ['--import', 'tsx', new URL('../../src/cli/main.ts', import.meta.url).pathname,
      'export', 'gguf', folder, out], { encoding: 'utf8', stdio: 'pipe' })).toThrow(/no tokenizer at/);
  }, 60_000);

  it('rounds to f16 exactly as the native cast does', () => {
    const xs = Float32Array.from([0, -0, 1, -1, 65504, 65520, 1e6, -1e6, 6e-8, 3e-8, 2.9e-8, 1e-10, 0.1, 1 / 3, 6.1e-5, 6.0e-5,
      1.00048828125, 1.000732421875, 2049, 2051, ...Array.from({ length: 2000 }, (_, i) => Math.sin(i * 1.37) * 10 ** ((i % 13) - 6))]);
    const t = Tensor.from(xs);
    const h = t.to('f16');
    const native = new Uint16Array((h.toRaw() as Uint16Array).buffer.slice(0));
    expect(Array.from(xs, (x) => toHalf(x))).toEqual(Array.from(native));
    t.dispose();
    h.dispose();
  });

  it('greedy continuation equals node-llama-cpp (llama.cpp) for 64 tokens', async (ctx) => {
    const path = join(dir, 'parity.gguf');
    const greedy = await greedyOnExport(ctx, model, tok, path);
    if (!greedy) return;
    const prompt = [1, 450, 4660, 310, 263, 11647, 338];
    const [theirs] = await greedy(path, [prompt], 64);
    const engine = new Engine(model, { kvCacheBytes: 2 ** 24 });
    const ours = (await engine.complete(prompt, { maxTokens: 64, ignoreEos: true })).tokens;
    engine.close();
    expect(new Set(ours).size).toBeGreaterThan(16); // a varied continuation, not one token repeated
    expect(ours).toEqual(theirs);
  }, 120_000);
});

describe('GGUF export refusals and the folder tokenizer', () => {
  const tok = SentencePieceTokenizer.llama2();
  const small = validateConfig({ vocabSize: 32000, dim: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, ffnDim: 32, ropeTheta: 10000, ropeScaling: null,
    maxSeqLen: 64, normEps: 1e-5, tieEmbeddings: false, numExperts: 1, topK: 1 });

  it('refuses NaN/Inf weights (and f16 overflow) naming the tensor, leaving no file', async () => {
    const m = new LlamaForCausalLM(small, { seed: 1 });
    const q = new Map(m.namedParameters()).get('model.layers.0.self_attn.v_proj.weight')!;
    const w = q.toArray() as Float32Array;
    const path = join(dir, 'bad.gguf');
    w[5] = 1e6; // finite, but past f16's range
    noGrad(() => q.write(w));
    await expect(exportGguf(m, tok, path, { dtype: 'f16' }))
      .rejects.toThrow(/tensor "model\.layers\.0\.self_attn\.v_proj\.weight" \(GGUF blk\.0\.attn_v\.weight\) holds 1000000 at index 5, beyond f16's range/);
    await exportGguf(m, tok, path, { dtype: 'f32' }); // f32 holds it
    rmSync(path);
    w[7] = NaN;
    w[9] = -Infinity;
    noGrad(() => q.write(w));
    for (const dtype of ['f32', 'f16'] as const) {
      const err = await exportGguf(m, tok, path, { dtype }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PatentGPTError);
      expect((err as PatentGPTError).code).toBe('E_NONFINITE');
      expect((err as Error).message).toMatch(/tensor "model\.layers\.0\.self_attn\.v_proj\.weight" \(GGUF blk\.0\.attn_v\.weight\) holds 2 non-finite values \(first NaN at index 7\)/);
      expect(existsSync(path)).toBe(false);
      expect(readdirSync(dir).filter((f) => f.startsWith('.bad.gguf'))).toEqual([]); // temp file removed
    }
    m.dispose();
  });

  it('a write error names the .gguf file and keeps the errno code', async () => {
    const m = new LlamaForCausalLM(small, { seed: 1 });
    const path = join(dir, 'dir.gguf');
    mkdirSync(join(path, 'child'), { recursive: true }); // a non-empty folder where the file goes
    const err = await exportGguf(m, tok, path).catch((e: unknown) => e);
    m.dispose();
    expect((err as PatentGPTError).code).toBe('E_IO');
    expect((err as Error).message).toContain(`${path}: cannot write (`);
    expect(['EISDIR', 'ENOTEMPTY', 'EEXIST']).toContain((err as { errnoCode?: string }).errnoCode);
  });

  it("'export gguf' takes the tokenizer the folder records (no --tokenizer), and refuses a byte-tokenizer folder clearly", async () => {
    const m = new LlamaForCausalLM(small, { seed: 2 });
    const folder = join(dir, 'with-tok');
    await savePretrained(m, folder, { tokenizer: tok });
    const out = join(dir, 'with-tok.gguf');
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', new URL('../../src/cli/main.ts', import.meta.url).pathname,
      'export', 'gguf', ...args], { encoding: 'utf8' });
    const r = run(folder, out);
    expect(r.status, r.stderr).toBe(0);
    const direct = join(dir, 'with-tok-direct.gguf');
    await exportGguf(m, tok, direct);
    expect(Buffer.compare(readFileSync(out), readFileSync(direct))).toBe(0);
    const byteFolder = join(dir, 'byte-tok');
    await savePretrained(m, byteFolder, { tokenizer: new ByteTokenizer() });
    m.dispose();
    const b = run(byteFolder, join(dir, 'byte.gguf'));
    expect(b.status).toBe(1);
    expect(b.stderr).toMatch(/records the byte tokenizer, which GGUF's llama vocabulary cannot carry; pass --tokenizer/);
  }, 60_000);
});
