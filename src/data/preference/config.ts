// The data section of a preference stage config (dpo, reward, ...), validated at the edge: every
// error names the field (`data.sources[1].fields.chosen: ...`), unknown fields are refused,
// defaults are filled in, and source paths are resolved against the config's folder.
import * as path from 'node:path';
import { PatentGPTError } from '../../errors.js';
import type { Role } from '../sft/records.js';
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

type Json = Record<string, unknown>;

const err = (field: string, why: string): PatentGPTError => new PatentGPTError('E_CONFIG', `${field}: ${why}`);

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

function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw err(field, `must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

const ROLES: readonly Role[] = ['system', 'user', 'assistant'];

function fieldMap(v: unknown, field: string): PreferenceFieldMap {
  const o = obj(v, field);
  only(o, field, [...Object.keys(DEFAULT_PREFERENCE_FIELDS), 'roles']);
  const out: PreferenceFieldMap = {};
  for (const k of Object.keys(DEFAULT_PREFERENCE_FIELDS) as (keyof typeof DEFAULT_PREFERENCE_FIELDS)[]) if (k in o) out[k] = str(o[k], `${field}.${k}`);
  if ('roles' in o) {
    const r = obj(o.roles, `${field}.roles`);
    out.roles = Object.fromEntries(Object.entries(r).map(([name, role]) => [name, oneOf(role, `${field}.roles.${name}`, ROLES)]));
  }
  return out;
}

/** Validates `data` of a preference stage config. `field` prefixes the messages (default "data"); `baseDir` resolves paths. */
export function validatePreferenceDataConfig(raw: unknown, opts: { field?: string; baseDir?: string } = {}): PreferenceDataConfig {
  const F = opts.field ?? 'data';
  const d = obj(raw, F);
  only(d, F, ['sources', 'valFraction', 'splitSeed', 'maxLength', 'truncation', 'shuffle']);
  if (!Array.isArray(d.sources) || d.sources.length === 0) throw err(`${F}.sources`, 'must list at least one preference data file (a path, or {path, layout, fields, promptTemplate, ...})');
  const sources = d.sources.map((s: unknown, i) => {
    const sf = `${F}.sources[${i}]`;
    const o: Json = typeof s === 'string' ? { path: s } : obj(s, sf);
    only(o, sf, ['path', 'format', 'layout', 'fields', 'promptTemplate', 'system', 'limit']);
    const out: PreferenceDataConfig['sources'][number] = { path: path.resolve(opts.baseDir ?? '.', str(o.path, `${sf}.path`)) };
    if (o.format !== undefined) out.format = oneOf(o.format, `${sf}.format`, PREFERENCE_FORMATS);
    if (o.layout !== undefined) out.layout = oneOf(o.layout, `${sf}.layout`, PREFERENCE_LAYOUTS);
    if (o.fields !== undefined) out.fields = fieldMap(o.fields, `${sf}.fields`);
    if (o.promptTemplate !== undefined) out.promptTemplate = str(o.promptTemplate, `${sf}.promptTemplate`);
    if (o.system !== undefined) out.defaultSystem = str(o.system, `${sf}.system`);
    if (o.limit !== undefined) out.limit = num(o.limit, `${sf}.limit`, (n) => Number.isInteger(n) && n >= 1, 'an integer >= 1');
    return out;
  });
  const cfg: PreferenceDataConfig = {
    sources,
    valFraction: d.valFraction === undefined ? 0 : num(d.valFraction, `${F}.valFraction`, (n) => n >= 0 && n < 1, 'in [0, 1)'),
    splitSeed: d.splitSeed === undefined ? 0 : num(d.splitSeed, `${F}.splitSeed`, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer'),
    shuffle: d.shuffle === undefined ? true : typeof d.shuffle === 'boolean' ? d.shuffle : (() => { throw err(`${F}.shuffle`, `must be true or false, got ${JSON.stringify(d.shuffle)}`); })(),
  };
  if (d.truncation !== undefined) cfg.truncation = oneOf(d.truncation, `${F}.truncation`, ['keep_start', 'keep_end'] as const);
  if (d.maxLength !== undefined) cfg.maxLength = num(d.maxLength, `${F}.maxLength`, (n) => Number.isInteger(n) && n >= 2, 'an integer >= 2');
  return cfg;
}
