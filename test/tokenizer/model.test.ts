// Loading, checking and writing tokenizer.model files; models with user-defined, UNUSED pieces
// and no byte fallback against sentencepiece where it is installed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { decodeModelProto, encodeModelProto, modelProtoSchema } from '../../src/tokenizer/model.js';
import { PieceType, SentencePieceTokenizer, type SentencePieceModel } from '../../src/tokenizer/index.js';
import { dataDir, firstDifference, llama2ModelPath, PythonPeer, sentencepiecePython } from './corpus.js';
import { variants } from './variants.js';

const modelPath = llama2ModelPath();
const noFile = modelPath ? '' : ' (skipped: no ../shared/data tokenizer.model; set PATENTGPT_DATA)';

function expectError(f: () => unknown, code: string, message: RegExp): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(PatentGPTError);
    expect((e as PatentGPTError).code).toBe(code);
    expect((e as Error).message).toMatch(message);
    return;
  }
  expect.fail('no error thrown');
}

const sample = [
  'The present invention relates to a method for <patent> classification.',
  '根据专利法第二十二条，授予专利权的发明应当具备新颖性、创造性和实用性。',
  '  leading spaces, tabs\tand\nnewlines 😀 é ﬁ ①',
  'unused pieces: the them there these those',
];

describe('tokenizer.model', () => {
  it.skipIf(!modelPath)(`loads LLaMA-2's file, from a path and from bytes${noFile}`, () => {
    const t = SentencePieceTokenizer.load(modelPath!);
    const u = SentencePieceTokenizer.load(readFileSync(modelPath!));
    for (const tok of [t, u]) {
      expect(tok.vocabSize).toBe(32000);
      expect([tok.unkId, tok.bosId, tok.eosId, tok.padId]).toEqual([0, 1, 2, -1]);
      expect(tok.idToPiece(29871)).toBe('\u2581');
      expect(tok.pieceToId('\u2581the')).toBe(278);
      expect(tok.pieceToId('no such piece')).toBe(0);
      expect(tok.pieceType(3)).toBe(PieceType.BYTE);
      expect(tok.score(261)).toBe(-2);
      expect(tok.model.trainerSpec).toMatchObject({ modelType: 'BPE', byteFallback: true, vocabSize: 32000 });
      expect(tok.model.normalizerSpec).toMatchObject({ name: 'identity', addDummyPrefix: true, removeExtraWhitespaces: false, escapeWhitespaces: true });
    }
  });

  it.skipIf(!modelPath)(`llama2() from llama-tokenizer-js is LLaMA-2's tokenizer.model, piece for piece${noFile}`, () => {
    const file = SentencePieceTokenizer.load(modelPath!).model;
    const pkg = SentencePieceTokenizer.llama2().model;
    expect(pkg.pieces.length).toBe(file.pieces.length);
    for (let i = 0; i < file.pieces.length; i++) expect(pkg.pieces[i], `piece ${i}`).toEqual(file.pieces[i]);
    expect(pkg.trainerSpec).toEqual(file.trainerSpec);
    expect({ ...pkg.normalizerSpec, precompiledCharsmap: null }).toEqual({ ...file.normalizerSpec, precompiledCharsmap: null });
  });

  it('serialize() writes a model that reloads to the same pieces, specs and encodings', () => {
    const t = SentencePieceTokenizer.llama2();
    const again = SentencePieceTokenizer.load(t.serialize());
    expect(again.model.pieces).toEqual(t.model.pieces);
    expect(again.model.trainerSpec).toEqual(t.model.trainerSpec);
    for (const s of sample) expect(Array.from(again.encode(s))).toEqual(Array.from(t.encode(s)));
    // Fields outside what the tokenizer reads survive too.
    expect((again.model.proto.trainer_spec as Record<string, unknown>).split_digits).toBe(true);
    expect((again.model.proto.trainer_spec as Record<string, unknown>).character_coverage).toBeCloseTo(0.99995, 6);
  });

  it('a corrupt or foreign file is a clear E_FORMAT error', () => {
    const good = SentencePieceTokenizer.llama2().serialize();
    const bad = /not a valid SentencePiece tokenizer\.model/;
    expectError(() => SentencePieceTokenizer.load(new Uint8Array(0)), 'E_FORMAT', /empty/);
    expectError(() => SentencePieceTokenizer.load(good.subarray(0, 1001)), 'E_FORMAT', bad);
    expectError(() => SentencePieceTokenizer.load(good.subarray(0, good.length >> 1)), 'E_FORMAT', bad);
    expectError(() => SentencePieceTokenizer.load(Buffer.from('{"model": {"type": "BPE", "vocab": {}}}')), 'E_FORMAT', bad);
    expectError(() => SentencePieceTokenizer.load(Buffer.from('PK\x03\x04 this is a zip, not a model')), 'E_FORMAT', bad);
    let seed = 7;
    for (let k = 0; k < 50; k++) {
      const junk = Uint8Array.from({ length: 64 + k * 13 }, () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24));
      expectError(() => SentencePieceTokenizer.load(junk), 'E_FORMAT', bad);
    }
    const edit = (f: (m: SentencePieceModel) => void): Uint8Array => {
      const m = decodeModelProto(good);
      f(m);
      return encodeModelProto(m);
    };
    expectError(() => SentencePieceTokenizer.load(edit((m) => (m.pieces[0]!.type = PieceType.NORMAL))), 'E_FORMAT', /no UNKNOWN piece/);
    expectError(() => SentencePieceTokenizer.load(edit((m) => (m.pieces[500]!.piece = m.pieces[400]!.piece))), 'E_FORMAT', /appears twice/);
    expectError(() => SentencePieceTokenizer.load(edit((m) => (m.trainerSpec.byteFallback = false))), 'E_FORMAT', /byte_fallback is false/);
    expectError(() => SentencePieceTokenizer.load(edit((m) => (m.pieces[9]!.piece = ''))), 'E_FORMAT', /piece 9 is empty/);
    expectError(() => SentencePieceTokenizer.load('/nonexistent/tokenizer.model'), 'E_ARGUMENT', /cannot read/);
  });

  it('ids out of range are E_ARGUMENT', () => {
    const t = SentencePieceTokenizer.llama2();
    expectError(() => t.decode([5, 32000]), 'E_ARGUMENT', /id 32000 at position 1/);
    expectError(() => t.decode([-1]), 'E_ARGUMENT', /out of range/);
    expectError(() => t.decode([1.5]), 'E_ARGUMENT', /out of range/);
    expectError(() => t.idToPiece(40000), 'E_ARGUMENT', /idToPiece/);
  });

  const zh = dataDir() ? join(dataDir()!, 'tokenizers', 'chinese-llama-alpaca', 'chinese_sp.model') : null;
  it.skipIf(!zh)('a UNIGRAM model with an nmt_nfkc normalizer loads (for its pieces) but does not encode', () => {
    const t = SentencePieceTokenizer.load(zh!);
    expect(t.vocabSize).toBe(20000);
    expect(t.model.trainerSpec.modelType).toBe('UNIGRAM');
    expect(t.model.normalizerSpec.name).toBe('nmt_nfkc');
    expectError(() => t.encode('专利'), 'E_UNSUPPORTED', /UNIGRAM/);
  });
});

