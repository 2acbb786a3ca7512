// Preference data: each layout (explicit prompt/chosen/rejected as strings or messages, implicit
// prompt, LLaMA-Factory's sharegpt, hh-rlhf transcripts, CSV through a prompt template) from
// JSONL, Parquet and CSV fixtures, malformed pairs skipped and counted by reason, the content-hash
// split, tokenization with response-only masks, the batch stream (order, scored positions,
// position/restore), the data config's errors, and the real sets in ../shared/data (skipped with
// a message when absent).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  PreferenceBatchStream, collatePairs, loadPreferenceData, normalizePreference, parseDelimited, preferenceEvalBatches, readPreferencePairs,
  tokenizePair, validatePreferenceDataConfig,
} from '../../src/data/preference/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { llama2ByteRenderer } from '../../src/train/stages/sft.js';

const FIX = path.join(import.meta.dirname, 'fixtures', 'preference');
const DATA = process.env.PATENTGPT_DATA ?? path.resolve(import.meta.dirname, '../../../shared/data');
const tok = new ByteTokenizer();
const renderer = llama2ByteRenderer(tok);
const src = { file: 'x', index: 0 };

describe('preference records: layouts and skips', () => {
  it('JSONL: explicit strings and messages, implicit prompt, sharegpt, hh transcripts; every malformed pair counted by reason', async () => {
    const d = await readPreferencePairs({ sources: [{ path: path.join(FIX, 'mixed.jsonl') }] });
    const strip = d.train.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected }));
    expect(strip).toEqual([
      { prompt: [{ role: 'user', content: 'What is prior art?' }], chosen: [{ role: 'assistant', content: 'Everything public before the filing date.' }], rejected: [{ role: 'assistant', content: 'Art made before 1900.' }] },
      {
        prompt: [{ role: 'system', content: 'You are a patent examiner.' }, { role: 'user', content: 'Define novelty.' }],
        chosen: [{ role: 'assistant', content: 'Not disclosed in any single prior reference.' }], rejected: [{ role: 'assistant', content: 'Being new to the examiner.' }],
      },
      { prompt: [{ role: 'user', content: 'Hi' }], chosen: [{ role: 'assistant', content: 'Hello! How can I help with your patent?' }], rejected: [{ role: 'assistant', content: 'Go away.' }] },
      { prompt: [{ role: 'user', content: 'What is a claim?' }], chosen: [{ role: 'assistant', content: 'The legal definition of the invention.' }], rejected: [{ role: 'assistant', content: 'A request for money.' }] },
      { prompt: [{ role: 'user', content: 'Can I patent an idea?' }], chosen: [{ role: 'assistant', content: 'No, only its concrete implementation.' }], rejected: [{ role: 'assistant', content: 'Yes, any idea.' }] },
    ]);
    expect(d.train.map((p) => p.source.line)).toEqual([1, 2, 3, 4, 5]);
    expect(d.skipped.nonzero()).toEqual({
      'malformed-json': 1, 'not-an-object': 1, 'unknown-layout': 1, 'identical-responses': 1, 'empty-response': 1, 'unknown-role': 1,
      'non-string-content': 1, 'bad-role-order': 1, 'no-shared-prompt': 1,
    });
    expect(d.skipped.examples.find((s) => s.reason === 'malformed-json')?.line).toBe(6);
    expect(d.sources).toEqual([{ path: path.join(FIX, 'mixed.jsonl'), records: 14, train: 5, val: 0, skipped: 9 }]);
  });

  it('Parquet (TRL string columns): pairs in row order, identical responses skipped', async () => {
    const d = await readPreferencePairs({ sources: [{ path: path.join(FIX, 'pairs.parquet') }] });
    expect(d.train.map((p) => p.chosen[0]!.content)).toEqual(['The combination of elements it recites.', 'Process, machine, manufacture and composition of matter.']);
    expect(d.skipped.nonzero()).toEqual({ 'identical-responses': 1 });
  });

  it('CSV with mapped fields and a prompt template: quoted commas, quotes and newlines; a short row is malformed-csv', async () => {
    const d = await readPreferencePairs({
      sources: [{ path: path.join(FIX, 'pairs.csv'), fields: { chosen: 'human', rejected: 'machine' }, promptTemplate: 'Abstract for "{title}" {{claim 1}}: {claim}' }],
    });
    expect(d.train.map((p) => [p.prompt[0]!.content, p.chosen[0]!.content, p.rejected[0]!.content])).toEqual([
      ['Abstract for "Widget" {claim 1}: 1. A widget, comprising a "gear".', 'Real abstract one.', 'Fake abstract one.'],
      ['Abstract for "Gadget" {claim 1}: 1. A gadget\nwith two lines.', 'Real abstract two.', 'Fake abstract two.'],
    ]);
    expect(d.skipped.nonzero()).toEqual({ 'malformed-csv': 1 });
    expect(parseDelimited('a,b\r\n"x\r\ny",z\n', ',')).toEqual([{ fields: ['a', 'b'], line: 1 }, { fields: ['x\r\ny', 'z'], line: 2 }]);
  });

  it('a template naming a missing field, and forced layouts, say what is wrong', () => {
    expect(normalizePreference({ chosen: 'a', rejected: 'b' }, { promptTemplate: 'Q: {question}' })).toMatchObject({ ok: false, reason: 'missing-field' });
    expect(normalizePreference({ p: 'q', good: 'a', bad: 'b' }, { fields: { prompt: 'p', chosen: 'good', rejected: 'bad' } })).toMatchObject({ ok: true });
    expect(normalizePreference({ conversations: [{ from: 'human', value: 'q' }], chosen: { from: 'human', value: 'a' }, rejected: { from: 'gpt', value: 'b' } }))
      .toMatchObject({ ok: false, reason: 'bad-role-order' });
  });

  it('the validation split is a function of the content: disjoint, stable under reordering, near the fraction', async () => {
    const a = await readPreferencePairs({ sources: [{ path: path.join(FIX, 'mixed.jsonl') }, { path: path.join(FIX, 'pairs.parquet') }], valFraction: 0.5, splitSeed: 3 });
    const b = await readPreferencePairs({ sources: [{ path: path.join(FIX, 'pairs.parquet') }, { path: path.join(FIX, 'mixed.jsonl') }], valFraction: 0.5, splitSeed: 3 });
    const key = (p: { chosen: { content: string }[] }): string => p.chosen[0]!.content;
    expect(a.train.length + a.val.length).toBe(7);
    expect(new Set(a.val.map(key))).toEqual(new Set(b.val.map(key)));
    expect(a.val.map(key).filter((k) => a.train.map(key).includes(k))).toEqual([]);
  });
});

