// A SentencePiece tokenizer.model (the ModelProto protobuf) read and written with protobufjs.
// The schema below is sentencepiece_model.proto (proto2, package sentencepiece) as sentencepiece
// 0.2 ships it, field numbers and defaults included, so a model read here and written back keeps
// every field that sentencepiece knows.
import protobuf from 'protobufjs';
import { PatentGPTError } from '../errors.js';

export const SENTENCEPIECE_MODEL_PROTO = `
syntax = "proto2";
package sentencepiece;

message TrainerSpec {
  enum ModelType { UNIGRAM = 1; BPE = 2; WORD = 3; CHAR = 4; }
  repeated string input = 1;
  optional string input_format = 7;
  optional string model_prefix = 2;
  optional ModelType model_type = 3 [default = UNIGRAM];
  optional int32 vocab_size = 4 [default = 8000];
  repeated string accept_language = 5;
  optional int32 self_test_sample_size = 6 [default = 0];
  optional bool enable_differential_privacy = 50 [default = false];
  optional float differential_privacy_noise_level = 51 [default = 0];
  optional uint64 differential_privacy_clipping_threshold = 52 [default = 0];
  optional float character_coverage = 10 [default = 0.9995];
  optional uint64 input_sentence_size = 11 [default = 0];
  optional bool shuffle_input_sentence = 19 [default = true];
  optional int32 mining_sentence_size = 12;
  optional int32 training_sentence_size = 13;
  optional int32 seed_sentencepiece_size = 14 [default = 1000000];
  optional float shrinking_factor = 15 [default = 0.75];
  optional int32 max_sentence_length = 18 [default = 4192];
  optional int32 num_threads = 16 [default = 16];
  optional int32 num_sub_iterations = 17 [default = 2];
  optional int32 max_sentencepiece_length = 20 [default = 16];
  optional bool split_by_unicode_script = 21 [default = true];
  optional bool split_by_number = 23 [default = true];
  optional bool split_by_whitespace = 22 [default = true];
  optional bool treat_whitespace_as_suffix = 24 [default = false];
  optional bool allow_whitespace_only_pieces = 26 [default = false];
  optional bool split_digits = 25 [default = false];
  optional string pretokenization_delimiter = 53 [default = ""];
  repeated string control_symbols = 30;
  repeated string user_defined_symbols = 31;
  optional string required_chars = 36;
  optional bool byte_fallback = 35 [default = false];
  optional bool vocabulary_output_piece_score = 32 [default = true];
  optional bool hard_vocab_limit = 33 [default = true];
  optional bool use_all_vocab = 34 [default = false];
  optional int32 unk_id = 40 [default = 0];
  optional int32 bos_id = 41 [default = 1];
  optional int32 eos_id = 42 [default = 2];
  optional int32 pad_id = 43 [default = -1];
  optional string unk_piece = 45 [default = "<unk>"];
  optional string bos_piece = 46 [default = "<s>"];
  optional string eos_piece = 47 [default = "</s>"];
  optional string pad_piece = 48 [default = "<pad>"];
  optional string unk_surface = 44 [default = " \u2047 "];
  optional bool train_extremely_large_corpus = 49 [default = false];
  extensions 200 to max;
}

message NormalizerSpec {
  optional string name = 1;
  optional bytes precompiled_charsmap = 2;
  optional bool add_dummy_prefix = 3 [default = true];
  optional bool remove_extra_whitespaces = 4 [default = true];
  optional bool escape_whitespaces = 5 [default = true];
  optional string normalization_rule_tsv = 6;
  extensions 200 to max;
}

message SelfTestData {
  message Sample {
    optional string input = 1;
    optional string expected = 2;
  }
  repeated Sample samples = 1;
  extensions 200 to max;
}

message ModelProto {
  message SentencePiece {
    enum Type { NORMAL = 1; UNKNOWN = 2; CONTROL = 3; USER_DEFINED = 4; BYTE = 6; UNUSED = 5; }
    optional string piece = 1;
    optional float score = 2;
    optional Type type = 3 [default = NORMAL];
    extensions 200 to max;
  }
  repeated SentencePiece pieces = 1;
  optional TrainerSpec trainer_spec = 2;
  optional NormalizerSpec normalizer_spec = 3;
  optional SelfTestData self_test_data = 4;
  optional NormalizerSpec denormalizer_spec = 5;
  extensions 200 to max;
}
`;

