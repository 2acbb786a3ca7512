// The data section of an SFT config: defaults, paths resolved against the config's folder,
// errors that name the field, unknown fields refused; and the validated config runs end to end.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { llama2ChatRenderer, loadSftData, SftBatchStream, validateSftDataConfig } from '../../src/data/sft/index.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/index.js';

const FIX = path.join(import.meta.dirname, 'fixtures', 'sft');

describe('validateSftDataConfig', () => {
  it('fills defaults and resolves paths against the config folder', () => {
    const c = validateSftDataConfig({ sources: ['messages.jsonl', { path: 'custom.jsonl', weight: 2, fields: { messages: 'dialog', roles: { agent: 'assistant' } } }] }, { baseDir: FIX });
    expect(c).toEqual({
      sources: [
        { path: path.join(FIX, 'messages.jsonl'), weight: 1 },
        { path: path.join(FIX, 'custom.jsonl'), weight: 2, fields: { messages: 'dialog', roles: { agent: 'assistant' } } },
      ],
      valFraction: 0, splitSeed: 0, trainOnPrompt: false, packing: 'pack', strategy: 'bfd', shuffle: true,
    });
  });

  it('names the field at fault and refuses unknown fields', () => {
    const bad: [unknown, RegExp][] = [
      [{}, /data\.sources: must list/],
      [{ sources: [{ path: 'a.jsonl', weight: -1 }] }, /data\.sources\[0\]\.weight: must be a number >= 0/],
      [{ sources: [{ path: 'a.jsonl', layot: 'alpaca' }] }, /data\.sources\[0\]\.layot: unknown field/],
      [{ sources: [{ path: 'a.jsonl', layout: 'chatml' }] }, /data\.sources\[0\]\.layout: must be one of "messages", "alpaca", "sharegpt"/],
      [{ sources: [{ path: 'a.jsonl', fields: { roles: { bot: 'robot' } } }] }, /data\.sources\[0\]\.fields\.roles\.bot/],
      [{ sources: [{ path: 'a.jsonl', fields: { prompt: 'q' } }] }, /data\.sources\[0\]\.fields\.prompt: unknown field/],
      [{ sources: ['a.jsonl'], valFraction: 1 }, /data\.valFraction: must be in \[0, 1\)/],
      [{ sources: ['a.jsonl'], packing: 'none' }, /data\.packing: must be one of "pack", "pad"/],
      [{ sources: ['a.jsonl'], maxLength: 1.5 }, /data\.maxLength/],
      [{ sources: ['a.jsonl'], trainOnPromt: true }, /data\.trainOnPromt: unknown field/],
      [{ sources: [{ path: 'a.jsonl', weight: 0 }] }, /every weight is 0/],
    ];
    for (const [raw, re] of bad) expect(() => validateSftDataConfig(raw), JSON.stringify(raw)).toThrow(re);
    try {
      validateSftDataConfig({});
    } catch (e) {
      expect((e as { code?: string }).code).toBe('E_CONFIG');
    }
  });

  it('a validated config runs end to end: read, render, split, pack, batch', async () => {
    const c = validateSftDataConfig({ sources: ['messages.jsonl', 'alpaca.json', 'sharegpt.json', { path: 'messages.parquet', weight: 2 }], maxLength: 128 }, { baseDir: FIX });
    const d = await loadSftData({ ...c, renderer: llama2ChatRenderer(SentencePieceTokenizer.llama2()), seed: 1 });
    expect(d.train.length).toBe(2 + 3 + 2 + 4);
    const s = new SftBatchStream(d.train, { seqLen: 128, batchSize: 2, mode: c.packing, strategy: c.strategy, seed: 1 });
    const b = s.next();
    expect(b.tokens.length).toBe(256);
    expect(b.targetCount).toBeGreaterThan(0);
  });
});
