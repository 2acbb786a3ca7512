// The data section of an SFT stage config, validated at the edge: every error names the field
// (`data.sources[1].weight: ...`), unknown fields are refused (a typo must not be silently
// ignored), defaults are filled in, and source paths are resolved against the config's folder.
// The stage config (src/train/config.ts) calls this for a stage of kind "sft".
import { bool, err, fieldMap, num, obj, oneOf, only, validateSources, validateSplitFields } from '../config-fields.js';
import type { SftFileFormat } from './read.js';
import { DEFAULT_FIELDS, SFT_LAYOUTS, type SftFieldMap, type SftLayout } from './records.js';
import type { SftBatching } from './pack.js';

export interface SftDataConfig {
  sources: { path: string; weight: number; format?: SftFileFormat; layout?: SftLayout; fields?: SftFieldMap; defaultSystem?: string }[];
  valFraction: number;
  splitSeed: number;
  /** Longest example in tokens (truncated beyond); default: the stage's seqLen. */
  maxLength?: number;
  trainOnPrompt: boolean;
  packing: SftBatching;
  strategy: 'greedy' | 'bfd';
  shuffle: boolean;
}

/**
 * Validates `data` of an SFT stage config. `field` prefixes the messages (default "data");
 * `baseDir` is the config file's folder (default: the working directory).
 */
export function validateSftDataConfig(raw: unknown, opts: { field?: string; baseDir?: string } = {}): SftDataConfig {
  const F = opts.field ?? 'data';
  const d = obj(raw, F);
  only(d, F, ['sources', 'valFraction', 'splitSeed', 'maxLength', 'trainOnPrompt', 'packing', 'strategy', 'shuffle']);
  const sources = validateSources(d, F, opts.baseDir, {
    what: 'SFT data file (a path, or {path, weight, layout, fields, ...})', allowed: ['path', 'weight', 'format', 'layout', 'fields', 'system'],
    formats: ['jsonl', 'json', 'parquet'] as const, layouts: SFT_LAYOUTS, fieldMap: (v, field): SftFieldMap => fieldMap(v, field, DEFAULT_FIELDS),
    more: (o, sf, common): SftDataConfig['sources'][number] => ({ ...common, weight: o.weight === undefined ? 1 : num(o.weight, `${sf}.weight`, (n) => n >= 0, 'a number >= 0') }),
  });
  if (sources.every((s) => s.weight === 0)) throw err(`${F}.sources`, 'every weight is 0: nothing to train on');
  const split = validateSplitFields(d, F);
  const cfg: SftDataConfig = {
    sources,
    valFraction: split.valFraction,
    splitSeed: split.splitSeed,
    trainOnPrompt: d.trainOnPrompt === undefined ? false : bool(d.trainOnPrompt, `${F}.trainOnPrompt`),
    packing: d.packing === undefined ? 'pack' : oneOf(d.packing, `${F}.packing`, ['pack', 'pad'] as const),
    strategy: d.strategy === undefined ? 'bfd' : oneOf(d.strategy, `${F}.strategy`, ['greedy', 'bfd'] as const),
    shuffle: split.shuffle,
  };
  if (split.maxLength !== undefined) cfg.maxLength = split.maxLength;
  return cfg;
}
