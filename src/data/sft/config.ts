// The data section of an SFT stage config, validated at the edge: every error names the field
// (`data.sources[1].weight: ...`), unknown fields are refused (a typo must not be silently
// ignored), defaults are filled in, and source paths are resolved against the config's folder.
// The stage config (src/train/config.ts) calls this for a stage of kind "sft".
import * as path from 'node:path';
import { PatentGPTError } from '../../errors.js';
import type { SftFileFormat } from './read.js';
import { DEFAULT_FIELDS, SFT_LAYOUTS, type Role, type SftFieldMap, type SftLayout } from './records.js';
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

type Json = Record<string, unknown>;

function err(field: string, why: string): PatentGPTError {
  return new PatentGPTError('E_CONFIG', `${field}: ${why}`);
}

function obj(v: unknown, field: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw err(field, 'must be an object');
  return v as Json;
}

function only(o: Json, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw err(`${field}.${k}`, `unknown field (allowed: ${allowed.join(', ')})`);
}

function oneOf<T extends string>(v: unknown, field: string, values: readonly T[]): T {
  if (typeof v !== 'string' || !values.includes(v as T)) throw err(field, `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

function num(v: unknown, field: string, ok: (n: number) => boolean, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw err(field, `must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw err(field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw err(field, `must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

const ROLES: readonly Role[] = ['system', 'user', 'assistant'];

function fieldMap(v: unknown, field: string): SftFieldMap {
  const o = obj(v, field);
  only(o, field, [...Object.keys(DEFAULT_FIELDS), 'roles']);
  const out: SftFieldMap = {};
  for (const k of Object.keys(DEFAULT_FIELDS) as (keyof typeof DEFAULT_FIELDS)[]) if (k in o) out[k] = str(o[k], `${field}.${k}`);
  if ('roles' in o) {
    const r = obj(o.roles, `${field}.roles`);
    out.roles = Object.fromEntries(Object.entries(r).map(([name, role]) => [name, oneOf(role, `${field}.roles.${name}`, ROLES)]));
  }
  return out;
}

/**
 * Validates `data` of an SFT stage config. `field` prefixes the messages (default "data");
 * `baseDir` is the config file's folder (default: the working directory).
 */
export function validateSftDataConfig(raw: unknown, opts: { field?: string; baseDir?: string } = {}): SftDataConfig {
  const F = opts.field ?? 'data';
  const d = obj(raw, F);
  only(d, F, ['sources', 'valFraction', 'splitSeed', 'maxLength', 'trainOnPrompt', 'packing', 'strategy', 'shuffle']);
  if (!Array.isArray(d.sources) || d.sources.length === 0) throw err(`${F}.sources`, 'must list at least one SFT data file (a path, or {path, weight, layout, fields, ...})');
  const sources = d.sources.map((s: unknown, i) => {
    const sf = `${F}.sources[${i}]`;
    const o: Json = typeof s === 'string' ? { path: s } : obj(s, sf);
    only(o, sf, ['path', 'weight', 'format', 'layout', 'fields', 'system']);
    const out: SftDataConfig['sources'][number] = {
      path: path.resolve(opts.baseDir ?? '.', str(o.path, `${sf}.path`)),
      weight: o.weight === undefined ? 1 : num(o.weight, `${sf}.weight`, (n) => n >= 0, 'a number >= 0'),
    };
    if (o.format !== undefined) out.format = oneOf(o.format, `${sf}.format`, ['jsonl', 'json', 'parquet'] as const);
    if (o.layout !== undefined) out.layout = oneOf(o.layout, `${sf}.layout`, SFT_LAYOUTS);
    if (o.fields !== undefined) out.fields = fieldMap(o.fields, `${sf}.fields`);
    if (o.system !== undefined) out.defaultSystem = str(o.system, `${sf}.system`);
    return out;
  });
  if (sources.every((s) => s.weight === 0)) throw err(`${F}.sources`, 'every weight is 0: nothing to train on');
  const cfg: SftDataConfig = {
    sources,
    valFraction: d.valFraction === undefined ? 0 : num(d.valFraction, `${F}.valFraction`, (n) => n >= 0 && n < 1, 'in [0, 1)'),
    splitSeed: d.splitSeed === undefined ? 0 : num(d.splitSeed, `${F}.splitSeed`, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer'),
    trainOnPrompt: d.trainOnPrompt === undefined ? false : bool(d.trainOnPrompt, `${F}.trainOnPrompt`),
    packing: d.packing === undefined ? 'pack' : oneOf(d.packing, `${F}.packing`, ['pack', 'pad'] as const),
    strategy: d.strategy === undefined ? 'bfd' : oneOf(d.strategy, `${F}.strategy`, ['greedy', 'bfd'] as const),
    shuffle: d.shuffle === undefined ? true : bool(d.shuffle, `${F}.shuffle`),
  };
  if (d.maxLength !== undefined) cfg.maxLength = num(d.maxLength, `${F}.maxLength`, (n) => Number.isInteger(n) && n >= 2, 'an integer >= 2');
  return cfg;
}