/** Variants of LLaMA-2 that exercise the rest of bpe_model.cc: user-defined and UNUSED pieces, no byte fallback. */
describe('models beyond LLaMA-2', () => {
  const texts = [
    ...sample,
    '<patent><patent>the专利法专利 xyzzyxyzzy axyzzyb',
    'them the the',
    '\u0000 ⁇ 😀 ѐ',
    '   three leading,  two   inside, trailing   ',
    ' ',
    '    ',
    'end\u2581\u2581',
    '\t tab  ',
  ];
  const roundTrips = (name: string): boolean => name !== 'no byte fallback' && name !== 'remove_extra_whitespaces';
  for (const [name, model] of variants()) {
    it(`${name}: encode equals the reference encoder; decode inverts it where the normalizer keeps the text`, () => {
      const t = new SentencePieceTokenizer(model);
      for (const s of texts) {
        expect(Array.from(t.encode(s)), s).toEqual(Array.from(t.encodeReference(s)));
        if (roundTrips(name) && !s.includes('\u2581')) expect(t.decode(t.encode(s)), `${name}: ${s}`).toBe(s);
      }
    });
  }
  const py = sentencepiecePython();
  const peer = py.python ? new PythonPeer(py.python) : null;
  afterAll(() => peer?.close());
  it.skipIf(!py.python)(`equal sentencepiece's ids${py.python ? '' : ` (skipped: ${py.why})`}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spm-model-'));
    try {
      for (const [name, model] of variants()) {
        const file = join(dir, `${name.replace(/\W+/g, '-')}.model`);
        writeFileSync(file, encodeModelProto(model));
        const expected = await peer!.encode(file, texts);
        const t = SentencePieceTokenizer.load(file);
        texts.forEach((s, i) => expect(firstDifference(t.encode(s), expected[i]!), `${name}: ${s}`).toBe(-1));
        // Decoding, the first piece's space above all, follows the normalizer spec too.
        const seqs = [...expected, [29871, 29871, 7953], [259, 7953], [1, 29871, 7953], [3 + 0x20, 7953], [0, 29871]].map((ids) =>
          ids.filter((id) => id < t.vocabSize),
        );
        const decoded = await peer!.decode(file, seqs);
        seqs.forEach((ids, i) => expect(t.decode(ids), `${name}: decode ${JSON.stringify(ids)}`).toBe(decoded[i]));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('the schema is sentencepiece.ModelProto', () => {
    expect(modelProtoSchema().fullName).toBe('.sentencepiece.ModelProto');
  });
});
