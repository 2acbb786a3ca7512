// The data section of a preference stage config (dpo, reward, ...), validated at the edge: every
// error names the field (`data.sources[1].fields.chosen: ...`), unknown fields are refused,
// defaults are filled in, and source paths are resolved against the config's folder.
import { fieldMap, num, obj, oneOf, only, str, validateSources, validateSplitFields } from '../config-fields.js';
import { PREFERENCE_FORMATS, type PreferenceFileFormat } from './read.js';
import { DEFAULT_PREFERENCE_FIELDS, PREFERENCE_LAYOUTS, type PreferenceFieldMap, type PreferenceLayout } from './records.js';

export interface PreferenceDataConfig {
  sources: {
    path: string; format?: PreferenceFileFormat; layout?: PreferenceLayout; fields?: PreferenceFieldMap; promptTemplate?: string; defaultSystem?: string; limit?: number;
  }[];
  valFraction: number;
  splitSeed: number;
  /** Longest side (prompt + response) in tokens, truncated beyond; default: the stage's seqLen. */
  maxLength?: number;
  /** Which end of a side longer than maxLength is kept (TRL's truncation_mode; absent: keep_start). */
  truncation?: 'keep_start' | 'keep_end';
  /** Shuffle the pairs every epoch (default true; false for parity runs). */
  shuffle: boolean;
}

/** Validates `data` of a preference stage config. `field` prefixes the messages (default "data"); `baseDir` resolves paths. */
export function validatePreferenceDataConfig(raw: unknown, opts: { field?: string; baseDir?: string } = {}): PreferenceDataConfig {
  const F = opts.field ?? 'data';
  const d = obj(raw, F);
  only(d, F, ['sources', 'valFraction', 'splitSeed', 'maxLength', 'truncation', 'shuffle']);
  const sources = validateSources(d, F, opts.baseDir, {
    what: 'preference data file (a path, or {path, layout, fields, promptTemplate, ...})', allowed: ['path', 'format', 'layout', 'fields', 'promptTemplate', 'system', 'limit'],
    formats: PREFERENCE_FORMATS, layouts: PREFERENCE_LAYOUTS, fieldMap: (v, field): PreferenceFieldMap => fieldMap(v, field, DEFAULT_PREFERENCE_FIELDS),
    more: (o, sf, common): PreferenceDataConfig['sources'][number] => {
      const out: PreferenceDataConfig['sources'][number] = { ...common };
      if (o.promptTemplate !== undefined) out.promptTemplate = str(o.promptTemplate, `${sf}.promptTemplate`);
      if (o.limit !== undefined) out.limit = num(o.limit, `${sf}.limit`, (n) => Number.isInteger(n) && n >= 1, 'an integer >= 1');
      return out;
    },
  });
  const { maxLength, ...split } = validateSplitFields(d, F);
  const cfg: PreferenceDataConfig = { sources, ...split };
  if (d.truncation !== undefined) cfg.truncation = oneOf(d.truncation, `${F}.truncation`, ['keep_start', 'keep_end'] as const);
  if (maxLength !== undefined) cfg.maxLength = maxLength;
  return cfg;
}
