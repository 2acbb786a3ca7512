// Model folders the package writes are complete on their own: config.json and
// generation_config.json carry the tokenizer's bos/eos/pad ids (transformers' generate() stops
// at that EOS, checked live), the tokenizer is recorded so no --tokenizer is needed, `model init`
// will not overwrite a model without --force, write errors name the file, and a tensor too large
// for a typed array is refused by name before anything is allocated.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, ftruncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { tokenizerFromSpec } from '../../src/cli/tokenizer-spec.js';
import { PatentGPTError } from '../../src/errors.js';
import {
  LlamaForCausalLM, MAX_TENSOR_ELEMENTS, SafetensorsFile, loadPretrained, preset, readFolderTokenizer, resizeVocabulary, savePretrained, validateConfig,
  writeSafetensors,
} from '../../src/models/index.js';
import { Tensor, noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../../src/tokenizer/index.js';

const work = mkdtempSync(join(tmpdir(), 'pg-folder-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8' });
const json = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;

const small = (vocabSize: number, tie = true) => validateConfig({ vocabSize, dim: 48, nLayers: 2, nHeads: 6, nKvHeads: 2, ffnDim: 96,
  ropeTheta: 10000, ropeScaling: null, maxSeqLen: 256, normEps: 1e-5, tieEmbeddings: tie, numExperts: 1, topK: 1 });

describe('a saved folder carries its special ids and its tokenizer', () => {
  it('byte tokenizer: ids 256/257/258 in both configs, tokenizer_spec.json, found without --tokenizer', async () => {
    const dir = join(work, 'byte');
    const m = new LlamaForCausalLM(small(300), { seed: 1 });
    await savePretrained(m, dir, { tokenizer: new ByteTokenizer() });
    m.dispose();
    const cfg = json(join(dir, 'config.json'));
    expect([cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id]).toEqual([256, 257, 258]);
    expect(json(join(dir, 'generation_config.json'))).toMatchObject({ bos_token_id: 256, eos_token_id: 257, pad_token_id: 258 });
    expect(json(join(dir, 'tokenizer_spec.json'))).toEqual({ type: 'byte' });
    expect(readFolderTokenizer(dir)).toEqual({ type: 'byte' });
    expect(tokenizerFromSpec(undefined, dir)).toBeInstanceOf(ByteTokenizer);
    expect(tokenizerFromSpec('llama2', dir)).toBeInstanceOf(SentencePieceTokenizer); // an explicit spec still wins
  });

  it('SentencePiece: tokenizer.model copied, LLaMA-2 ids (generation pads with <unk>); re-saving switches or keeps the record', async () => {
    const dir = join(work, 'sp');
    const tok = SentencePieceTokenizer.llama2();
    const m = new LlamaForCausalLM(small(32000), { seed: 2 });
    await savePretrained(m, dir, { tokenizer: tok });
    const cfg = json(join(dir, 'config.json'));
    // LLaMA-2 has no pad token: config.json says so (transformers would freeze a pad row's
    // training), generate() pads finished sequences with <unk> as Meta's folders do
    expect([cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id]).toEqual([1, 2, null]);
    expect(json(join(dir, 'generation_config.json'))).toMatchObject({ bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });
    const back = tokenizerFromSpec(undefined, dir) as SentencePieceTokenizer;
    expect(back).toBeInstanceOf(SentencePieceTokenizer);
    expect(Buffer.compare(readFileSync(join(dir, 'tokenizer.model')), Buffer.from(tok.serialize()))).toBe(0);
    expect(Array.from(back.encode('Claim 1. A rotary valve', { bos: true }))).toEqual(Array.from(tok.encode('Claim 1. A rotary valve', { bos: true })));
    // saved again without a tokenizer: the record and the ids stay (not reset to defaults)
    const gen = json(join(dir, 'generation_config.json'));
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ ...gen, temperature: 0.6 }));
    await savePretrained(m, dir);
    expect(existsSync(join(dir, 'tokenizer.model'))).toBe(true);
    expect(json(join(dir, 'generation_config.json'))).toMatchObject({ eos_token_id: 2, pad_token_id: 0, temperature: 0.6 });
    // saved with the byte tokenizer: the stale tokenizer.model goes, so readers cannot pick the wrong one
    await savePretrained(m, dir, { tokenizer: new ByteTokenizer() });
    expect(existsSync(join(dir, 'tokenizer.model'))).toBe(false);
    expect(readFolderTokenizer(dir)).toEqual({ type: 'byte' });
    expect(json(join(dir, 'config.json')).eos_token_id).toBe(257);
    m.dispose();
  });

  it('refuses a tokenizer larger than the vocabulary; without a tokenizer a new folder gets LLaMA-2 ids and no record', async () => {
    const m = new LlamaForCausalLM(small(256), { seed: 3 });
    await expect(savePretrained(m, join(work, 'too-small'), { tokenizer: new ByteTokenizer() }))
      .rejects.toThrow(/the tokenizer "byte" has 259 ids, more than the model's 256 embeddings/);
    expect(existsSync(join(work, 'too-small'))).toBe(false);
    await savePretrained(m, join(work, 'plain'));
    m.dispose();
    expect(json(join(work, 'plain', 'config.json'))).toMatchObject({ bos_token_id: 1, eos_token_id: 2, pad_token_id: null });
    expect(json(join(work, 'plain', 'generation_config.json'))).toEqual({ bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });
    expect(readFolderTokenizer(join(work, 'plain'))).toBeNull();
    expect(() => tokenizerFromSpec(undefined, join(work, 'plain'))).toThrow(/no tokenizer at .*tokenizer\.model .*pass --tokenizer/);
  });

  const py = findPython(['torch', 'transformers']);
  it.skipIf(!py.python)(`transformers generate() on a folder we saved stops at its EOS${py.python ? '' : ` (skipped: ${py.why})`}`, async () => {
    // A random model rarely says EOS, so relabel one: swap the rows of EOS (257) and of a token t
    // the greedy continuation produces at step k (tied table: input and output swap together).
    // The relabelled model continues the same way with t read as EOS, so a generate() that
    // honours the folder's EOS stops after k + 1 tokens; one that assumes LLaMA's EOS 2 does not.
    const cfg = small(300);
    const m = new LlamaForCausalLM(cfg, { seed: 4, initStd: 0.3 });
    const prompt = [256, 84, 104, 101, 32, 99, 108, 97, 105, 109];
    const greedy = (max: number): number[] => {
      // plain full forwards: the reference continuation, EOS not special
      const seq = [...prompt];
      for (let i = 0; i < max; i++) {
        const logits = noGrad(() => m.forward({ tokens: Int32Array.from(seq) }));
        const last = (logits.toArray() as Float32Array).subarray((seq.length - 1) * 300, seq.length * 300);
        logits.dispose();
        let best = 0;
        for (let v = 1; v < 300; v++) if (last[v]! > last[best]!) best = v;
        seq.push(best);
      }
      return seq.slice(prompt.length);
    };
    const g = greedy(24);
    expect(new Set(g).size).toBeGreaterThan(6); // varied, not one token repeated
    const k = g.findIndex((t, i) => i >= 3 && !g.slice(0, i).includes(t) && !prompt.includes(t) && t !== 257 && t !== 2);
    expect(k).toBeGreaterThanOrEqual(3);
    const t = g[k]!;
    const embed = new Map(m.namedParameters()).get('model.embed_tokens.weight')!;
    const w = embed.toArray() as Float32Array;
    const C = cfg.dim;
    const row = w.slice(t * C, (t + 1) * C);
    w.copyWithin(t * C, 257 * C, 258 * C);
    w.set(row, 257 * C);
    noGrad(() => embed.write(w));
    const relabel = (x: number): number => (x === t ? 257 : x === 257 ? t : x);
    const want = g.slice(0, k + 1).map(relabel);
    expect(want[k]).toBe(257);
    const dir = join(work, 'hf-eos');
    await savePretrained(m, dir, { dtype: 'f32', tokenizer: new ByteTokenizer() });
    m.dispose();
    const code = [
      'import json, sys, torch',
      'from transformers import AutoModelForCausalLM',
      `m = AutoModelForCausalLM.from_pretrained(${JSON.stringify(dir)}, torch_dtype=torch.float32)`,
      `out = m.generate(torch.tensor([${JSON.stringify(prompt)}]), max_new_tokens=24, do_sample=False)`,
      'gc = m.generation_config',
      'print(json.dumps({"new": out[0].tolist()[' + prompt.length + ':], "eos": gc.eos_token_id, "bos": gc.bos_token_id, "pad": gc.pad_token_id}))',
    ].join('\n');
    const res = JSON.parse(execFileSync(py.python!, ['-c', code], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'ignore'] })
      .trim().split('\n').pop()!) as { new: number[]; eos: number; bos: number; pad: number };
    expect({ eos: res.eos, bos: res.bos, pad: res.pad }).toEqual({ eos: 257, bos: 256, pad: 258 });
    expect(res.new).toEqual(want); // stopped at EOS after k + 1 of 24 tokens
  }, 120_000);
});