describe('preference tokenization and batches', () => {
  const pair = normalizePreference({
    prompt: [{ role: 'user', content: 'Q1' }, { role: 'assistant', content: 'A1' }, { role: 'user', content: 'Q2' }],
    chosen: 'good', rejected: 'bad answer',
  });
  if (!pair.ok) throw new Error(pair.detail);

  it('only the response and its EOS are masked in (an earlier assistant turn of the prompt is not); the prompt tokens agree', () => {
    const t = tokenizePair(renderer, pair.pair, src);
    if (!t.ok) throw new Error(t.detail);
    const { chosen, rejected } = t.example;
    const text = (ids: Int32Array, m: Uint8Array): string => tok.decode(Array.from(ids).filter((id, i) => m[i] === 1 && id !== tok.eosId));
    expect(text(chosen.ids, chosen.responseMask)).toBe(' good ');
    expect(text(rejected.ids, rejected.responseMask)).toBe(' bad answer ');
    expect(chosen.ids[chosen.ids.length - 1]).toBe(tok.eosId);
    expect(chosen.responseMask[chosen.ids.length - 1]).toBe(1);
    expect(chosen.responseTokens).toBe(' good '.length + 1);
    const promptLen = chosen.ids.length - chosen.responseTokens;
    expect(Array.from(rejected.ids.slice(0, promptLen))).toEqual(Array.from(chosen.ids.slice(0, promptLen)));
    // the whole conversation's assistant mask also covers A1: the response mask does not
    expect(tok.decode(Array.from(chosen.ids.slice(0, promptLen)))).toContain('A1');
  });

  it('maxLength cuts the end; a side with no response token left is too-long', () => {
    const t = tokenizePair(renderer, pair.pair, src, { maxLength: 44 });
    if (!t.ok) throw new Error(t.detail);
    expect(t.example.truncated).toBe(true);
    expect(t.example.chosen.ids.length).toBe(44);
    expect(t.example.chosen.responseTokens).toBe(3);
    expect(tokenizePair(renderer, pair.pair, src, { maxLength: 10 })).toMatchObject({ ok: false, reason: 'too-long' });
    // keep_end (TRL's truncation_mode): the response survives whole, the prompt's start goes
    const e = tokenizePair(renderer, pair.pair, src, { maxLength: 10, truncation: 'keep_end' });
    if (!e.ok) throw new Error(e.detail);
    expect(tok.decode(Array.from(e.example.chosen.ids))).toBe('ST] good ');
    expect(e.example.chosen.ids[9]).toBe(tok.eosId);
    expect(Array.from(e.example.chosen.responseMask)).toEqual([0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    expect(e.example.rejected.ids.length).toBe(10);
    expect(e.example.rejected.responseTokens).toBe(9); // position 0 predicts nothing
    expect(validatePreferenceDataConfig({ sources: ['a'], truncation: 'keep_end' }).truncation).toBe('keep_end');
    expect(() => validatePreferenceDataConfig({ sources: ['a'], truncation: 'left' })).toThrow(/data\.truncation: must be one of "keep_start", "keep_end"/);
  });

  it('a batch packs chosen sides then rejected; scored positions predict exactly the response tokens', async () => {
    const d = await loadPreferenceData({ sources: [{ path: path.join(FIX, 'mixed.jsonl') }], renderer });
    const b = collatePairs(d.train, [1, 3]);
    expect(b.cuSeqlens.length).toBe(5);
    const seqIds = (k: number): number[] => Array.from(b.tokens.slice(b.cuSeqlens[k]!, b.cuSeqlens[k + 1]!));
    expect(seqIds(0)).toEqual(Array.from(d.train[1]!.chosen.ids));
    expect(seqIds(1)).toEqual(Array.from(d.train[3]!.chosen.ids));
    expect(seqIds(2)).toEqual(Array.from(d.train[1]!.rejected.ids));
    expect(seqIds(3)).toEqual(Array.from(d.train[3]!.rejected.ids));
    for (let k = 0; k < 4; k++) expect(Array.from(b.scored.seq).filter((s) => s === k).length).toBe(b.responseTokens[k]);
    for (let m = 0; m < b.targetCount; m++) {
      expect(b.tokens[b.scored.rows[m]! + 1]).toBe(b.scored.ids[m]);
      expect(b.targets[b.scored.rows[m]!]).toBe(b.scored.ids[m]);
      expect(b.scored.rows[m]! + 1).toBeLessThan(b.cuSeqlens[b.scored.seq[m]! + 1]!); // never across a boundary
    }
    expect(preferenceEvalBatches(d.train, 2).map((x) => x.pairs)).toEqual([2, 2, 1]);
  });

  it('the stream: epochs in file order without shuffling, a shuffled epoch is a permutation, restore continues exactly, other data refused', async () => {
    const d = await loadPreferenceData({ sources: [{ path: path.join(FIX, 'mixed.jsonl') }], renderer });
    const plain = new PreferenceBatchStream(d.train, { batchSize: 2, shuffle: false });
    expect([plain.next(), plain.next(), plain.next()].map((b) => b.examples)).toEqual([[0, 1], [2, 3], [4, 0]]);
    const s = new PreferenceBatchStream(d.train, { batchSize: 5, seed: 7 });
    expect([...s.next().examples].sort()).toEqual([0, 1, 2, 3, 4]);
    const a = new PreferenceBatchStream(d.train, { batchSize: 2, seed: 7 });
    a.next();
    a.next();
    const pos = a.position();
    const want = [a.next(), a.next()].map((b) => b.examples);
    const r = new PreferenceBatchStream(d.train, { batchSize: 2, seed: 7 }, pos);
    expect([r.next(), r.next()].map((b) => b.examples)).toEqual(want);
    expect(() => new PreferenceBatchStream(d.train.slice(1), { batchSize: 2, seed: 7 }, pos)).toThrow(/fingerprint/);
    const ranks = [0, 1].map((rank) => new PreferenceBatchStream(d.train, { batchSize: 1, shuffle: false, rank, worldSize: 2 }).next().examples);
    expect(ranks).toEqual([[0], [1]]);
  });
});

describe('preference data config', () => {
  it('fills defaults, resolves paths, and names the field of each error', () => {
    const c = validatePreferenceDataConfig({ sources: ['a.jsonl', { path: 'b.csv', fields: { chosen: 'human' }, promptTemplate: '{t}', limit: 5 }] }, { baseDir: '/d' });
    expect(c).toEqual({ sources: [{ path: '/d/a.jsonl' }, { path: '/d/b.csv', fields: { chosen: 'human' }, promptTemplate: '{t}', limit: 5 }], valFraction: 0, splitSeed: 0, shuffle: true });
    expect(() => validatePreferenceDataConfig({ sources: [] })).toThrow(/data\.sources: must list/);
    expect(() => validatePreferenceDataConfig({ sources: [{ path: 'a', fields: { chosn: 'x' } }] })).toThrow(/data\.sources\[0\]\.fields\.chosn: unknown field/);
    expect(() => validatePreferenceDataConfig({ sources: ['a'], valFraction: 1 })).toThrow(/data\.valFraction: must be in \[0, 1\)/);
    expect(() => validatePreferenceDataConfig({ sources: [{ path: 'a', layout: 'kto' }] })).toThrow(/data\.sources\[0\]\.layout: must be one of/);
  });
});

describe.skipIf(!fs.existsSync(DATA))('real preference data in ../shared/data', () => {
  it('LLaMA-Factory dpo_en_demo (sharegpt) and dpo_zh_demo: every pair read; hh-rlhf harmless-base transcripts; human vs machine patent abstracts by template', async () => {
    const pd = path.join(DATA, 'preference-demo');
    const en = await readPreferencePairs({ sources: [{ path: path.join(pd, 'dpo_en_demo.json') }, { path: path.join(pd, 'dpo_zh_demo.json') }] });
    expect(en.sources.map((s) => [s.records, s.train])).toEqual([[300, 300], [300, 300]]);
    expect(en.skipped.total).toBe(0);
    const hh = await readPreferencePairs({ sources: [{ path: path.join(pd, 'hh-rlhf-harmless-base', 'test.jsonl.gz') }] });
    expect(hh.sources[0]!.records).toBe(2312);
    // a few transcripts differ before the last turn or repeat the same answer: counted, not fatal
    expect(hh.train.length).toBeGreaterThan(2200);
    expect(hh.train.every((p) => p.prompt[p.prompt.length - 1]!.role === 'user' && p.chosen.length === 1)).toBe(true);
    const gp = await readPreferencePairs({
      sources: [{
        path: path.join(DATA, 'us-abstract-claim-genpairs', 'GPT3.5_A61B_50.csv'), fields: { chosen: 'patent_abstract', rejected: 'generated_abstract' },
        promptTemplate: 'Write the abstract of the patent "{patent_title}" whose first claim is: {claim_text}',
      }],
      valFraction: 0.2,
    });
    expect(gp.train.length + gp.val.length).toBe(50);
    expect(gp.val.length).toBeGreaterThan(0);
    const d = await loadPreferenceData({ sources: [{ path: path.join(pd, 'dpo_en_demo.json'), limit: 40 }], renderer, maxLength: 512 });
    // keep-start truncation as TRL's max_length: a pair whose prompt fills 512 bytes has no response left
    expect(d.train.length + d.skipped.counts['too-long']).toBe(40);
    expect(d.train.length).toBeGreaterThan(0);
    expect(d.train.every((e) => e.chosen.ids.length <= 512 && e.chosen.responseTokens > 0 && e.rejected.responseTokens > 0)).toBe(true);
    console.log(`dpo_en ${en.sources[0]!.train}, dpo_zh ${en.sources[1]!.train}, hh-rlhf ${hh.train.length} of 2312 (${JSON.stringify(hh.skipped.nonzero())}), genpairs 50, at 512 bytes: ${d.train.length} of 40 kept, ${d.truncated} truncated`);
  });
});
