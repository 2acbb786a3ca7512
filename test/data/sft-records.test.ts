// SFT records: each layout (messages, Alpaca, ShareGPT, mapped field names) from JSONL, JSON and
// Parquet fixtures, malformed records skipped and counted by reason with file and line, and the
// real LLaMA-Factory demo sets in ../shared/data (skipped with a message when absent).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as zlib from 'node:zlib';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  arrayElementLines, loadSftData, llama2ChatRenderer, normalizeRecord, readSftRecords, SkipCounter, type SftFieldMap, type SftLayout,
} from '../../src/data/sft/index.js';
import type { ChatMessage } from '../../src/tokenizer/index.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/index.js';

const FIX = path.join(import.meta.dirname, 'fixtures', 'sft');
const DATA = process.env.PATENTGPT_DATA ?? path.resolve(import.meta.dirname, '../../../shared/data');

/** Every record of a file normalised: the conversations and the skip counter. */
async function normalizeFile(file: string, opts: { layout?: SftLayout; fields?: SftFieldMap } = {}): Promise<{ convs: ChatMessage[][]; skipped: SkipCounter }> {
  const skipped = new SkipCounter();
  const convs: ChatMessage[][] = [];
  for await (const item of readSftRecords(file)) {
    if (!item.ok) {
      skipped.add(item.skip);
      continue;
    }
    const n = normalizeRecord(item.record, opts);
    if (n.ok) convs.push(n.messages);
    else skipped.add({ ...item.source, reason: n.reason, detail: n.detail });
  }
  return { convs, skipped };
}

