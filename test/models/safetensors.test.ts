// safetensors files and model folders: round trips in f32/bf16/f16, single and sharded,
// atomic writes, and clear refusals of truncated, corrupt or mismatched checkpoints.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  LlamaForCausalLM, SafetensorsFile, Tensor, loadPretrained, loadWeights, noGrad, preset, readSafetensors,
  resizeVocabulary, savePretrained, validateConfig, writeSafetensors,
} from '../../src/index.js';
import { numbers } from '../helpers.js';

const work = mkdtempSync(join(tmpdir(), 'pgpt-st-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const tiny = preset('tiny').config;

/** A hand-made file: header JSON then data bytes. */
function rawFile(path: string, header: unknown, data: Uint8Array, headerSize?: number): void {
  const hb = Buffer.from(JSON.stringify(header));
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(headerSize ?? hb.length));
  writeFileSync(path, Buffer.concat([n, hb, data]));
}

describe('safetensors files', () => {
  it('round-trips f32 exactly and bf16/f16 to their rounding, with an 8-aligned header', async () => {
    const a = Tensor.from(Float32Array.of(1, -2.5, 3.1415927, 1e-3, 65504, 0), [2, 3]);
    const ids = Tensor.from(Int32Array.of(7, -1, 3), [3], { dtype: 'i32' });
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      const path = join(work, `a-${dtype}.safetensors`);
      await writeSafetensors(path, [['a', a], ['ids', ids]], { dtype, metadata: { note: 'x' } });
      const buf = readFileSync(path);
      const hlen = Number(buf.readBigUInt64LE(0));
      expect((8 + hlen) % 8).toBe(0);
      const f = await SafetensorsFile.open(path);
      expect(f.metadata).toEqual({ note: 'x', format: 'pt' });
      expect(f.entries.get('a')).toMatchObject({ dtype: dtype.toUpperCase(), shape: [2, 3] });
      await f.close();
      const back = await readSafetensors(path);
      const want = dtype === 'f32' ? a.toArray() : (() => {
        const h = a.to(dtype);
        const v = h.toArray();
        h.dispose();
        return v;
      })();
      expect(back.get('a')!.toArray()).toEqual(want);
      expect(back.get('a')!.dtype).toBe('f32');
      expect(numbers(back.get('ids')!.toArray())).toEqual([7, -1, 3]);
      if (dtype === 'bf16') expect(back.get('a')!.toArray()[2]).toBe(3.140625);
    }
  });

  it('leaves no temporary file behind and replaces a file whole', async () => {
    const path = join(work, 'replace.safetensors');
    await writeSafetensors(path, [['x', Tensor.full([4], 1)]]);
    await writeSafetensors(path, [['y', Tensor.full([2], 2)]]);
    expect([...(await readSafetensors(path)).keys()]).toEqual(['y']);
    expect(readdirSync(work).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses truncated and corrupt files, naming the file and the fault', async () => {
    const good = join(work, 'good.safetensors');
    await writeSafetensors(good, [['w', Tensor.full([16], 1)], ['v', Tensor.full([4], 2)]]);
    const cut = join(work, 'cut.safetensors');
    writeFileSync(cut, readFileSync(good).subarray(0, readFileSync(good).length - 5));
    await expect(SafetensorsFile.open(cut)).rejects.toThrow(/cut\.safetensors: .*describes 80 bytes of tensor data but the file holds 75 \(truncated\)/);
    const stub = join(work, 'stub.safetensors');
    writeFileSync(stub, Buffer.from([1, 2, 3]));
    await expect(SafetensorsFile.open(stub)).rejects.toThrow(/stub\.safetensors: .*shorter than the 8-byte header size/);
    const bad = join(work, 'bad.safetensors');
    rawFile(bad, { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8), 10_000);
    await expect(SafetensorsFile.open(bad)).rejects.toThrow(/header of 10000 bytes runs past the end/);
    writeFileSync(bad, Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{no}')]));
    await expect(SafetensorsFile.open(bad)).rejects.toThrow(/header is not JSON/);
    rawFile(bad, { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8));
    await expect(SafetensorsFile.open(bad)).rejects.toThrow(/tensor "w" \(F32 \[3\]\) needs 12 bytes, its data_offsets span 8/);
    rawFile(bad, { w: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8));
    await expect(SafetensorsFile.open(bad)).rejects.toThrow(/tensor "w" has dtype "Q4"/);
    rawFile(bad, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12));
    await expect(SafetensorsFile.open(bad)).rejects.toThrow(/tensor "b" starts at byte 4 of the data, expected 8/);
    rawFile(bad, { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(12));
    await expect(SafetensorsFile.open(bad)).rejects.toThrow(/describes 8 bytes of tensor data but the file holds 12/);
  });

  it('reads the file transformers wrote with safetensors', async () => {
    const f = await SafetensorsFile.open(new URL('../fixtures/hf-tiny/model.safetensors', import.meta.url).pathname);
    expect(f.entries.size).toBe(21);
    expect(f.entries.get('model.layers.0.self_attn.k_proj.weight')).toMatchObject({ dtype: 'BF16', shape: [32, 64] });
    expect(f.metadata.format).toBe('pt');
    await f.close();
  });
});

describe('model folders', () => {
  it('saves and loads a model, single file and sharded with an index, f32 exactly', async () => {
    const m = new LlamaForCausalLM(tiny, { seed: 4 });
    const single = join(work, 'single');
    await savePretrained(m, single);
    expect(readdirSync(single).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    const sharded = join(work, 'sharded');
    await savePretrained(m, sharded, { maxShardBytes: 100_000 });
    const files = readdirSync(sharded).sort();
    expect(files).toContain('model.safetensors.index.json');
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(2);
    const index = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8')) as {
      metadata: { total_size: number }; weight_map: Record<string, string>;
    };
    expect(index.metadata.total_size).toBe(m.parameters().reduce((a, p) => a + 4 * p.size, 0));
    expect(Object.keys(index.weight_map)).toEqual(m.namedParameters().map(([n]) => n));
    for (const dir of [single, sharded]) {
      const back = await loadPretrained(dir);
      expect(back.config).toEqual(tiny);
      for (const [n, p] of m.namedParameters()) expect(back.getParameter(n)!.toArray(), n).toEqual(p.toArray());
      back.dispose();
    }
    // saving a sharded model over a single-file folder removes the stale single file, and back
    await savePretrained(m, single, { maxShardBytes: 100_000 });
    expect(existsSync(join(single, 'model.safetensors'))).toBe(false);
    await savePretrained(m, single);
    expect(readdirSync(single).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    m.dispose();
  });

  it('refuses a checkpoint whose shapes, tensors or files do not match, before changing any weight', async () => {
    const m = new LlamaForCausalLM(tiny, { seed: 4 });
    const dir = join(work, 'src-model');
    await savePretrained(m, dir, { maxShardBytes: 100_000 });
    const target = new LlamaForCausalLM(validateConfig({ ...tiny, ffnDim: 96 }), { seed: 5 });
    const before = target.model.embed_tokens.weight.toArray();
    await expect(loadWeights(target, dir)).rejects.toThrow(
      /model-\d+-of-\d+\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[128, 64\], the model expects \[96, 64\]/);
    expect(target.model.embed_tokens.weight.toArray()).toEqual(before); // nothing half-loaded
    target.dispose();
    // a tensor missing from the index
    const idxPath = join(dir, 'model.safetensors.index.json');
    const idx = JSON.parse(readFileSync(idxPath, 'utf8')) as { weight_map: Record<string, string> };
    delete idx.weight_map['model.norm.weight'];
    writeFileSync(idxPath, JSON.stringify(idx));
    await expect(loadPretrained(dir)).rejects.toThrow(/tensor "model\.norm\.weight" \[64\] is missing \(searched model-00001-of-/);
    // an index naming a file that lacks the tensor
    idx.weight_map['model.norm.weight'] = Object.values(idx.weight_map)[0]!;
    writeFileSync(idxPath, JSON.stringify(idx));
    await expect(loadPretrained(dir)).rejects.toThrow(/names model-00001-of-\d+\.safetensors for tensor "model\.norm\.weight", which that file does not hold/);
    // a truncated shard
    const dir2 = join(work, 'truncated');
    await savePretrained(m, dir2);
    truncateSync(join(dir2, 'model.safetensors'), 1000);
    await expect(loadPretrained(dir2)).rejects.toThrow(/truncated\/model\.safetensors: not a valid safetensors file/);
    // a config with a wrong field, and a folder without weights
    const dir3 = join(work, 'badconfig');
    await savePretrained(m, dir3);
    const cfg = JSON.parse(readFileSync(join(dir3, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir3, 'config.json'), JSON.stringify({ ...cfg, num_key_value_heads: 3 }));
    await expect(loadPretrained(dir3)).rejects.toThrow(/badconfig\/config\.json: field "nKvHeads" \(3\) must divide "nHeads"/);
    rmSync(join(dir3, 'model.safetensors'));
    writeFileSync(join(dir3, 'config.json'), JSON.stringify(cfg));
    await expect(loadPretrained(dir3)).rejects.toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
    // an extra tensor is refused unless strict: false; a tied model skips an untied file's lm_head
    const dir4 = join(work, 'extra');
    await savePretrained(m, dir4);
    const extra = Tensor.full([2], 0);
    await writeSafetensors(join(dir4, 'model.safetensors'), [...m.namedParameters(), ['extra.weight', extra]]);
    await expect(loadPretrained(dir4)).rejects.toThrow(/extra\/model\.safetensors: tensor "extra\.weight" is not a parameter of this model/);
    (await loadPretrained(dir4, { strict: false })).dispose();
    const tiedModel = new LlamaForCausalLM(preset('tiny-tied').config);
    await expect(loadWeights(tiedModel, dir4, { strict: false })).resolves.toBeUndefined();
    expect(tiedModel.outputWeight.toArray()).toEqual(m.model.embed_tokens.weight.toArray());
    tiedModel.dispose();
    extra.dispose();
    m.dispose();
  });

  it('writes bf16 and f16 folders that load as the rounded weights', async () => {
    const m = new LlamaForCausalLM(tiny, { seed: 4 });
    for (const dtype of ['bf16', 'f16'] as const) {
      const dir = join(work, `half-${dtype}`);
      await savePretrained(m, dir, { dtype });
      expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).torch_dtype).toBe(dtype === 'bf16' ? 'bfloat16' : 'float16');
      const back = await loadPretrained(dir);
      const w = m.model.embed_tokens.weight;
      const r = w.to(dtype);
      expect(back.model.embed_tokens.weight.toArray()).toEqual(r.toArray());
      r.dispose();
      back.dispose();
    }
    m.dispose();
  });
});

describe('resizeVocabulary', () => {
  it('grows the embedding and output rows to 55,296-style sizes: old rows kept, new rows the mean', async () => {
    const m = new LlamaForCausalLM(tiny, { seed: 4 });
    const oldEmbed = m.model.embed_tokens.weight.toArray() as Float32Array;
    const oldHead = m.lm_head!.weight.toArray() as Float32Array;
    resizeVocabulary(m, 300);
    expect(m.config.vocabSize).toBe(300);
    const e = m.model.embed_tokens.weight.toArray() as Float32Array;
    const h = m.lm_head!.weight.toArray() as Float32Array;
    expect(m.model.embed_tokens.weight.shape).toEqual([300, 64]);
    expect(e.subarray(0, 256 * 64)).toEqual(oldEmbed);
    expect(h.subarray(0, 256 * 64)).toEqual(oldHead);
    for (const [now, old] of [[e, oldEmbed], [h, oldHead]] as const)
      for (const c of [0, 17, 63]) {
        let mean = 0;
        for (let r = 0; r < 256; r++) mean += old[r * 64 + c]!;
        expect(now[299 * 64 + c]).toBeCloseTo(mean / 256, 6);
        expect(now[256 * 64 + c]).toBe(now[299 * 64 + c]);
      }
    // the resized model computes, trains, saves and loads
    const logits = noGrad(() => m.forward({ tokens: Int32Array.of(1, 299, 5) }));
    expect(logits.shape).toEqual([3, 300]);
    logits.dispose();
    const dir = join(work, 'resized');
    await savePretrained(m, dir);
    const back = await loadPretrained(dir);
    expect(back.config.vocabSize).toBe(300);
    back.dispose();
    // a given init, tied embeddings, and refusals
    const t = new LlamaForCausalLM(preset('tiny-tied').config, { seed: 1 });
    resizeVocabulary(t, 260, { init: (table, rows, dim) => new Float32Array(rows * dim).fill(table === 'embed' ? 0.5 : NaN) });
    expect(t.outputWeight.toArray()[259 * 64]).toBe(0.5);
    expect(t.namedParameters().length).toBe(m.namedParameters().length - 1);
    expect(() => resizeVocabulary(t, 100)).toThrow(/new size 100 must be an integer >= the current 260/);
    expect(() => resizeVocabulary(t, 270, { init: () => new Float32Array(3) })).toThrow(/init for embed must return a Float32Array of 10 x 64/);
    t.dispose();
    m.dispose();
  });
});
