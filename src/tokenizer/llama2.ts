// LLaMA-2's tokenizer.model rebuilt with no file at hand. The vocabulary (32,000 pieces in id
// order) is the one the npm package llama-tokenizer-js embeds as base64 text; everything else is
// a rule that holds for every piece of LLaMA-2's tokenizer.model (checked against the file by
// test/tokenizer/model.test.ts): 0 <unk> UNKNOWN, 1 <s> and 2 </s> CONTROL, 3..258 <0x00>..<0xFF>
// BYTE with score 0, then NORMAL pieces where id i scores -(i - 259), except pieces made only of
// '▁', which score -1e9. The specs are LLaMA-2's (BPE, byte fallback, identity normalizer).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PatentGPTError } from '../errors.js';
import { PieceType, type Piece, type SentencePieceModel } from './model.js';

export const LLAMA2_VOCAB_SIZE = 32000;

/** The 32,000 LLaMA-2 pieces in id order, read from llama-tokenizer-js without running it. */
export function llama2Vocabulary(): string[] {
  let file: string;
  try {
    file = createRequire(import.meta.url).resolve('llama-tokenizer-js');
  } catch {
    throw new PatentGPTError('E_ARGUMENT', 'llama2(): the npm package llama-tokenizer-js is not installed (npm install llama-tokenizer-js), or load a tokenizer.model instead');
  }
  const source = readFileSync(file, 'utf8');
  const m = /const llama_vocab_base64 = "([A-Za-z0-9+/=]+)"/.exec(source);
  if (!m) throw new PatentGPTError('E_FORMAT', `llama2(): no llama_vocab_base64 in ${file}; this version of llama-tokenizer-js is not supported`);
  const vocab = Buffer.from(m[1]!, 'base64').toString('utf8').split('\n');
  if (vocab.length !== LLAMA2_VOCAB_SIZE) {
    throw new PatentGPTError('E_FORMAT', `llama2(): llama-tokenizer-js holds ${vocab.length} pieces, expected ${LLAMA2_VOCAB_SIZE}`);
  }
  return vocab;
}

export function llama2Model(): SentencePieceModel {
  const vocab = llama2Vocabulary();
  const pieces: Piece[] = vocab.map((piece, id) => {
    if (id === 0) return { piece, score: 0, type: PieceType.UNKNOWN };
    if (id <= 2) return { piece, score: 0, type: PieceType.CONTROL };
    if (id <= 258) return { piece, score: 0, type: PieceType.BYTE };
    return { piece, score: /^\u2581+$/.test(piece) ? -1e9 : -(id - 259), type: PieceType.NORMAL };
  });
  const expect = (id: number, piece: string): void => {
    if (pieces[id]!.piece !== piece) throw new PatentGPTError('E_FORMAT', `llama2(): piece ${id} is ${JSON.stringify(pieces[id]!.piece)}, expected ${piece}`);
  };
  expect(0, '<unk>');
  expect(1, '<s>');
  expect(2, '</s>');
  for (let b = 0; b < 256; b++) expect(3 + b, `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  // The trainer options LLaMA-2's file records (paths aside), so serialize() writes a faithful model.
  const trainerProto = {
    model_type: 2,
    vocab_size: LLAMA2_VOCAB_SIZE,
    self_test_sample_size: 0,
    input_format: 'text',
    character_coverage: 0.99995,
    input_sentence_size: 200000000,
    seed_sentencepiece_size: 1000000,
    shrinking_factor: 0.75,
    num_threads: 80,
    num_sub_iterations: 2,
    max_sentence_length: 4192,
    shuffle_input_sentence: true,
    max_sentencepiece_length: 16,
    split_by_unicode_script: true,
    split_by_whitespace: true,
    split_by_number: true,
    treat_whitespace_as_suffix: false,
    split_digits: true,
    allow_whitespace_only_pieces: true,
    vocabulary_output_piece_score: true,
    hard_vocab_limit: true,
    use_all_vocab: false,
    byte_fallback: true,
    required_chars: '',
    unk_id: 0,
    bos_id: 1,
    eos_id: 2,
    pad_id: -1,
  };
  return {
    pieces,
    trainerSpec: llamaTrainerSpec(LLAMA2_VOCAB_SIZE, true),
    normalizerSpec: {
      name: 'identity',
      addDummyPrefix: true,
      removeExtraWhitespaces: false,
      escapeWhitespaces: true,
      precompiledCharsmap: new Uint8Array(0),
    },
    proto: { trainer_spec: trainerProto, normalizer_spec: {} },
  };
}

/** LLaMA-2's special pieces and ids (unk 0, bos 1, eos 2, no pad) for a BPE model of `vocabSize`. */
export function llamaTrainerSpec(vocabSize: number, byteFallback: boolean): SentencePieceModel['trainerSpec'] {
  return {
    modelType: 'BPE',
    vocabSize,
    byteFallback,
    treatWhitespaceAsSuffix: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkPiece: '<unk>',
    bosPiece: '<s>',
    eosPiece: '</s>',
    padPiece: '<pad>',
    unkSurface: ' \u2047 ',
  };
}
