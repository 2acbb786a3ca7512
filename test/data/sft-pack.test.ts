// SFT batches: packing several conversations into a row gives each conversation the loss it
// has alone (a tiny LlamaForCausalLM, packed vs one at a time), padding rows ignore their pad
// tokens, and the mixture and the validation split are deterministic.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildExample, collateRows, IGNORE_INDEX, isValidation, llama2ChatRenderer, loadSftData, packExamples, weightedIndices, type SftExample,
} from '../../src/data/sft/index.js';
import { LlamaForCausalLM, validateConfig } from '../../src/models/index.js';
import { noGrad } from '../../src/tensor/index.js';
import { SentencePieceTokenizer, type ChatMessage } from '../../src/tokenizer/index.js';

const tok = SentencePieceTokenizer.llama2();
const DATA = process.env.PATENTGPT_DATA ?? path.resolve(import.meta.dirname, '../../../shared/data');
const renderer = llama2ChatRenderer(tok);

const convs: ChatMessage[][] = [
  [{ role: 'user', content: 'What is a claim?' }, { role: 'assistant', content: 'The part of a patent that defines the protection.' }],
  [
    { role: 'system', content: 'Be brief.' }, { role: 'user', content: 'CPC?' }, { role: 'assistant', content: 'Cooperative Patent Classification.' },
    { role: 'user', content: 'Run by?' }, { role: 'assistant', content: 'EPO and USPTO.' },
  ],
  [{ role: 'user', content: 'Opposite of grant?' }, { role: 'assistant', content: 'Refusal.' }],
  [{ role: 'user', content: 'Name an IP right.' }, { role: 'assistant', content: 'A trademark, a patent or a design.' }],
];

function examples(): SftExample[] {
  return convs.map((c, index) => {
    const r = buildExample(renderer, c, { file: 'mem', index });
    if (!r.ok) throw new Error(r.detail);
    return r.example;
  });
}

/** Summed loss (nats) over the targets of the segment [a, b) of a batch, the rest ignored. */
function segmentLoss(model: LlamaForCausalLM, b: { tokens: Int32Array; targets: Int32Array; positions: Int32Array; cuSeqlens: Int32Array }, a: number, e: number): number {
  const targets = new Int32Array(b.targets.length).fill(IGNORE_INDEX);
  targets.set(b.targets.subarray(a, e), a);
  const n = targets.filter((t) => t !== IGNORE_INDEX).length;
  return noGrad(() => model.loss({ ...b, targets }).item()) * n;
}

