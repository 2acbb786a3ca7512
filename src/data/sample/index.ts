// The built-in sample corpus as token shards, for runs with no data at hand.
import { writeShards, type ShardManifest } from '../shards.js';
import { sampleCorpus, type SampleCorpusOptions } from './generate.js';

export { SAMPLE_TEXTS, type SampleDocument } from './texts.js';
export { sampleCorpus, generatePatent, type SampleCorpusOptions } from './generate.js';

/** What the shard writer needs from a tokenizer. */
export interface TextEncoderLike {
  readonly vocabSize: number;
  readonly name?: string;
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): ArrayLike<number>;
}

/**
 * Tokenizes the sample corpus (BOS + text + EOS per document) into a shard set in `dir`
 * (replacing one that is there) and returns its manifest.
 */
export async function writeSampleShards(dir: string, tokenizer: TextEncoderLike, opts: SampleCorpusOptions = {}): Promise<ShardManifest> {
  const docs = sampleCorpus(opts).map((d) => ({ ids: tokenizer.encode(d.text, { bos: true, eos: true }), category: d.category }));
  return writeShards(dir, docs, { vocabSize: tokenizer.vocabSize, tokenizer: tokenizer.name ?? 'unknown', overwrite: true });
}
