// The fields a stage of kind "reward" adds to the common ones (src/train/config.ts validates those
// and calls validateRewardFields): preference data, the chat template and LoRA as in SFT, and
// the reward objective (Bradley-Terry with an optional margin and TRL's reward centering).
// Errors name the file and the field, as every config error does.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validatePreferenceDataConfig, type PreferenceDataConfig } from '../data/preference/config.js';
import { PatentGPTError } from '../errors.js';
import type { SftChatTemplate, SftLora, StageBase } from './config.js';

/** The reward model's objective (TRL's RewardConfig under our names). */
export interface RewardObjective {
  /** Subtracted inside the sigmoid: -log sigmoid(r_c - r_r - margin) (Llama 2's margin loss). Default 0. */
  margin: number;
  /** coef * mean((r_c + r_r)^2) keeps rewards centred at 0 (TRL's center_rewards_coefficient). Default 0: off. */
  centerRewardsCoefficient: number;
  /** Std of the new score head when init is a causal LM (transformers' initializer_range). Default 0.02. */
  scoreInitStd: number;
}

/**
 * Reward model training on pairs of a prompt and a chosen and a rejected response: a decoder
 * with a scalar head (init: an SFT or pretraining model, or a reward model to go on from).
 */
export interface RewardConfig extends StageBase {
  kind: 'reward';
  init: string;
  data: PreferenceDataConfig;
  chatTemplate: SftChatTemplate;
  /** LoRA adapters on the decoder's Linears; the score head trains whole (PEFT's modules_to_save for SEQ_CLS). */
  lora?: SftLora;
  reward: RewardObjective;
}

/** The fields of kind "reward" besides the common ones. */
export const REWARD_KEYS = ['data', 'chatTemplate', 'lora', 'reward'] as const;

type Json = Record<string, unknown>;

/** Validates what a reward config adds to `base`; `source` names the file, `baseDir` resolves paths. */
export function validateRewardFields(c: Json, base: StageBase, opts: { source?: string; baseDir?: string; lora: (raw: unknown) => SftLora }): RewardConfig {
  const file = opts.source ?? 'config';
  const fail = (field: string, why: string): never => {
    throw new PatentGPTError('E_CONFIG', `${file}: ${field}: ${why}`);
  };
  const rel = (p: string): string => (opts.baseDir && !path.isAbsolute(p) ? path.resolve(opts.baseDir, p) : p);
  const obj = (v: unknown, field: string): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : fail(field, `must be an object, got ${JSON.stringify(v)}`));
  const str = (v: unknown, field: string): string => (typeof v === 'string' && v.trim() !== '' ? v : fail(field, `must be a non-empty string, got ${JSON.stringify(v)}`));
  const num = (v: unknown, field: string, ok: (x: number) => boolean, want: string, dflt: number): number =>
    v === undefined ? dflt : typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : fail(field, `must be ${want}, got ${JSON.stringify(v)}`);

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
    for (const k of Object.keys(t)) if (k !== 'path' && k !== 'name') fail(`chatTemplate.${k}`, 'unknown field (known: path, name)');
    chatTemplate = { path: rel(str(t.path, 'chatTemplate.path')), ...(t.name !== undefined ? { name: str(t.name, 'chatTemplate.name') } : {}) };
  }

  const r = obj(c.reward ?? {}, 'reward');
  for (const k of Object.keys(r))
    if (!['margin', 'centerRewardsCoefficient', 'scoreInitStd'].includes(k)) fail(`reward.${k}`, 'unknown field (known: margin, centerRewardsCoefficient, scoreInitStd)');
  const reward: RewardObjective = {
    margin: num(r.margin, 'reward.margin', () => true, 'a number', 0),
    centerRewardsCoefficient: num(r.centerRewardsCoefficient, 'reward.centerRewardsCoefficient', (x) => x >= 0, 'a number >= 0 (0: off; TRL recommends 0.01)', 0),
    scoreInitStd: num(r.scoreInitStd, 'reward.scoreInitStd', (x) => x > 0, 'a positive number', 0.02),
  };

  let init = base.init;
  if (init === undefined) {
    const m = base.model;
    let isDir = false;
    try {
      isDir = typeof m === 'string' && fs.statSync(m).isDirectory();
    } catch {
      /* not a folder */
    }
    if (!isDir) fail('init', 'missing: a reward model starts from trained weights (usually an SFT run); give init (a run, checkpoint or Hugging Face folder), or a model folder as model');
    init = m as string;
  }
  return { ...base, kind: 'reward', init: init!, data, chatTemplate, ...(c.lora !== undefined ? { lora: opts.lora(c.lora) } : {}), reward };
}