/** ModelProto.SentencePiece.Type. */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

/** TrainerSpec.ModelType. */
export type ModelType = 'UNIGRAM' | 'BPE' | 'WORD' | 'CHAR';
const MODEL_TYPES: Record<number, ModelType> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

export interface Piece {
  piece: string;
  /** float32 in the file; merge priority for BPE (higher merges first). */
  score: number;
  type: PieceType;
}

/** The TrainerSpec fields that encoding and decoding depend on. */
export interface TrainerSpec {
  modelType: ModelType;
  vocabSize: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  unkSurface: string;
}

export interface NormalizerSpec {
  /** 'identity' for LLaMA-2; 'nmt_nfkc' etc. carry a precompiled character map. */
  name: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  precompiledCharsmap: Uint8Array;
}

/** A decoded tokenizer.model; `proto` keeps every field of the file for writing it back. */
export interface SentencePieceModel {
  pieces: Piece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
  proto: Record<string, unknown>;
}

let modelProtoType: protobuf.Type | null = null;

/** The protobufjs type of sentencepiece.ModelProto. */
export function modelProtoSchema(): protobuf.Type {
  if (!modelProtoType) {
    const root = protobuf.parse(SENTENCEPIECE_MODEL_PROTO, { keepCase: true }).root;
    modelProtoType = root.lookupType('sentencepiece.ModelProto');
  }
  return modelProtoType;
}

function formatError(what: string, why: string): PatentGPTError {
  return new PatentGPTError('E_FORMAT', `${what} is not a valid SentencePiece tokenizer.model: ${why}`);
}

/**
 * Decodes and checks a tokenizer.model. `what` names the source in error messages. The checks are
 * those sentencepiece makes when it loads a model (ModelInterface::InitializePieces and the
 * processor's own): pieces present, non-empty and unique, exactly one UNKNOWN piece, BYTE pieces
 * only with byte_fallback and then all 256 of them.
 */