describe('SFT records: layouts', () => {
  it('messages (JSONL): multi-turn with system, text-part lists joined, every malformed line counted by reason and line', async () => {
    const { convs, skipped } = await normalizeFile(path.join(FIX, 'messages.jsonl'));
    expect(convs).toEqual([
      [
        { role: 'system', content: 'You are a patent attorney.' },
        { role: 'user', content: 'What is a claim?' },
        { role: 'assistant', content: 'The part of a patent that defines the protection.' },
        { role: 'user', content: 'And prior art?' },
        { role: 'assistant', content: 'Everything public before the filing date.' },
      ],
      [{ role: 'user', content: 'Name one IP right.' }, { role: 'assistant', content: 'A trademark.' }],
    ]);
    expect(skipped.nonzero()).toEqual({
      'malformed-json': 1, 'bad-role-order': 2, 'empty-assistant': 1, 'non-string-content': 1, 'unknown-role': 1, 'missing-field': 1,
      'not-an-object': 1, 'unknown-layout': 1,
    });
    const line = (r: string): number[] => skipped.examples.filter((s) => s.reason === r).map((s) => s.line!);
    // line 6 of the file is blank: the lines are the file's, not the records' count
    expect(line('malformed-json')).toEqual([3]);
    expect(line('bad-role-order')).toEqual([4, 10]);
    expect(line('empty-assistant')).toEqual([5]);
    expect(line('non-string-content')).toEqual([7]);
    expect(line('unknown-role')).toEqual([8]);
    expect(line('missing-field')).toEqual([9]);
    expect(line('not-an-object')).toEqual([11]);
    expect(line('unknown-layout')).toEqual([12]);
    expect(skipped.examples.every((s) => s.file.endsWith('messages.jsonl'))).toBe(true);
  });

  it('Alpaca (JSON array): input joined to the instruction, optional system and history; bad records counted', async () => {
    const { convs, skipped } = await normalizeFile(path.join(FIX, 'alpaca.json'));
    expect(convs).toEqual([
      [{ role: 'user', content: 'Summarise the claim.\nA chair with three legs.' }, { role: 'assistant', content: 'A three-legged chair.' }],
      [{ role: 'system', content: 'You translate.' }, { role: 'user', content: 'Translate to French.' }, { role: 'assistant', content: 'Bonjour.' }],
      [
        { role: 'user', content: 'First question.' }, { role: 'assistant', content: 'First answer.' },
        { role: 'user', content: 'Continue.' }, { role: 'assistant', content: 'Second answer.' },
      ],
    ]);
    expect(skipped.nonzero()).toEqual({ 'unknown-layout': 1, 'non-string-content': 1, 'empty-assistant': 1 });
    expect(skipped.examples.map((s) => [s.reason, s.index, s.line])).toEqual([['unknown-layout', 3, 5], ['non-string-content', 4, 6], ['empty-assistant', 5, 7]]);
    // set explicitly, a record without "output" is missing a field rather than of no known layout
    const forced = await normalizeFile(path.join(FIX, 'alpaca.json'), { layout: 'alpaca' });
    expect(forced.skipped.nonzero()).toEqual({ 'missing-field': 1, 'non-string-content': 1, 'empty-assistant': 1 });
  });

  it('ShareGPT (JSON array): human/gpt/system, a system field beside the turns; bad roles and order counted', async () => {
    const { convs, skipped } = await normalizeFile(path.join(FIX, 'sharegpt.json'));
    expect(convs).toEqual([
      [
        { role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is CPC?' }, { role: 'assistant', content: 'Cooperative Patent Classification.' },
        { role: 'user', content: 'Who runs it?' }, { role: 'assistant', content: 'The EPO and the USPTO.' },
      ],
      [{ role: 'system', content: 'You are kind.' }, { role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Hi there.' }],
    ]);
    expect(skipped.nonzero()).toEqual({ 'unknown-role': 1, 'bad-role-order': 1, 'missing-field': 1 });
    expect(skipped.examples.map((s) => s.line)).toEqual([4, 5, 6]);
  });

  it('JSON element lines: found past strings holding brackets, commas and escaped quotes, over nested arrays', () => {
    const text = '[\n  {"a": "x, ] [ \\" {"},\n\n  {"b": [1,\n 2]}, "s",\n 3\n]';
    expect(JSON.parse(text)).toHaveLength(4);
    expect(arrayElementLines(text)).toEqual([2, 4, 5, 6]);
  });

  it('a file that is not Parquet is one malformed-parquet skip, not an error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sft-pq-'));
    const f = path.join(dir, 'bad.parquet');
    fs.writeFileSync(f, 'PAR1 this is not parquet at all PAR1');
    const { convs, skipped } = await normalizeFile(f);
    expect(convs).toEqual([]);
    expect(skipped.nonzero()).toEqual({ 'malformed-parquet': 1 });
    await expect(normalizeFile(path.join(dir, 'missing.jsonl'))).rejects.toThrow(/cannot read it/);
  });

  it('gzip JSONL and a per-source system prompt', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sft-gz-'));
    const f = path.join(dir, 'a.jsonl.gz');
    fs.writeFileSync(f, zlib.gzipSync('{"instruction": "Q", "output": "A"}\n'));
    const out: unknown[] = [];
    for await (const item of readSftRecords(f)) if (item.ok) out.push(normalizeRecord(item.record, { defaultSystem: 'Be an examiner.' }));
    expect(out).toEqual([{ ok: true, messages: [{ role: 'system', content: 'Be an examiner.' }, { role: 'user', content: 'Q' }, { role: 'assistant', content: 'A' }] }]);
  });

  it('field names and role names mapped in the config', async () => {
    const fields: SftFieldMap = { messages: 'dialog', role: 'speaker', content: 'text', roles: { client: 'user', agent: 'assistant' } };
    const { convs, skipped } = await normalizeFile(path.join(FIX, 'custom.jsonl'), { fields });
    expect(convs).toEqual([[{ role: 'user', content: 'Is my idea patentable?' }, { role: 'assistant', content: 'If it is new and inventive.' }]]);
    expect(skipped.nonzero()).toEqual({ 'unknown-role': 1 });
    // without the map nothing is recognised
    expect((await normalizeFile(path.join(FIX, 'custom.jsonl'))).skipped.nonzero()).toEqual({ 'unknown-layout': 2 });
  });

  it('messages (Parquet, list of structs) through hyparquet', async () => {
    const { convs, skipped } = await normalizeFile(path.join(FIX, 'messages.parquet'));
    expect(convs).toEqual([
      [{ role: 'user', content: 'What is a patent family?' }, { role: 'assistant', content: 'Patents that share a priority.' }],
      [{ role: 'system', content: 'Answer in one word.' }, { role: 'user', content: 'Opposite of grant?' }, { role: 'assistant', content: 'Refusal.' }],
    ]);
    expect(skipped.examples.map((s) => [s.reason, s.index])).toEqual([['empty-assistant', 2]]);
  });

  it('loadSftData over all fixtures: never throws on bad records, counts them, keeps the good ones', async () => {
    const tok = SentencePieceTokenizer.llama2();
    const d = await loadSftData({
      renderer: llama2ChatRenderer(tok), shuffle: false,
      sources: ['messages.jsonl', 'alpaca.json', 'sharegpt.json', 'messages.parquet'].map((f) => ({ path: path.join(FIX, f) })),
    });
    expect(d.train.length).toBe(2 + 3 + 2 + 2);
    expect(d.skipped.total).toBe(9 + 3 + 3 + 1);
    expect(d.sources.map((s) => [s.records, s.train, s.skipped])).toEqual([[11, 2, 9], [6, 3, 3], [5, 2, 3], [3, 2, 1]]);
  });
});

