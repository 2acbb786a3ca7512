// The tokenizer a model folder records (savePretrained writes tokenizer.model, or
// tokenizer_spec.json for the byte tokenizer), loaded: what the engine, the server and the CLI
// use when they are not given one.
import { readFolderTokenizer } from '../models/index.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../tokenizer/index.js';

/** The folder's recorded tokenizer, or null when it records none. */
export function loadFolderTokenizer(dir: string): ByteTokenizer | SentencePieceTokenizer | null {
  const rec = readFolderTokenizer(dir);
  if (rec?.type === 'byte') return new ByteTokenizer();
  if (rec?.type === 'sentencepiece') return SentencePieceTokenizer.load(rec.path);
  return null;
}
