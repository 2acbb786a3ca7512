// Vocabulary merge (the paper's LLaMA-2 + IP tokenizer, 55,296 pieces): the base model is kept
// as is (ids, pieces, scores, specs), and the domain model's NORMAL pieces that the base lacks are
// appended in the domain model's score order (its merge order, then its characters) until the
// target size, each preceded by those of its characters that are no piece yet. Appended pieces score below every base piece, so base merges keep priority and
// the base's encodings change only where a domain piece applies.
import { PatentGPTError } from '../errors.js';
import { PieceType, type Piece, type SentencePieceModel } from './model.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

export interface MergeStats {
  baseSize: number;
  /** Domain NORMAL pieces, and how many of them the base already has. */
  domainPieces: number;
  alreadyInBase: number;
  appended: number;
  /** Of the appended pieces, single characters added ahead of a piece that holds them. */
  charactersAdded: number;
  size: number;
  /** Score of the first appended piece (the next ones go down by 1). */
  firstScore: number;
}

export interface MergeResult {
  tokenizer: SentencePieceTokenizer;
  stats: MergeStats;
}

function modelOf(t: SentencePieceTokenizer | SentencePieceModel): SentencePieceModel {
  return t instanceof SentencePieceTokenizer ? t.model : t;
}

/**
 * Appends the domain pieces missing from `base` up to `targetSize` pieces. Throws when the
 * target is below the base's size or the domain model has too few new pieces to reach it.
 */
export function mergeVocabularies(
  base: SentencePieceTokenizer | SentencePieceModel,
  domain: SentencePieceTokenizer | SentencePieceModel,
  targetSize: number,
): MergeResult {
  const b = modelOf(base);
  const d = modelOf(domain);
  if (b.trainerSpec.modelType !== 'BPE' || d.trainerSpec.modelType !== 'BPE') {
    throw new PatentGPTError('E_ARGUMENT', `mergeVocabularies: both models must be BPE (base ${b.trainerSpec.modelType}, domain ${d.trainerSpec.modelType})`);
  }
  if (!Number.isInteger(targetSize) || targetSize < b.pieces.length) {
    throw new PatentGPTError('E_ARGUMENT', `mergeVocabularies: targetSize ${targetSize} must be an integer >= the base's ${b.pieces.length} pieces`);
  }
  const inBase = new Set(b.pieces.map((p) => p.piece));
  const have = new Set(inBase);
  // The lowest base score, leaving out the -1e9 of pieces made only of '▁' (LLaMA-2's).
  let low = 0;
  for (const p of b.pieces) if (p.type === PieceType.NORMAL && p.score > -1e8 && p.score < low) low = p.score;
  const firstScore = Math.floor(low) - 1;

  const order = d.pieces
    .map((p, id) => ({ p, id }))
    .filter(({ p }) => p.type === PieceType.NORMAL)
    .sort((x, y) => y.p.score - x.p.score || x.id - y.id);
  const pieces: Piece[] = b.pieces.map((p) => ({ ...p }));
  const append = (piece: string): void => {
    pieces.push({ piece, score: firstScore - (pieces.length - b.pieces.length), type: PieceType.NORMAL });
    have.add(piece);
  };
  let already = 0;
  let charsAdded = 0;
  for (const { p } of order) {
    if (have.has(p.piece)) {
      if (inBase.has(p.piece)) already++;
      continue;
    }
    // The piece's characters that are no piece yet come with it, so every character of every
    // piece is a piece: HF's BPE (tokenizer.json) can only merge symbols that have an id.
    const chars = [...new Set(p.piece)].filter((c) => c !== p.piece && !have.has(c));
    if (pieces.length + chars.length + 1 > targetSize) continue;
    for (const c of chars) append(c);
    charsAdded += chars.length;
    append(p.piece);
  }
  if (pieces.length < targetSize) {
    throw new PatentGPTError(
      'E_ARGUMENT',
      `mergeVocabularies: the domain model adds only ${pieces.length - b.pieces.length} new pieces, ${b.pieces.length} + that = ${pieces.length} < target ${targetSize}; train it with a larger vocabulary or lower the target`,
    );
  }
  const model: SentencePieceModel = {
    pieces,
    trainerSpec: { ...b.trainerSpec, vocabSize: pieces.length },
    normalizerSpec: { ...b.normalizerSpec },
    proto: b.proto,
  };
  return {
    tokenizer: new SentencePieceTokenizer(model, 'merged'),
    stats: {
      baseSize: b.pieces.length,
      domainPieces: order.length,
      alreadyInBase: already,
      appended: pieces.length - b.pieces.length,
      charactersAdded: charsAdded,
      size: pieces.length,
      firstScore,
    },
  };
}
