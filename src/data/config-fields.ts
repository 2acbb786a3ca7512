// The field checks the data sections of stage configs share (src/data/sft/config.ts for SFT,
// src/data/preference/config.ts for DPO and reward): every error names the field, unknown fields
// are refused, and what both kinds of source have (path, format, layout, field map, system
// prompt; the held-out split, shuffling, longest example) is validated here once.
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import type { Role } from './sft/records.js';

export type Json = Record<string, unknown>;

const ROLES: readonly Role[] = ['system', 'user', 'assistant'];

export const err = (field: string, why: string): PatentGPTError => new PatentGPTError('E_CONFIG', `${field}: ${why}`);

export function obj(v: unknown, field: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw err(field, 'must be an object');
  return v as Json;
}

export function only(o: Json, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw err(`${field}.${k}`, `unknown field (allowed: ${allowed.join(', ')})`);
}

export function oneOf<T extends string>(v: unknown, field: string, values: readonly T[]): T {
  if (typeof v !== 'string' || !values.includes(v as T)) throw err(field, `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

export function num(v: unknown, field: string, ok: (n: number) => boolean, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw err(field, `must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

export function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw err(field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

export function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw err(field, `must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

/** A field map: the record fields named in `defaults` (renamed to strings) and `roles` (names -> roles). */
export function fieldMap<K extends string>(v: unknown, field: string, defaults: Readonly<Record<K, unknown>>): Partial<Record<K, string>> & { roles?: Record<string, Role> } {
  const o = obj(v, field);
  const keys = Object.keys(defaults) as K[];
  only(o, field, [...keys, 'roles']);
  const out: Partial<Record<K, string>> & { roles?: Record<string, Role> } = {};
  for (const k of keys) if (k in o) (out as Record<string, unknown>)[k] = str(o[k], `${field}.${k}`);
  if ('roles' in o) {
    const r = obj(o.roles, `${field}.roles`);
    out.roles = Object.fromEntries(Object.entries(r).map(([name, role]) => [name, oneOf(role, `${field}.roles.${name}`, ROLES)]));
  }
  return out;
}

/** What every data source has, whatever its stage: the resolved path, and its format, layout, field map and system prompt when given. */
export interface SourceCommon<F extends string, L extends string, M> {
  path: string;
  format?: F;
  layout?: L;
  fields?: M;
  defaultSystem?: string;
}

/**
 * `sources` of a data section: each a path or an object with `allowed` fields; `common` checks
 * path, format, layout, fields and system, `more` what the stage adds (weight, limit, ...).
 */
export function validateSources<F extends string, L extends string, M, S extends SourceCommon<F, L, M>>(
  d: Json, F: string, baseDir: string | undefined, spec: {
    what: string; allowed: readonly string[]; formats: readonly F[]; layouts: readonly L[]; fieldMap: (v: unknown, field: string) => M;
    more: (o: Json, sf: string, common: SourceCommon<F, L, M>) => S;
  },
): S[] {
  if (!Array.isArray(d.sources) || d.sources.length === 0) throw err(`${F}.sources`, `must list at least one ${spec.what}`);
  return d.sources.map((s: unknown, i) => {
    const sf = `${F}.sources[${i}]`;
    const o: Json = typeof s === 'string' ? { path: s } : obj(s, sf);
    only(o, sf, spec.allowed);
    const out: SourceCommon<F, L, M> = { path: path.resolve(baseDir ?? '.', str(o.path, `${sf}.path`)) };
    if (o.format !== undefined) out.format = oneOf(o.format, `${sf}.format`, spec.formats);
    if (o.layout !== undefined) out.layout = oneOf(o.layout, `${sf}.layout`, spec.layouts);
    if (o.fields !== undefined) out.fields = spec.fieldMap(o.fields, `${sf}.fields`);
    if (o.system !== undefined) out.defaultSystem = str(o.system, `${sf}.system`);
    return spec.more(o, sf, out);
  });
}

/** The held-out split, shuffling and longest example every data section has. */
export interface SplitFields {
  valFraction: number;
  splitSeed: number;
  shuffle: boolean;
  maxLength?: number;
}

/** valFraction (default 0), splitSeed (default 0), shuffle (default true), maxLength (>= 2, optional). */
export function validateSplitFields(d: Json, F: string): SplitFields {
  const out: SplitFields = {
    valFraction: d.valFraction === undefined ? 0 : num(d.valFraction, `${F}.valFraction`, (n) => n >= 0 && n < 1, 'in [0, 1)'),
    splitSeed: d.splitSeed === undefined ? 0 : num(d.splitSeed, `${F}.splitSeed`, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer'),
    shuffle: d.shuffle === undefined ? true : bool(d.shuffle, `${F}.shuffle`),
  };
  if (d.maxLength !== undefined) out.maxLength = num(d.maxLength, `${F}.maxLength`, (n) => Number.isInteger(n) && n >= 2, 'an integer >= 2');
  return out;
}
