// LLaMA-2's model with one feature changed each: the model variants that encode, the native batch
// encoder and sentencepiece are compared on (model.test.ts, pool.test.ts).
import { decodeModelProto, encodeModelProto } from '../../src/tokenizer/model.js';
import { PieceType, SentencePieceTokenizer, type SentencePieceModel } from '../../src/tokenizer/index.js';

export function variants(): [string, SentencePieceModel][] {
  const base = SentencePieceTokenizer.llama2().serialize();
  const user = decodeModelProto(base);
  user.pieces.push(
    { piece: '<patent>', score: 0, type: PieceType.USER_DEFINED },
    { piece: '专利法', score: 0, type: PieceType.USER_DEFINED },
    { piece: '专利', score: 0, type: PieceType.USER_DEFINED },
    { piece: 'xyzzy', score: 0, type: PieceType.USER_DEFINED },
  );
  const unused = decodeModelProto(base);
  for (const p of ['▁the', 'he', 'ese', '▁th', 'ing', '▁in', '专利']) {
    const i = unused.pieces.findIndex((q) => q.piece === p);
    if (i >= 0) unused.pieces[i]!.type = PieceType.UNUSED;
  }
  const noBytes = decodeModelProto(base);
  noBytes.pieces = noBytes.pieces.filter((p) => p.type !== PieceType.BYTE);
  noBytes.trainerSpec.byteFallback = false;
  const squeeze = decodeModelProto(base);
  squeeze.normalizerSpec.removeExtraWhitespaces = true;
  const noPrefix = decodeModelProto(base);
  noPrefix.normalizerSpec.addDummyPrefix = false;
  // Through the file format, so the checks of load() apply.
  const checked = (m: SentencePieceModel): SentencePieceModel => decodeModelProto(encodeModelProto(m));
  return [
    ['user-defined pieces', checked(user)],
    ['UNUSED pieces', checked(unused)],
    ['no byte fallback', checked(noBytes)],
    ['remove_extra_whitespaces', checked(squeeze)],
    ['no dummy prefix', checked(noPrefix)],
  ];
}
