// The field checks of stage configs, shared by src/train/config.ts and the kinds' own validators
// (config-dpo.ts, config-reward.ts, ppo/config.ts): every error names the file and the field.
// What the chat stages (sft, dpo, reward, ppo) have in common is validated here once: the chat
// template, LoRA, the initial weights, and (dpo, reward) the preference data section.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validatePreferenceDataConfig, type PreferenceDataConfig } from '../data/preference/config.js';
import { PatentGPTError } from '../errors.js';
import type { SftChatTemplate, SftLora, StageBase } from './config.js';

export type Json = Record<string, unknown>;

/** Reads a config's fields; every failure is an E_CONFIG error naming the file and the field. */
export class Fields {
  constructor(private readonly file: string) {}

  fail(field: string, message: string): never {
    throw new PatentGPTError('E_CONFIG', `${this.file}: ${field}: ${message}`);
  }

  object(v: unknown, field: string): Json {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, `must be an object, got ${JSON.stringify(v)}`);
    return v as Json;
  }

  known(o: Json, field: string, keys: readonly string[]): void {
    for (const k of Object.keys(o))
      if (!keys.includes(k)) this.fail(field ? `${field}.${k}` : k, `unknown field (known: ${keys.join(', ')})`);
  }

  string(v: unknown, field: string, dflt?: string): string {
    if (v === undefined && dflt !== undefined) return dflt;
    if (v === undefined) this.fail(field, 'missing (a string is required)');
    if (typeof v !== 'string' || v.trim() === '') this.fail(field, `must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  }

  int(v: unknown, field: string, min: number, dflt?: number): number {
    if (v === undefined && dflt !== undefined) return dflt;
    if (v === undefined) this.fail(field, `missing (an integer >= ${min} is required)`);
    if (!Number.isSafeInteger(v) || (v as number) < min) this.fail(field, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  }

  number(v: unknown, field: string, check: (x: number) => boolean, want: string, dflt?: number): number {
    if (v === undefined && dflt !== undefined) return dflt;
    if (v === undefined) this.fail(field, `missing (${want})`);
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) this.fail(field, `must be ${want}, got ${JSON.stringify(v)}`);
    return v;
  }
}

/** `lora`: the adapters of SFT, DPO, reward and PPO runs (PEFT's LoraConfig under our names). */
export function validateLora(f: Fields, raw: unknown, seed: number): SftLora {
  const l = f.object(raw, 'lora');
  f.known(l, 'lora', ['r', 'alpha', 'dropout', 'targetModules', 'seed']);
  const r = f.int(l.r, 'lora.r', 1);
  const alpha = f.number(l.alpha, 'lora.alpha', (x) => x > 0, 'a number > 0', r);
  const dropout = f.number(l.dropout, 'lora.dropout', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0);
  let targetModules: string[] | string = ['q_proj', 'v_proj'];
  const t = l.targetModules;
  if (typeof t === 'string') {
    targetModules = f.string(t, 'lora.targetModules');
    if (t !== 'all-linear') {
      try {
        new RegExp(t);
      } catch (err) {
        f.fail('lora.targetModules', `${JSON.stringify(t)} is not a valid regular expression (${(err as Error).message})`);
      }
    }
  } else if (t !== undefined) {
    if (!Array.isArray(t) || t.length === 0)
      f.fail('lora.targetModules', `must be a non-empty list of module names (["q_proj", "v_proj"]), a regular expression string or "all-linear", got ${JSON.stringify(t)}`);
    targetModules = (t as unknown[]).map((x, i) => f.string(x, `lora.targetModules[${i}]`));
  }
  return { r, alpha, dropout, targetModules, seed: f.int(l.seed, 'lora.seed', 0, seed) };
}

/** `chatTemplate`: "llama2" (the default), a folder or file path, or {path, name}; paths resolved by `rel`. */
export function validateChatTemplate(f: Fields, raw: unknown, rel: (p: string) => string): SftChatTemplate {
  if (raw === undefined) return 'llama2';
  if (typeof raw === 'string') {
    const t = f.string(raw, 'chatTemplate');
    return t === 'llama2' ? 'llama2' : { path: rel(t) };
  }
  const t = f.object(raw, 'chatTemplate');
  f.known(t, 'chatTemplate', ['path', 'name']);
  return { path: rel(f.string(t.path, 'chatTemplate.path')), ...(t.name !== undefined ? { name: f.string(t.name, 'chatTemplate.name') } : {}) };
}

/**
 * The initial weights of a stage that starts from a trained model: `init`, or the model folder
 * (this package's checkpoint or a Hugging Face folder holds the weights too). `startsFrom` says
 * what the stage needs, in the error ("DPO starts from trained weights (usually an SFT run)").
 */
export function validateInit(f: Fields, base: StageBase, startsFrom: string): string {
  if (base.init !== undefined) return base.init;
  const m = base.model;
  let isDir = false;
  try {
    isDir = typeof m === 'string' && fs.statSync(m).isDirectory();
  } catch {
    /* not a folder */
  }
  if (!isDir) f.fail('init', `missing: ${startsFrom}; give init (a run, checkpoint or Hugging Face folder), or a model folder as model`);
  return m as string;
}

/** Resolves a config's relative paths against its folder (`baseDir`; none: as given). */
export const relativeTo = (baseDir: string | undefined) => (p: string): string => (baseDir && !path.isAbsolute(p) ? path.resolve(baseDir, p) : p);

/** Prefixes the file to a data section's E_CONFIG errors (they name the field), as every other config error does. */
export function inFile<T>(file: string, validate: () => T): T {
  try {
    return validate();
  } catch (err) {
    if (err instanceof PatentGPTError && err.code === 'E_CONFIG') throw new PatentGPTError('E_CONFIG', `${file}: ${err.message}`);
    throw err;
  }
}

/** `data` of a preference stage (dpo, reward): required, validated, each side fitting in seqLen. */
export function validatePreferenceData(f: Fields, file: string, raw: unknown, base: StageBase, baseDir: string | undefined): PreferenceDataConfig {
  if (raw === undefined) f.fail('data', 'missing: give data.sources (preference files: prompt/chosen/rejected records, LLaMA-Factory sharegpt pairs, hh-rlhf transcripts, or a table with promptTemplate)');
  const data = inFile(file, () => validatePreferenceDataConfig(raw, { field: 'data', ...(baseDir ? { baseDir } : {}) }));
  if (data.maxLength !== undefined && data.maxLength > base.seqLen) f.fail('data.maxLength', `${data.maxLength} exceeds seqLen ${base.seqLen}; each side of a pair must fit in seqLen`);
  return data;
}
