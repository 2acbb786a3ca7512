// The fields a stage of kind "dpo" adds to the common ones (src/train/config.ts validates those
// and calls validateDpoFields): preference data, the chat template and LoRA as in SFT, and the
// DPO objective. Errors name the file and the field, as every config error does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validatePreferenceDataConfig, type PreferenceDataConfig } from '../data/preference/config.js';
import { PatentGPTError } from '../errors.js';
import type { SftChatTemplate, SftLora, StageBase } from './config.js';

export const DPO_LOSSES = ['sigmoid', 'ipo'] as const;
export type DpoLoss = (typeof DPO_LOSSES)[number];
export const DPO_REFERENCES = ['precomputed', 'adapters-off'] as const;
export type DpoReference = (typeof DPO_REFERENCES)[number];

/** The DPO objective (TRL's DPOConfig under our names). */
export interface DpoObjective {
  /** beta: how far the policy may move from the reference (IPO's tau). Default 0.1. */
  beta: number;
  /**
   * "sigmoid" (DPO: -log sigmoid(beta * margin), with labelSmoothing the conservative cDPO) or
   * "ipo" ((margin / tokens - 1 / (2 beta))^2 on token-averaged log-ratios, as TRL). Default sigmoid.
   */
  loss: DpoLoss;
  /** cDPO: the probability that a label is flipped, in [0, 0.5); sigmoid only. Default 0. */
  labelSmoothing: number;
  /**
   * Where the reference log-probs come from: "precomputed" (one pass of the initial model over
   * every pair before training; no second model in memory) or "adapters-off" (LoRA only: the
   * frozen base with the adapters bypassed, each step). Default: adapters-off under LoRA, else precomputed.
   */
  reference: DpoReference;
}

/** Direct preference optimisation on pairs of a prompt and a chosen and a rejected response. */
export interface DpoConfig extends StageBase {
  kind: 'dpo';
  init: string;
  data: PreferenceDataConfig;
  chatTemplate: SftChatTemplate;
  lora?: SftLora;
  dpo: DpoObjective;
}

/** The fields of kind "dpo" besides the common ones. */
export const DPO_KEYS = ['data', 'chatTemplate', 'lora', 'dpo'] as const;

type Json = Record<string, unknown>;

