// Preference data sets: several files, each read and normalised into pairs, split into training
// and validation by a hash of the pair's content (hashUniform(splitSeed, pair) < valFraction: the
// split does not move when files are reordered or grow, and a duplicated pair never sits on both
// sides), then tokenized. Malformed records are counted by reason, never thrown.
import { PatentGPTError } from '../../errors.js';
import { hashUniform, permutation } from '../../util/rng.js';
import type { RecordSource } from '../sft/records.js';
import { readPreferenceRecords, type PreferenceFileFormat } from './read.js';
import { normalizePreference, PreferenceSkipCounter, type PreferenceFieldMap, type PreferenceLayout, type PreferencePair } from './records.js';
import { tokenizePair, type PreferenceExample, type PreferenceRenderer, type TokenizeOptions } from './tokenize.js';

export interface PreferenceSource {
  path: string;
  format?: PreferenceFileFormat;
  /** Default: detected per record. */
  layout?: PreferenceLayout;
  fields?: PreferenceFieldMap;
  /** The prompt from the record's fields ("{patent_title}"); see records.ts. */
  promptTemplate?: string;
  /** System prompt for this source's pairs that have none. */
  defaultSystem?: string;
  /** Read at most this many pairs of the source (after skips); default: all. */
  limit?: number;
}

export interface PreferenceReadOptions {
  sources: PreferenceSource[];
  /** Share of pairs held out for validation, in [0, 1) (default 0). */
  valFraction?: number;
  /** Seed of the split hash (default 0). */
  splitSeed?: number;
}

export interface PreferenceSourceStats {
  path: string;
  records: number;
  train: number;
  val: number;
  skipped: number;
}

export interface SourcedPair extends PreferencePair {
  source: RecordSource;
}

export interface PreferencePairs {
  train: SourcedPair[];
  val: SourcedPair[];
  skipped: PreferenceSkipCounter;
  sources: PreferenceSourceStats[];
}

/** Is this pair in the validation split? */
export function isPreferenceValidation(pair: PreferencePair, valFraction: number, splitSeed = 0): boolean {
  return valFraction > 0 && hashUniform(splitSeed, 'preference-split', JSON.stringify([pair.prompt, pair.chosen, pair.rejected])) < valFraction;
}

function validate(opts: PreferenceReadOptions): void {
  if (opts.sources.length === 0) throw new PatentGPTError('E_CONFIG', 'field "sources" must name at least one preference data file');
  const v = opts.valFraction ?? 0;
  if (!(v >= 0 && v < 1)) throw new PatentGPTError('E_CONFIG', `field "valFraction" must be in [0, 1), got ${v}`);
  opts.sources.forEach((s, i) => {
    if (s.limit !== undefined && !(Number.isInteger(s.limit) && s.limit >= 1)) throw new PatentGPTError('E_CONFIG', `field "sources[${i}].limit" must be an integer >= 1, got ${s.limit}`);
  });
}

/** Reads, normalises and splits every source, in file order. */
export async function readPreferencePairs(opts: PreferenceReadOptions): Promise<PreferencePairs> {
  validate(opts);
  const valFraction = opts.valFraction ?? 0;
  const skipped = new PreferenceSkipCounter();
  const out: PreferencePairs = { train: [], val: [], skipped, sources: [] };
  for (const src of opts.sources) {
    const st: PreferenceSourceStats = { path: src.path, records: 0, train: 0, val: 0, skipped: 0 };
    for await (const item of readPreferenceRecords(src.path, src.format)) {
      if (src.limit !== undefined && st.train + st.val >= src.limit) break;
      st.records++;
      if (!item.ok) {
        skipped.add(item.skip);
        st.skipped++;
        continue;
      }
      const n = normalizePreference(item.record, { layout: src.layout, fields: src.fields, promptTemplate: src.promptTemplate, defaultSystem: src.defaultSystem });
      if (!n.ok) {
        skipped.add({ ...item.source, reason: n.reason, detail: n.detail });
        st.skipped++;
        continue;
      }
      const pair: SourcedPair = { ...n.pair, source: item.source };
      if (isPreferenceValidation(n.pair, valFraction, opts.splitSeed ?? 0)) {
        out.val.push(pair);
        st.val++;
      } else {
        out.train.push(pair);
        st.train++;
      }
    }
    out.sources.push(st);
  }
  return out;
}

export interface PreferenceDataOptions extends PreferenceReadOptions, TokenizeOptions {
  renderer: PreferenceRenderer;
  /** Shuffle the training pairs once by seed (default false: file order, as TRL without shuffling). */
  shuffle?: boolean;
  seed?: number;
}

export interface PreferenceData {
  train: PreferenceExample[];
  val: PreferenceExample[];
  skipped: PreferenceSkipCounter;
  /** Pairs cut to maxLength (kept: both responses still have tokens). */
  truncated: number;
  sources: PreferenceSourceStats[];
}

/** readPreferencePairs, then each pair tokenized (pairs the template refuses or that do not fit are skipped and counted). */
export async function loadPreferenceData(opts: PreferenceDataOptions): Promise<PreferenceData> {
  const pairs = await readPreferencePairs(opts);
  let truncated = 0;
  const tok = (list: SourcedPair[], split: 'train' | 'val'): PreferenceExample[] => {
    const out: PreferenceExample[] = [];
    for (const p of list) {
      const t = tokenizePair(opts.renderer, p, p.source, opts);
      if (!t.ok) {
        pairs.skipped.add({ ...p.source, reason: t.reason, detail: t.detail });
        const st = pairs.sources.find((s) => s.path === p.source.file);
        if (st) {
          st.skipped++;
          st[split]--;
        }
        continue;
      }
      if (t.example.truncated) truncated++;
      out.push(t.example);
    }
    return out;
  };
  const train = tok(pairs.train, 'train');
  const val = tok(pairs.val, 'val');
  const order = opts.shuffle ? Array.from(permutation(train.length, opts.seed ?? 0, 'preference-order'), (i) => train[i]!) : train;
  return { train: order, val, skipped: pairs.skipped, truncated, sources: pairs.sources };
}