export function decodeModelProto(bytes: Uint8Array, what = 'the input'): SentencePieceModel {
  if (bytes.length === 0) throw formatError(what, 'the file is empty');
  const T = modelProtoSchema();
  let obj: Record<string, unknown>;
  try {
    const msg = T.decode(bytes);
    obj = T.toObject(msg, { defaults: true, longs: Number, enums: Number }) as Record<string, unknown>;
  } catch (e) {
    throw formatError(what, `protobuf decoding failed (${(e as Error).message})`);
  }
  const rawPieces = (obj.pieces ?? []) as { piece?: string; score?: number; type?: number }[];
  if (rawPieces.length === 0) throw formatError(what, 'it holds no pieces');
  const ts = (obj.trainer_spec ?? {}) as Record<string, unknown>;
  const ns = (obj.normalizer_spec ?? {}) as Record<string, unknown>;
  const pieces: Piece[] = new Array<Piece>(rawPieces.length);
  const seen = new Map<string, number>();
  let unkId = -1;
  let bytePieces = 0;
  const byteFallback = ts.byte_fallback === true;
  for (let i = 0; i < rawPieces.length; i++) {
    const p = rawPieces[i]!;
    const piece = p.piece ?? '';
    const type = (p.type ?? PieceType.NORMAL) as PieceType;
    const score = p.score ?? 0;
    if (piece.length === 0) throw formatError(what, `piece ${i} is empty`);
    if (!(type >= 1 && type <= 6)) throw formatError(what, `piece ${i} has unknown type ${type}`);
    if (!Number.isFinite(score)) throw formatError(what, `piece ${i} (${JSON.stringify(piece)}) has score ${score}`);
    const dup = seen.get(piece);
    if (dup !== undefined) throw formatError(what, `piece ${JSON.stringify(piece)} appears twice (ids ${dup} and ${i})`);
    seen.set(piece, i);
    if (type === PieceType.UNKNOWN) {
      if (unkId >= 0) throw formatError(what, `two UNKNOWN pieces (ids ${unkId} and ${i})`);
      unkId = i;
    }
    if (type === PieceType.BYTE) {
      if (!byteFallback) throw formatError(what, `byte piece ${JSON.stringify(piece)} found although byte_fallback is false`);
      if (!/^<0x[0-9A-F]{2}>$/.test(piece)) throw formatError(what, `byte piece ${i} is ${JSON.stringify(piece)}, not <0xNN>`);
      bytePieces++;
    }
    pieces[i] = { piece, score, type };
  }
  if (unkId < 0) throw formatError(what, 'it has no UNKNOWN piece');
  if (byteFallback && bytePieces !== 256) throw formatError(what, `byte_fallback is set but ${bytePieces} of the 256 byte pieces are present`);
  const modelType = MODEL_TYPES[(ts.model_type as number | undefined) ?? 1];
  if (!modelType) throw formatError(what, `unknown model_type ${String(ts.model_type)}`);
  const controlId = (name: unknown): number => {
    const id = seen.get(String(name));
    return id !== undefined && pieces[id]!.type === PieceType.CONTROL ? id : -1;
  };
  const trainerSpec: TrainerSpec = {
    modelType,
    vocabSize: (ts.vocab_size as number | undefined) ?? pieces.length,
    byteFallback,
    treatWhitespaceAsSuffix: ts.treat_whitespace_as_suffix === true,
    unkId,
    bosId: controlId(ts.bos_piece ?? '<s>'),
    eosId: controlId(ts.eos_piece ?? '</s>'),
    padId: controlId(ts.pad_piece ?? '<pad>'),
    unkPiece: String(ts.unk_piece ?? '<unk>'),
    bosPiece: String(ts.bos_piece ?? '<s>'),
    eosPiece: String(ts.eos_piece ?? '</s>'),
    padPiece: String(ts.pad_piece ?? '<pad>'),
    unkSurface: String(ts.unk_surface ?? ' \u2047 '),
  };
  const charsmap = ns.precompiled_charsmap instanceof Uint8Array ? ns.precompiled_charsmap : new Uint8Array(0);
  const normalizerSpec: NormalizerSpec = {
    name: String(ns.name ?? ''),
    addDummyPrefix: ns.add_dummy_prefix !== false,
    removeExtraWhitespaces: ns.remove_extra_whitespaces !== false,
    escapeWhitespaces: ns.escape_whitespaces !== false,
    precompiledCharsmap: charsmap,
  };
  return { pieces, trainerSpec, normalizerSpec, proto: obj };
}

/**
 * Serialises a model as a tokenizer.model. Fields of `model.proto` not covered by `pieces`,
 * `trainerSpec` and `normalizerSpec` (trainer options, self-test data) are written back unchanged.
 */
export function encodeModelProto(model: SentencePieceModel): Uint8Array {
  const T = modelProtoSchema();
  const ts = { ...((model.proto.trainer_spec ?? {}) as Record<string, unknown>) };
  const t = model.trainerSpec;
  const MODEL_TYPE_NUMBER: Record<ModelType, number> = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 };
  Object.assign(ts, {
    model_type: MODEL_TYPE_NUMBER[t.modelType],
    vocab_size: model.pieces.length,
    byte_fallback: t.byteFallback,
    treat_whitespace_as_suffix: t.treatWhitespaceAsSuffix,
    unk_id: t.unkId,
    bos_id: t.bosId,
    eos_id: t.eosId,
    pad_id: t.padId,
    unk_piece: t.unkPiece,
    bos_piece: t.bosPiece,
    eos_piece: t.eosPiece,
    pad_piece: t.padPiece,
    unk_surface: t.unkSurface,
  });
  const n = model.normalizerSpec;
  const ns = {
    ...((model.proto.normalizer_spec ?? {}) as Record<string, unknown>),
    name: n.name,
    add_dummy_prefix: n.addDummyPrefix,
    remove_extra_whitespaces: n.removeExtraWhitespaces,
    escape_whitespaces: n.escapeWhitespaces,
    precompiled_charsmap: n.precompiledCharsmap,
  };
  const obj = {
    ...model.proto,
    pieces: model.pieces.map((p) => ({ piece: p.piece, score: p.score, type: p.type })),
    trainer_spec: ts,
    normalizer_spec: ns,
  };
  const msg = T.fromObject(obj);
  return T.encode(msg).finish();
}
