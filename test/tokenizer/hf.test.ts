// The tokenizer.json export against its peers: @huggingface/tokenizers (npm) always, transformers
// (Python, .venv-ref) where installed, both measured against sentencepiece's ids (the committed
// fixture, and live sentencepiece beside transformers).
//
// Measured with LLaMA-2 on lines (every document's lines sampled) and whole documents of
// ../shared/data plus the edge-case corpus (README, "Tokenizer"): the export equals sentencepiece on
// every line and document; the only differences are texts holding a literal "<s>", "</s>" or "<unk>"
// (special tokens for HF). transformers 5.18's own conversion of the same tokenizer.model matches
// no line: it adds no dummy prefix and ranks merges by piece id, so runs of spaces merge '▁▁' first.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import { exportHfTokenizer, hfMerges, SentencePieceTokenizer, toHfTokenizerJson } from '../../src/tokenizer/index.js';
import { dataDir, llama2ModelPath, PythonPeer, sampleLines, textDocuments, wellFormed } from './corpus.js';
import { findPython } from '../../scripts/bench/_peers.js';

interface Fixture {
  encodes: { src: string; text?: string; ids: number[] }[];
}
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'tokenizer-llama2.json'), 'utf8')) as Fixture;
const llama2 = SentencePieceTokenizer.llama2();
/** Texts where HF and sentencepiece must differ: literal special tokens. */
const SPECIAL_LITERAL = /<s>|<\/s>|<unk>/;
const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => a.length === b.length && Array.from(a).every((x, i) => x === b[i]);

