// The --tokenizer option shared by the commands: 'byte', 'llama2', or a tokenizer.model path.
// Without the option a command takes the tokenizer its model folder records (savePretrained
// writes tokenizer.model, or tokenizer_spec.json for the byte tokenizer).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { loadFolderTokenizer } from '../infer/folder-tokenizer.js';
import { TOKENIZER_MODEL_FILE, TOKENIZER_SPEC_FILE } from '../models/pretrained.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../tokenizer/index.js';

/** 'llama2' (LLaMA-2's vocabulary, no file needed) or a tokenizer.model path that must exist. */
export function sentencePieceFromSpec(spec: string, also = ''): SentencePieceTokenizer {
  if (spec === 'llama2') return SentencePieceTokenizer.llama2();
  if (!existsSync(spec)) throw new PatentGPTError('E_ARGUMENT', `no tokenizer at ${spec}: pass --tokenizer PATH or 'llama2'${also}`);
  return SentencePieceTokenizer.load(spec);
}

/** 'byte', 'llama2' or a path; with no spec, the tokenizer the model folder records. */
export function tokenizerFromSpec(spec: string | undefined, modelDir: string): ByteTokenizer | SentencePieceTokenizer {
  if (spec === 'byte') return new ByteTokenizer();
  if (spec !== undefined) return sentencePieceFromSpec(spec, " or 'byte'");
  return folderTokenizer(modelDir, " or 'byte'");
}

/** The tokenizer a model folder records; an error that says what to pass when it records none. */
export function folderTokenizer(modelDir: string, also = ''): ByteTokenizer | SentencePieceTokenizer {
  const tok = loadFolderTokenizer(modelDir);
  if (tok) return tok;
  throw new PatentGPTError('E_ARGUMENT',
    `no tokenizer at ${join(modelDir, TOKENIZER_MODEL_FILE)} (nor ${TOKENIZER_SPEC_FILE}): the folder records none; pass --tokenizer PATH or 'llama2'${also}`);
}