describe('patentgpt model init', () => {
  it('records the tokenizer, and refuses to overwrite a model unless --force', () => {
    const out = join(work, 'init');
    let r = cli('model', 'init', '--preset', 'llama-5m', '--out', out, '--seed', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/tokenizer byte/);
    expect(readFolderTokenizer(out)).toEqual({ type: 'byte' });
    expect(json(join(out, 'generation_config.json')).eos_token_id).toBe(257);
    const before = readFileSync(join(out, 'model.safetensors'));
    r = cli('model', 'init', '--preset', 'llama-5m', '--out', out, '--seed', '2');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/already holds a model .*pass --force to replace it/);
    expect(Buffer.compare(readFileSync(join(out, 'model.safetensors')), before)).toBe(0); // untouched
    r = cli('model', 'init', '--preset', 'llama-5m', '--out', out, '--seed', '2', '--force');
    expect(r.status, r.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(join(out, 'model.safetensors')), before)).not.toBe(0);
    // an empty folder, or one holding other things, is not a model
    mkdirSync(join(work, 'empty'));
    writeFileSync(join(work, 'empty', 'notes.txt'), 'x');
    expect(cli('model', 'init', '--preset', 'tiny', '--out', join(work, 'empty')).status).toBe(0);
  }, 60_000);

  it('refuses a config whose tensor is too large for a typed array, naming the tensor and its size', () => {
    // vocabulary x dim just past 2^32 elements: V8 cannot hold the embedding table in one typed array
    const vocabSize = Math.floor(MAX_TENSOR_ELEMENTS / 4096) + 1;
    const path = join(work, 'huge.json');
    writeFileSync(path, JSON.stringify({ vocabSize, dim: 4096, nLayers: 1, nHeads: 32, ffnDim: 256 }));
    const r = cli('model', 'init', '--config', path, '--out', join(work, 'huge'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`tensor "model.embed_tokens.weight" \\[${vocabSize}, 4096\\] has [0-9,]+ elements \\(16\\.0 GiB\\), more than the`));
    expect(r.stderr).not.toMatch(/RangeError/);
    expect(existsSync(join(work, 'huge'))).toBe(false);
  }, 60_000);
});