/** Validates what a dpo config adds to `base`; `source` names the file, `baseDir` resolves paths. */
export function validateDpoFields(c: Json, base: StageBase, opts: { source?: string; baseDir?: string }): DpoConfig {
  const file = opts.source ?? 'config';
  const fail = (field: string, why: string): never => {
    throw new PatentGPTError('E_CONFIG', `${file}: ${field}: ${why}`);
  };
  const rel = (p: string): string => (opts.baseDir && !path.isAbsolute(p) ? path.resolve(opts.baseDir, p) : p);
  const obj = (v: unknown, field: string): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : fail(field, `must be an object, got ${JSON.stringify(v)}`));
  const str = (v: unknown, field: string): string => (typeof v === 'string' && v.trim() !== '' ? v : fail(field, `must be a non-empty string, got ${JSON.stringify(v)}`));
  const num = (v: unknown, field: string, ok: (x: number) => boolean, want: string, dflt: number): number =>
    v === undefined ? dflt : typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : fail(field, `must be ${want}, got ${JSON.stringify(v)}`);
  const known = (o: Json, field: string, keys: readonly string[]): void => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) fail(`${field}.${k}`, `unknown field (known: ${keys.join(', ')})`);
  };

  if (c.data === undefined) fail('data', 'missing: give data.sources (preference files: prompt/chosen/rejected records, LLaMA-Factory sharegpt pairs, hh-rlhf transcripts, or a table with promptTemplate)');
  let data: PreferenceDataConfig;
  try {
    data = validatePreferenceDataConfig(c.data, { field: 'data', ...(opts.baseDir ? { baseDir: opts.baseDir } : {}) });
  } catch (err) {
    if (err instanceof PatentGPTError && err.code === 'E_CONFIG') throw new PatentGPTError('E_CONFIG', `${file}: ${err.message}`);
    throw err;
  }
  if (data.maxLength !== undefined && data.maxLength > base.seqLen) fail('data.maxLength', `${data.maxLength} exceeds seqLen ${base.seqLen}; each side of a pair must fit in seqLen`);

  let chatTemplate: SftChatTemplate = 'llama2';
  if (typeof c.chatTemplate === 'string') {
    const t = str(c.chatTemplate, 'chatTemplate');
    chatTemplate = t === 'llama2' ? 'llama2' : { path: rel(t) };
  } else if (c.chatTemplate !== undefined) {
    const t = obj(c.chatTemplate, 'chatTemplate');
    known(t, 'chatTemplate', ['path', 'name']);
    chatTemplate = { path: rel(str(t.path, 'chatTemplate.path')), ...(t.name !== undefined ? { name: str(t.name, 'chatTemplate.name') } : {}) };
  }

  let lora: SftLora | undefined;
  if (c.lora !== undefined) {
    const l = obj(c.lora, 'lora');
    known(l, 'lora', ['r', 'alpha', 'dropout', 'targetModules', 'seed']);
    const r = num(l.r, 'lora.r', (x) => Number.isInteger(x) && x >= 1, 'an integer >= 1', NaN);
    if (Number.isNaN(r)) fail('lora.r', 'missing (an integer >= 1 is required)');
    const t = l.targetModules;
    let targetModules: string[] | string = ['q_proj', 'v_proj'];
    if (typeof t === 'string') targetModules = str(t, 'lora.targetModules');
    else if (t !== undefined) {
      if (!Array.isArray(t) || t.length === 0) fail('lora.targetModules', `must be a non-empty list of module names, a regular expression string or "all-linear", got ${JSON.stringify(t)}`);
      targetModules = (t as unknown[]).map((x, i) => str(x, `lora.targetModules[${i}]`));
    }
    lora = {
      r, alpha: num(l.alpha, 'lora.alpha', (x) => x > 0, 'a number > 0', r), dropout: num(l.dropout, 'lora.dropout', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0),
      targetModules, seed: num(l.seed, 'lora.seed', (x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative integer', base.seed),
    };
  }

  const d = obj(c.dpo ?? {}, 'dpo');
  known(d, 'dpo', ['beta', 'loss', 'labelSmoothing', 'reference']);
  const loss = (d.loss ?? 'sigmoid') as DpoLoss;
  if (!DPO_LOSSES.includes(loss)) fail('dpo.loss', `must be ${DPO_LOSSES.map((x) => `"${x}"`).join(' or ')}, got ${JSON.stringify(d.loss)}`);
  const labelSmoothing = num(d.labelSmoothing, 'dpo.labelSmoothing', (x) => x >= 0 && x < 0.5, 'a number in [0, 0.5)', 0);
  if (labelSmoothing > 0 && loss !== 'sigmoid') fail('dpo.labelSmoothing', `applies to the "sigmoid" loss (cDPO), not "${loss}"`);
  const reference = (d.reference ?? (lora ? 'adapters-off' : 'precomputed')) as DpoReference;
  if (!DPO_REFERENCES.includes(reference)) fail('dpo.reference', `must be ${DPO_REFERENCES.map((x) => `"${x}"`).join(' or ')}, got ${JSON.stringify(d.reference)}`);
  if (reference === 'adapters-off' && !lora) fail('dpo.reference', '"adapters-off" needs lora (the frozen base is the reference); use "precomputed" for full fine-tuning');
  const dpo: DpoObjective = { beta: num(d.beta, 'dpo.beta', (x) => x > 0, 'a number > 0', 0.1), loss, labelSmoothing, reference };

  let init = base.init;
  if (init === undefined) {
    const m = base.model;
    let isDir = false;
    try {
      isDir = typeof m === 'string' && fs.statSync(m).isDirectory();
    } catch {
      /* not a folder */
    }
    if (!isDir) fail('init', 'missing: DPO starts from trained weights (usually an SFT run); give init (a run, checkpoint or Hugging Face folder), or a model folder as model');
    init = m as string;
  }
  return { ...base, kind: 'dpo', init: init!, data, chatTemplate, ...(lora ? { lora } : {}), dpo };
}