describe('tokenizer.json export', () => {
  it('lists every split of every piece into two pieces, by score; runs of ▁ longest first', () => {
    const merges = hfMerges(llama2.model);
    expect(merges[0]).toEqual(['▁', 't']); // piece 259 + 1 ('▁t', score -1) after '▁▁' (-1e9)
    const joined = merges.map(([a, b]) => a + b);
    for (const [a, b] of merges) {
      expect(llama2.pieceToId(a)).toBeGreaterThan(2);
      expect(llama2.pieceToId(b)).toBeGreaterThan(2);
    }
    // Scores never go up along the list.
    for (let i = 1; i < joined.length; i++) expect(llama2.score(llama2.pieceToId(joined[i]!))).toBeLessThanOrEqual(llama2.score(llama2.pieceToId(joined[i - 1]!)));
    const runs = joined.filter((p) => /^▁+$/.test(p));
    expect(runs[0]).toBe('▁'.repeat(16));
    expect(runs.at(-1)).toBe('▁▁');
    const json = toHfTokenizerJson(llama2) as { model: { vocab: Record<string, number> }; added_tokens: { content: string }[] };
    expect(Object.keys(json.model.vocab).length).toBe(32000);
    expect(json.added_tokens.map((t) => t.content)).toEqual(['<unk>', '<s>', '</s>']);
  });

  it('@huggingface/tokenizers (npm) loads it and gives sentencepiece\'s ids on the edge cases and IP text', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hf-export-'));
    try {
      const [jsonPath, configPath] = exportHfTokenizer(llama2, dir);
      const hf = new Tokenizer(JSON.parse(readFileSync(jsonPath!, 'utf8')), JSON.parse(readFileSync(configPath!, 'utf8')));
      let n = 0;
      for (const e of fixture.encodes) {
        if (e.text === undefined) continue;
        // The npm library reads a JS string's lone surrogates differently from TextEncoder: give it well-formed text.
        const ids = hf.encode(wellFormed(e.text), { add_special_tokens: false }).ids;
        if (SPECIAL_LITERAL.test(e.text)) expect(same(ids, e.ids)).toBe(false);
        else expect(ids, JSON.stringify(e.text)).toEqual(e.ids);
        n++;
      }
      expect(n).toBeGreaterThan(500);
      const data = dataDir();
      if (data) {
        for (const doc of textDocuments(data)) {
          for (const line of sampleLines(doc, 1500, 5)) expect(hf.encode(line, { add_special_tokens: false }).ids, line).toEqual(Array.from(llama2.encode(line)));
        }
      }
      expect(hf.encode('Hello world').ids).toEqual([1, 15043, 3186]); // BOS by default, as LLaMA-2's
      expect(hf.decode(hf.encode(' Hello  world\t😀').ids, { skip_special_tokens: true })).toBe(' Hello  world\t😀');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('refuses models it cannot express, with a clear error', () => {
    const m = llama2.model;
    expect(() => toHfTokenizerJson({ ...m, normalizerSpec: { ...m.normalizerSpec, removeExtraWhitespaces: true } })).toThrow(/identity normalizer/);
    expect(() => toHfTokenizerJson({ ...m, pieces: m.pieces.map((p, i) => (i === 400 ? { ...p, type: 5 as const } : p)) })).toThrow(/UNUSED/);
    expect(() => toHfTokenizerJson(llama2, { prefix: 'x' as 'normalizer' })).toThrow(/prefix/);
  });
});

const py = findPython(['transformers', 'sentencepiece']);
const modelPath = llama2ModelPath();
const data = dataDir();
const live = !!(py.python && modelPath && data);
const peer = live ? new PythonPeer(py.python!) : null;
afterAll(() => peer?.close());
describe.skipIf(!live)(`live transformers${live ? '' : ` (skipped: ${!modelPath || !data ? 'no ../shared/data' : py.why})`}`, () => {
  it('transformers loads the export and equals sentencepiece on lines and documents', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hf-live-'));
    try {
      const tok = SentencePieceTokenizer.load(modelPath!);
      exportHfTokenizer(tok, join(dir, 'prepend'));
      exportHfTokenizer(tok, join(dir, 'metaspace'), { prefix: 'metaspace' });
      const texts: string[] = [];
      const kind: string[] = [];
      for (const doc of textDocuments(data!)) {
        for (const line of sampleLines(doc, 3000, 9)) if (line) (texts.push(line), kind.push('lines'));
        if (Buffer.byteLength(doc.text) <= 20_000) (texts.push(doc.text), kind.push('documents'));
      }
      for (const e of fixture.encodes) if (e.text !== undefined) (texts.push(e.text), kind.push('edge cases'));
      const peers = [join(dir, 'prepend'), join(dir, 'prepend', 'tokenizer.json'), join(dir, 'metaspace', 'tokenizer.json'), 'convert'];
      // AutoTokenizer (the same class as PreTrainedTokenizerFast in transformers 5, checked) costs
      // ~7 s of imports: only in the full run.
      const out = await peer!.hf(modelPath!, texts, peers, process.env.PATENTGPT_TOKENIZER_FULL === '1');
      const spm = out.sentencepiece as number[][];
      // Our encoder is the reference here: it equals sentencepiece.
      texts.forEach((t, i) => expect(Array.from(tok.encode(t)), t.slice(0, 80)).toEqual(spm[i]));
      const rates: Record<string, Record<string, string>> = {};
      for (const arg of peers) {
        const got = out[arg]! as number[][];
        const counts: Record<string, [number, number]> = {};
        texts.forEach((t, i) => {
          const c = (counts[kind[i]!] ??= [0, 0]);
          c[1]++;
          if (same(got[i]!, spm[i]!)) c[0]++;
          else if (arg.startsWith(join(dir, 'prepend'))) expect(t, `${arg}: ${JSON.stringify(t.slice(0, 80))}`).toMatch(SPECIAL_LITERAL);
        });
        const name = arg === 'convert' ? 'transformers conversion' : arg.slice(dir.length + 1);
        rates[name] = Object.fromEntries(Object.entries(counts).map(([k, [ok, all]]) => [k, `${ok}/${all}`]));
      }
      expect(out[`${join(dir, 'prepend')}:bos`]!.slice(0, 2)).toEqual([1, spm[0]![0]]);
      (out[`${join(dir, 'prepend')}:decode`] as string[]).forEach((text, i) => expect(text).toBe(tok.decode(spm[i]!)));
      console.log(`tokenizer.json vs sentencepiece (identical / all): ${JSON.stringify(rates)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