describe('clear errors', () => {
  it('a too-large tensor in a safetensors file or a folder config is an E_UNSUPPORTED naming it, not a RangeError', async () => {
    const n = Math.floor(MAX_TENSOR_ELEMENTS / 4096) + 1;
    // A sparse file: the header describes the tensor, the data is a hole (no disk used).
    const path = join(work, 'huge.safetensors');
    const header = Buffer.from(JSON.stringify({ big: { dtype: 'F32', shape: [n, 4096], data_offsets: [0, n * 4096 * 4] } }));
    const fd = openSync(path, 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeSync(fd, len);
    writeSync(fd, header);
    ftruncateSync(fd, 8 + header.length + n * 4096 * 4);
    closeSync(fd);
    const f = await SafetensorsFile.open(path);
    try {
      const err = await f.read('big').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PatentGPTError);
      expect((err as PatentGPTError).code).toBe('E_UNSUPPORTED');
      expect((err as Error).message).toMatch(/huge\.safetensors: tensor "big" \[\d+, 4096\] has [\d,]+ elements \(16\.0 GiB\)/);
    } finally {
      await f.close();
    }
    // a folder whose config implies such a tensor is refused before the model is built
    const dir = join(work, 'huge-folder');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ vocab_size: n, hidden_size: 4096, intermediate_size: 256, num_hidden_layers: 1, num_attention_heads: 32 }));
    await expect(loadPretrained(dir)).rejects.toThrow(/config\.json: tensor "model\.embed_tokens\.weight" \[\d+, 4096\] has [\d,]+ elements/);
    // growing a vocabulary past it
    const m = new LlamaForCausalLM(preset('tiny').config, { seed: 1 });
    const rows = Math.floor(MAX_TENSOR_ELEMENTS / 64) + 1;
    expect(() => resizeVocabulary(m, rows)).toThrow(new RegExp(`resizeVocabulary: tensor "model.embed_tokens.weight" \\[${rows}, 64\\] has`));
    expect(m.config.vocabSize).toBe(256);
    m.dispose();
  });

  it('a write error of a safetensors file or a folder names the file and keeps the errno code', async () => {
    const t = Tensor.from(Float32Array.of(1, 2, 3));
    const blocked = join(work, 'blocked.safetensors');
    mkdirSync(join(blocked, 'child'), { recursive: true }); // a non-empty folder where the file goes
    const err = await writeSafetensors(blocked, [['t', t]]).catch((e: unknown) => e);
    t.dispose();
    expect(err).toBeInstanceOf(PatentGPTError);
    expect((err as PatentGPTError).code).toBe('E_IO');
    expect((err as Error).message).toContain(`${blocked}: cannot write (`);
    expect(['EISDIR', 'ENOTEMPTY', 'EEXIST']).toContain((err as { errnoCode?: string }).errnoCode);
    // savePretrained into a folder whose config.json is a folder: the error names config.json
    const dir = join(work, 'blocked-folder');
    mkdirSync(join(dir, 'config.json', 'x'), { recursive: true });
    const m = new LlamaForCausalLM(preset('tiny').config, { seed: 1 });
    await expect(savePretrained(m, dir)).rejects.toThrow(new RegExp(`${join(dir, 'config.json')}: cannot write \\((EISDIR|ENOTEMPTY|EEXIST)`));
    // a file in the way of the folder: the error names the folder
    writeFileSync(join(work, 'a-file'), 'x');
    const under = join(work, 'a-file', 'model');
    const e2 = await savePretrained(m, under).catch((e: unknown) => e);
    expect((e2 as PatentGPTError).code).toBe('E_IO');
    expect((e2 as Error).message).toMatch(new RegExp(`^${under}: cannot write \\(ENOTDIR`));
    m.dispose();
  });
});