describe('SFT packing', () => {
  const model = new LlamaForCausalLM(validateConfig({ vocabSize: 32000, dim: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 64, maxSeqLen: 512 }), { seed: 3, initStd: 0.2 });

  it('rows hold whole conversations up to seqLen, positions restart, cuSeqlens mark each conversation and the padding', () => {
    const ex = examples();
    const lens = ex.map((e) => e.ids.length);
    const seqLen = lens[0]! + lens[1]! + 2;
    const rows = packExamples(ex, { seqLen });
    expect(lens[2]! + lens[3]!).toBeLessThanOrEqual(seqLen);
    expect(rows.map((r) => r.examples)).toEqual([[0, 1], [2, 3]]);
    const r0 = rows[0]!;
    expect(r0.tokens.length).toBe(seqLen);
    expect(Array.from(r0.cuSeqlens)).toEqual([0, lens[0], lens[0]! + lens[1]!, seqLen]);
    expect(r0.positions[lens[0]!]).toBe(0);
    expect(r0.positions[lens[0]! - 1]).toBe(lens[0]! - 1);
    // targets are the next token's label; a conversation's last token and the padding learn nothing
    expect(r0.targets[lens[0]! - 1]).toBe(IGNORE_INDEX);
    expect(Array.from(r0.targets.subarray(lens[0]! + lens[1]!))).toEqual([IGNORE_INDEX, IGNORE_INDEX]);
    for (let i = 0; i + 1 < lens[0]!; i++) expect(r0.targets[i]).toBe(ex[0]!.labels[i + 1]);
    // pad mode: one conversation a row; no padding asked: rows end at their last token
    expect(packExamples(ex, { seqLen, mode: 'pad' }).map((r) => r.examples)).toEqual([[0], [1], [2], [3]]);
    expect(packExamples(ex, { seqLen, padToSeqLen: false })[0]!.tokens.length).toBe(lens[0]! + lens[1]!);
    expect(() => packExamples(ex, { seqLen: 8 })).toThrow(/maxLength <= seqLen/);
  });

  it('the packed loss of each conversation equals its loss alone (within 1e-5), packed or padded', () => {
    const ex = examples();
    const alone = ex.map((e) => {
      const b = collateRows(packExamples([e], { seqLen: e.ids.length }));
      return segmentLoss(model, b, 0, e.ids.length);
    });
    for (const [mode, strategy] of [['pack', 'greedy'], ['pack', 'bfd'], ['pad', 'greedy']] as const) {
      const rows = packExamples(ex, { seqLen: 160, mode, strategy });
      const batch = collateRows(rows);
      expect(batch.rows).toBe(rows.length);
      // every conversation's segment in the flattened batch, in example order
      const spans: [number, number][] = [];
      let o = 0;
      for (const r of rows) {
        r.examples.forEach((j, k) => (spans[j] = [o + r.cuSeqlens[k]!, o + r.cuSeqlens[k + 1]!]));
        o += r.tokens.length;
      }
      ex.forEach((e, j) => {
        const packed = segmentLoss(model, batch, spans[j]![0], spans[j]![1]);
        expect(Math.abs(packed - alone[j]!), `${mode} conversation ${j}: ${packed} vs ${alone[j]}`).toBeLessThan(1e-5 * Math.max(1, alone[j]!));
        expect(packed).toBeGreaterThan(1);
      });
      // the batch's mean loss is the supervised tokens' mean over all conversations
      const total = noGrad(() => model.loss(batch).item()) * batch.targetCount;
      expect(total).toBeCloseTo(alone.reduce((a, b) => a + b, 0), 3);
    }
  });

  it('without per-conversation boundaries the same row gives other losses (the test can fail)', () => {
    const ex = examples();
    const b = collateRows(packExamples(ex, { seqLen: 400, padToSeqLen: false }));
    const one = { ...b, cuSeqlens: Int32Array.of(0, b.tokens.length), positions: Int32Array.from(b.tokens, (_, i) => i) };
    const l0 = ex[0]!.ids.length;
    const second = segmentLoss(model, b, l0, l0 + ex[1]!.ids.length);
    const leaked = segmentLoss(model, one, l0, l0 + ex[1]!.ids.length);
    expect(Math.abs(second - leaked)).toBeGreaterThan(1e-3);
  });
});

describe('SFT packing on real data (../shared/data)', () => {
  const sft = path.join(DATA, 'general-sft-pretrain-demo');
  it.skipIf(!fs.existsSync(sft))('Alpaca demos mixed, split and packed: every example in exactly one row, none over seqLen; bfd needs fewer rows (skips without ../shared/data)', async () => {
    const d = await loadSftData({
      renderer, seed: 1, valFraction: 0.05, maxLength: 512,
      sources: [{ path: path.join(sft, 'alpaca_en_demo.json') }, { path: path.join(sft, 'identity.json'), weight: 2 }],
    });
    expect(d.skipped.total).toBe(0);
    expect(d.train.length + d.val.length).toBeGreaterThan(999 + 91);
    const seen = new Map<string, number>();
    const count = (rows: ReturnType<typeof packExamples>): void => {
      seen.clear();
      for (const r of rows) {
        expect(r.tokens.length).toBe(512);
        expect(r.cuSeqlens[r.cuSeqlens.length - 1]).toBe(512);
        for (const j of r.examples) seen.set(String(j), (seen.get(String(j)) ?? 0) + 1);
      }
      expect(seen.size).toBe(d.train.length);
      expect([...seen.values()].every((v) => v === 1)).toBe(true);
    };
    const greedy = packExamples(d.train, { seqLen: 512 });
    count(greedy);
    const bfd = packExamples(d.train, { seqLen: 512, strategy: 'bfd' });
    count(bfd);
    expect(bfd.length).toBeLessThan(greedy.length);
    const supervised = d.train.reduce((a, e) => a + e.supervised, 0);
    expect(collateRows(bfd).targetCount).toBe(supervised);
    expect(collateRows(greedy).targetCount).toBe(supervised);
  });
});

