// Incremental detokenization (what the engine streams): for every prefix of an output, the text
// pushed so far plus what is held equals decode(prompt + output) minus decode(prompt), as vLLM's
// incremental detokenizer promises; a UTF-8 character split over byte pieces is never emitted as
// U+FFFD before it completes; and the work per token does not grow with the output. Real text of
// ../shared/data (Chinese law, English abstracts) with LLaMA-2's tokenizer and the byte tokenizer.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ByteTokenizer, PieceType, SentencePieceTokenizer, incrementalDecoder, type Detokenizable, type IncrementalDecoder } from '../../src/tokenizer/index.js';
import { dataDir, llama2ModelPath } from './corpus.js';

const data = dataDir();
const modelPath = llama2ModelPath();
const llama = modelPath ? SentencePieceTokenizer.load(modelPath) : SentencePieceTokenizer.llama2();
const bytes = new ByteTokenizer();

/** Chunks of about `chars` characters of real text: Chinese (patent law) and English (abstracts). */
function texts(chars: number, count: number): { zh: string[]; en: string[] } {
  const cut = (text: string): string[] => {
    const out: string[] = [];
    for (let i = 0; out.length < count && i < text.length; i += chars) out.push(text.slice(i, i + chars));
    return out;
  };
  const zh = readFileSync(join(data!, 'cn-ip-laws', '专利法(2020-10-17).md'), 'utf8');
  const en = readFileSync(join(data!, 'patentsview-abstracts', 'neural_network_patent_query.csv'), 'utf8');
  return { zh: cut(zh.slice(200)), en: cut(en.slice(500)) };
}

/** Feeds `out` after `prompt` one id at a time; checks every prefix against decode(); returns the pushes. */
function checkStream(tok: Detokenizable & { decode(ids: ArrayLike<number>): string }, prompt: number[], out: number[],
  make: () => IncrementalDecoder = () => incrementalDecoder(tok, prompt)): string[] {
  const d = make();
  const base = tok.decode(prompt);
  const pushes: string[] = [];
  let streamed = '';
  for (let i = 0; i < out.length; i++) {
    const piece = d.push(out[i]!);
    pushes.push(piece);
    streamed += piece;
    const full = tok.decode([...prompt, ...out.slice(0, i + 1)]);
    expect(full.startsWith(base)).toBe(true);
    if (streamed + d.pending() !== full.slice(base.length))
      expect.fail(`after output token ${i} (${out[i]}): streamed ${JSON.stringify(streamed)} + held ${JSON.stringify(d.pending())} != ${JSON.stringify(full.slice(base.length))}`);
  }
  const all = tok.decode([...prompt, ...out]).slice(base.length);
  expect(streamed + d.flush()).toBe(all);
  // Nothing streamed is taken back, and real text has no U+FFFD: none was streamed for a split character.
  expect(all.startsWith(streamed)).toBe(true);
  expect(streamed).not.toContain('\uFFFD');
  return pushes;
}

/** Prompt lengths to try: BOS alone, a few tokens, the middle (where decode(prompt) is a prefix of the whole). */
function cuts(tok: { decode(ids: ArrayLike<number>): string }, ids: number[]): number[] {
  const whole = tok.decode(ids);
  return [1, 2, 5, Math.floor(ids.length / 2)].filter((k) => k < ids.length && whole.startsWith(tok.decode(ids.slice(0, k))));
}

describe.skipIf(!data)(`incremental detokenization on real text${data ? '' : ' (skipped: no ../shared/data; set PATENTGPT_DATA)'}`, () => {
  const { zh, en } = data ? texts(160, 6) : { zh: [], en: [] };

  it('LLaMA-2 tokenizer: pushed + held text equals decode(prompt + output) - decode(prompt) for every prefix, Chinese and English', () => {
    let byteRuns = 0;
    let waits = 0;
    let leadingSpace = 0;
    for (const text of [...zh, ...en]) {
      const ids = Array.from(llama.encode(text, { bos: true }));
      for (const k of cuts(llama, ids)) {
        const out = ids.slice(k);
        const pushes = checkStream(llama, ids.slice(0, k), out);
        // Statistics of what the text exercised: byte-fallback characters split over pieces, and
        // a first output piece '▁x' (its space must be streamed: "x" alone was the old bug).
        out.forEach((id, i) => {
          if (llama.pieceType(id) === PieceType.BYTE && pushes[i] === '') waits++;
        });
        byteRuns += out.filter((id) => llama.pieceType(id) === PieceType.BYTE).length;
        if (k > 1 && llama.idToPiece(out[0]!).startsWith('\u2581')) {
          expect(pushes[0]!.startsWith(' ')).toBe(true);
          leadingSpace++;
        }
      }
    }
    expect(byteRuns).toBeGreaterThan(20); // LLaMA-2 spells rare CJK characters in <0xNN> pieces
    expect(waits).toBeGreaterThan(10); // and the decoder waited for their last byte
    expect(leadingSpace).toBeGreaterThan(3);
  });

  it('byte tokenizer: the same for every prefix, with every CJK character split over 3 ids', () => {
    for (const text of [...zh, ...en]) {
      const ids = Array.from(bytes.encode(text, { bos: true }));
      for (const k of cuts(bytes, ids)) {
        const pushes = checkStream(bytes, ids.slice(0, k), ids.slice(k));
        if (/[\u4e00-\u9fff]/.test(text)) expect(pushes.filter((p) => p === '').length).toBeGreaterThan(10);
      }
    }
  });

  it('a tokenizer with decode() only: a window over decode() (vLLM) gives the same text, decoding a bounded number of ids per token', () => {
    let decoded = 0;
    const plain = {
      decode: (ids: ArrayLike<number>): string => {
        decoded += ids.length;
        return llama.decode(ids);
      },
    };
    for (const text of [zh[0]!, en[0]!, zh.join('')]) {
      const ids = Array.from(llama.encode(text, { bos: true }));
      const prompt = ids.slice(0, 3);
      const out = ids.slice(3);
      // The reference decodes of checkStream are counted apart from the decoder's own.
      const d = incrementalDecoder(plain, prompt);
      decoded = 0;
      let streamed = '';
      for (const id of out) streamed += d.push(id);
      streamed += d.flush();
      const perToken = decoded / out.length;
      expect(streamed).toBe(llama.decode(ids).slice(llama.decode(prompt).length));
      expect(perToken).toBeLessThan(30); // about 2 * (context + new ids) per token, whatever the length
    }
  });
});

