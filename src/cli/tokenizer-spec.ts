// The --tokenizer option shared by the commands: 'byte', 'llama2', or a tokenizer.model path.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../tokenizer/index.js';

/** 'llama2' (LLaMA-2's vocabulary, no file needed) or a tokenizer.model path that must exist. */
export function sentencePieceFromSpec(spec: string, also = ''): SentencePieceTokenizer {
  if (spec === 'llama2') return SentencePieceTokenizer.llama2();
  if (!existsSync(spec)) throw new PatentGPTError('E_ARGUMENT', `no tokenizer at ${spec}: pass --tokenizer PATH or 'llama2'${also}`);
  return SentencePieceTokenizer.load(spec);
}

/** 'byte', 'llama2' or a path; with no spec, the model folder's tokenizer.model. */
export function tokenizerFromSpec(spec: string | undefined, modelDir: string): ByteTokenizer | SentencePieceTokenizer {
  if (spec === 'byte') return new ByteTokenizer();
  return sentencePieceFromSpec(spec ?? join(modelDir, 'tokenizer.model'), " or 'byte'");
}
