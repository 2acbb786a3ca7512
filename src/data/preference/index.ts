// Preference data (DPO, reward models): pairs of a prompt and two responses, one preferred.
//
//   records.ts   normalizePreference(record, {layout, fields, promptTemplate}) -> PreferencePair
//                {prompt, chosen, rejected} as chat messages; layouts: explicit prompt/chosen/
//                rejected (strings or messages; implicit prompt), LLaMA-Factory's sharegpt
//                (conversations + chosen/rejected messages), hh-rlhf transcripts. Skips counted
//                by PreferenceSkipReason in a PreferenceSkipCounter.
//   read.ts      readPreferenceRecords(file, format?): JSONL, JSON, Parquet, CSV/TSV (.gz too).
//   dataset.ts   readPreferencePairs({sources, valFraction, splitSeed}) -> {train, val, skipped,
//                sources}: pairs as messages, split by a content hash (untokenized);
//                loadPreferenceData({...that, renderer, maxLength}) -> the same tokenized into
//                PreferenceExample {chosen, rejected: {ids, responseMask, responseTokens}}.
//   tokenize.ts  tokenizePair(renderer, pair, source, {maxLength}): each side rendered whole by
//                the chat template (a ChatRenderer, as SFT: sftRenderer in src/train/stages/sft.ts),
//                only the response's assistant tokens masked in.
//   stream.ts    PreferenceBatchStream(examples, {batchSize, seed, shuffle, rank, worldSize}):
//                next() -> a PreferenceBatch (2B packed sequences: chosen sides, then rejected;
//                targets on response tokens only; `scored` rows/ids/seq to sum log-probs per
//                sequence; a sequence's last token at cuSeqlens[s + 1] - 1), position()/restore()
//                for bit-exact resume; preferenceEvalBatches(examples, B) for validation.
//   config.ts    validatePreferenceDataConfig(raw, {field, baseDir}) for a stage's `data`.
export {
  DEFAULT_PREFERENCE_FIELDS, PREFERENCE_LAYOUTS, PREFERENCE_SKIP_REASONS, PreferenceSkipCounter, detectPreferenceLayout, fillTemplate, normalizePreference, parseTranscript,
  type NormalizedPair, type PreferenceFieldMap, type PreferenceLayout, type PreferenceNormalizeOptions, type PreferencePair, type PreferenceSkip, type PreferenceSkipReason,
} from './records.js';
export { PREFERENCE_FORMATS, parseDelimited, preferenceFileFormat, readPreferenceRecords, type PreferenceFileFormat, type RawPreferenceItem } from './read.js';
export { templatePreferenceRenderer, tokenizePair, type PreferenceExample, type PreferenceRenderer, type PreferenceSequence, type TokenizedPair, type TokenizeOptions } from './tokenize.js';
export {
  isPreferenceValidation, loadPreferenceData, readPreferencePairs,
  type PreferenceData, type PreferenceDataOptions, type PreferencePairs, type PreferenceReadOptions, type PreferenceSource, type PreferenceSourceStats, type SourcedPair,
} from './dataset.js';
export {
  PreferenceBatchStream, collatePairs, preferenceEvalBatches,
  type PreferenceBatch, type PreferenceStreamBatch, type PreferenceStreamOptions, type PreferenceStreamPosition,
} from './stream.js';
export { validatePreferenceDataConfig, type PreferenceDataConfig } from './config.js';