describe('incremental detokenization, edge cases', () => {
  const byteId = (b: number): number => llama.pieceToId(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const zhong = [0xe4, 0xb8, 0xad].map(byteId); // 中

  it('holds a character split over byte pieces until its last byte, and emits no U+FFFD for it', () => {
    const d = llama.decoder();
    const prompt = Array.from(llama.encode('Claim', { bos: true }));
    for (const id of prompt) d.push(id);
    expect(d.push(zhong[0]!)).toBe('');
    expect(d.pending()).toBe('\uFFFD'); // what decode() would show if the output ended here
    expect(d.push(zhong[1]!)).toBe('');
    expect(d.push(zhong[2]!)).toBe('中');
    expect(d.pending()).toBe('');
    // A prompt that ends inside a character: the first output byte completes it.
    const e = incrementalDecoder(llama, [...prompt, zhong[0]!, zhong[1]!]);
    expect(e.push(zhong[2]!)).toBe('中');
    const b = incrementalDecoder(bytes, [0x41, 0xe4, 0xb8]);
    expect(b.push(0xad)).toBe('中');
  });

  it('the first generated piece keeps its space after a prompt, and loses it after BOS alone (as decode)', () => {
    const a = llama.pieceToId('\u2581a');
    expect(incrementalDecoder(llama, Array.from(llama.encode('Claim', { bos: true }))).push(a)).toBe(' a');
    expect(incrementalDecoder(llama, [llama.bosId]).push(a)).toBe('a');
  });

  it('random ids (bytes that never complete, specials, pieces): pushed + held equals decode() of every prefix, nothing taken back', () => {
    let s = 12345;
    const rand = (n: number): number => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % n;
    };
    const utf8Lead = [0xc3, 0xe4, 0xf0, 0xe0, 0xed, 0xf4, 0x80, 0xbf, 0xff, 0x41];
    for (let trial = 0; trial < 200; trial++) {
      const sp: number[] = [];
      const by: number[] = [];
      for (let i = 0; i < 30; i++) {
        const r = rand(10);
        const b = r < 3 ? utf8Lead[rand(utf8Lead.length)]! : r < 7 ? 0x80 + rand(64) : rand(256);
        if (r === 8) {
          sp.push(rand(3)); // unk, BOS, EOS
          by.push(256 + rand(3));
        } else if (r === 9) {
          sp.push(259 + rand(31741));
          by.push(rand(128));
        } else {
          sp.push(byteId(b));
          by.push(b);
        }
      }
      for (const [tok, ids] of [[llama, sp], [bytes, by]] as const) {
        const d = tok.decoder();
        let streamed = '';
        for (let i = 0; i < ids.length; i++) {
          streamed += d.push(ids[i]!);
          const want = tok.decode(ids.slice(0, i + 1));
          if (streamed + d.pending() !== want)
            expect.fail(`${tok === llama ? 'llama2' : 'byte'} ids ${JSON.stringify(ids.slice(0, i + 1))}: ${JSON.stringify(streamed + d.pending())} != ${JSON.stringify(want)}`);
        }
        expect(tok.decode(ids).startsWith(streamed)).toBe(true);
      }
    }
  });

  it('rejects ids outside the vocabulary as decode() does', () => {
    expect(() => llama.decoder().push(32000)).toThrow(/out of range/);
    expect(() => bytes.decoder().push(259)).toThrow(/outside/);
  });
});