describe('SFT records: real data in ../shared/data', () => {
  const sft = path.join(DATA, 'general-sft-pretrain-demo');
  const pref = path.join(DATA, 'preference-demo');
  it.skipIf(!fs.existsSync(sft))('LLaMA-Factory Alpaca demos (en, zh, identity) all read as Alpaca (skips without ../shared/data)', async () => {
    for (const [f, n] of [['alpaca_en_demo.json', 999], ['alpaca_zh_demo.json', 1000], ['identity.json', 91]] as const) {
      const { convs, skipped } = await normalizeFile(path.join(sft, f));
      expect(convs.length + skipped.total, f).toBe(n);
      expect(skipped.total, `${f}: ${JSON.stringify(skipped.examples.slice(0, 2))}`).toBe(0);
      expect(convs.every((c) => c[c.length - 1]!.role === 'assistant' && c[c.length - 2]!.role === 'user')).toBe(true);
    }
    // c4_demo is pretraining text: every record is of no SFT layout, none fatal
    const c4 = await normalizeFile(path.join(sft, 'c4_demo.jsonl'));
    expect(c4.convs.length).toBe(0);
    expect(c4.skipped.nonzero()).toEqual({ 'unknown-layout': 300 });
    expect(c4.skipped.examples[0]!.line).toBe(1);
  });
  it.skipIf(!fs.existsSync(pref))('preference demos: KTO messages read as messages; DPO ShareGPT prompts lack the answer (skips without ../shared/data)', async () => {
    const kto = await normalizeFile(path.join(pref, 'kto_en_demo.json'));
    expect(kto.convs.length + kto.skipped.total).toBe(300);
    expect(kto.convs.length).toBeGreaterThan(290);
    // DPO records keep the answer apart ("chosen"): the conversation ends on the user
    const dpo = await normalizeFile(path.join(pref, 'dpo_en_demo.json'));
    expect(dpo.convs.length).toBe(0);
    expect(dpo.skipped.counts['bad-role-order']).toBe(300);
    // hh-rlhf (gzip JSONL of chosen/rejected transcripts) has no SFT layout: all counted, none fatal
    const hh = await normalizeFile(path.join(pref, 'hh-rlhf-harmless-base', 'test.jsonl.gz'));
    expect(hh.skipped.nonzero()).toEqual({ 'unknown-layout': 2312 });
  });
});