describe('SFT mixture and validation split', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sft-mix-'));
  const write = (name: string, n: number, tag: string): string => {
    const f = path.join(dir, name);
    const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ instruction: i % 2 ? `${tag} question ${i}` : `${tag}: a longer question on the novelty of claim ${i}`, output: `${tag} answer ${i}` }));
    fs.writeFileSync(f, lines.join('\n') + '\n');
    return f;
  };
  const a = write('a.jsonl', 40, 'alpha');
  const b = write('b.jsonl', 20, 'beta');
  const first = (e: SftExample): string => tok.decode(Array.from(e.ids).filter((_, i) => e.labels[i] !== IGNORE_INDEX && e.ids[i] !== tok.eosId)).trim();

  it('weights scale each source (2 = twice, 0.5 = half), same seed same order, another seed another order', async () => {
    const opts = { renderer, sources: [{ path: a, weight: 0.5 }, { path: b, weight: 2 }], seed: 7 };
    const d1 = await loadSftData(opts);
    const d2 = await loadSftData(opts);
    expect(d1.train.length).toBe(20 + 40);
    expect(d1.sources.map((s) => s.mixed)).toEqual([20, 40]);
    expect(d1.train.filter((e) => first(e).startsWith('alpha')).length).toBe(20);
    expect(d1.train.map(first)).toEqual(d2.train.map(first));
    const d3 = await loadSftData({ ...opts, seed: 8 });
    expect(d3.train.map(first)).not.toEqual(d1.train.map(first));
    // no shuffle: file order, each beta record twice
    const plain = await loadSftData({ ...opts, shuffle: false });
    expect(plain.train.slice(20, 22).map(first)).toEqual(['beta answer 0', 'beta answer 1']);
    expect(plain.train.slice(40, 42).map(first)).toEqual(['beta answer 0', 'beta answer 1']);
    expect(weightedIndices(10, 0.3, 1, 0)).toEqual(weightedIndices(10, 0.3, 1, 0));
    expect(weightedIndices(10, 0.3, 1, 0).length).toBe(3);
  });

  it('the validation split is by the record\'s content: same records whatever the order, seed or weight; none on both sides', async () => {
    const d = await loadSftData({ renderer, sources: [{ path: a }, { path: b }], valFraction: 0.25, seed: 1 });
    const r = await loadSftData({ renderer, sources: [{ path: b, weight: 3 }, { path: a }], valFraction: 0.25, seed: 99 });
    const val = new Set(d.val.map(first));
    expect(new Set(r.val.map(first))).toEqual(val);
    expect(val.size).toBeGreaterThan(5);
    expect(val.size).toBeLessThan(25);
    expect(d.train.some((e) => val.has(first(e)))).toBe(false);
    expect(d.train.length + d.val.length).toBe(60);
    expect(isValidation('x', 0)).toBe(false);
    // another split seed moves the split
    const s = await loadSftData({ renderer, sources: [{ path: a }, { path: b }], valFraction: 0.25, splitSeed: 5 });
    expect(new Set(s.val.map(first))).not.toEqual(val);
  });

  it('maxLength truncates and counts; conversations with no answer left are skipped as too-long', async () => {
    const d = await loadSftData({ renderer, sources: [{ path: a }], maxLength: 16 });
    expect(d.truncated + d.skipped.counts['too-long']).toBe(40);
    expect(d.truncated).toBeGreaterThan(0);
    expect(d.skipped.counts['too-long']).toBeGreaterThan(0);
    expect(d.train.every((e) => e.truncated && e.supervised > 0)).toBe(true);
    expect(d.train.every((e) => e.ids.length <= 16)).toBe(true);
  });
});
