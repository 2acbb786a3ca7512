// The fields of a "kind": "ppo" stage config besides the common ones (src/train/config.ts reads
// those and calls validatePpo): the prompts, the chat template, the reward, PPO's hyper-parameters
// (TRL's PPOConfig defaults where it has one) and optional LoRA. Errors name the file and field.
import * as path from 'node:path';
import type { SftChatTemplate, SftLora, StageBase } from '../config.js';
import { Fields, validateChatTemplate, validateInit, type Json } from '../config-fields.js';
import type { KlEstimator } from './math.js';
import { BUILTIN_REWARDS } from './rewards.js';

/** Where the prompts come from: a JSONL/JSON file of records (a string field, Alpaca's instruction + input, or messages). */
export interface PpoPrompts {
  path: string;
  /** The record field holding the prompt text (default "prompt"; Alpaca records and messages are read as such). */
  field: string;
  /** Use at most this many prompts (0: all). */
  limit: number;
}

/** The reward: a built-in function, a function exported by a module, or a frozen reward model folder. */
export type PpoReward = { function: string } | { module: string; export?: string } | { model: string };

export interface PpoHyper {
  /** Prompts per rollout (TRL's batch size); a multiple of batchSize * gradAccum (the minibatch). */
  rolloutBatch: number;
  /** Passes over each rollout (TRL's num_ppo_epochs, default 4). */
  epochs: number;
  /** Most new tokens per response (TRL's response_length, default 53). */
  maxNewTokens: number;
  /** Sampling temperature of the rollouts; the log-probs are taken at it too (TRL: 0.7). */
  temperature: number;
  topK: number;
  topP: number;
  /** KL coefficient (TRL's kl_coef 0.05), fixed unless adaptiveKl is given. */
  klCoef: number;
  klEstimator: KlEstimator;
  /** Ziegler et al.'s adaptive coefficient: the summed KL per response it steers to, and its horizon. */
  adaptiveKl?: { target: number; horizon: number };
  gamma: number;
  lam: number;
  cliprange: number;
  cliprangeValue: number;
  vfCoef: number;
  whitenRewards: boolean;
  /** Subtracted from the score of a response without EOS (null: none). */
  missingEosPenalty: number | null;
  /** KV cache of the rollout engine, in MiB. */
  kvCacheMiB: number;
}

/**
 * PPO from trained weights (an SFT run): rollouts of the policy on the prompts by the package's
 * engine, scored by the reward, the policy and its value head trained by PPO against the frozen
 * reference (init, or the base under LoRA).
 */
export interface PpoConfig extends StageBase {
  kind: 'ppo';
  init: string;
  prompts: PpoPrompts;
  chatTemplate: SftChatTemplate;
  reward: PpoReward;
  ppo: PpoHyper;
  lora?: SftLora;
}

export const PPO_KEYS = ['prompts', 'chatTemplate', 'reward', 'ppo', 'lora'] as const;

export interface PpoValidateHelpers {
  source: string;
  /** Resolves a path of the file against its folder. */
  rel: (p: string) => string;
  /** config.ts's LoRA section reader (the same fields as SFT's). */
  lora: (raw: unknown) => SftLora;
}

/** The kind's own fields over the common ones. */
export function validatePpo(c: Json, base: StageBase, h: PpoValidateHelpers): PpoConfig {
  const f = new Fields(h.source);
  const fail = (field: string, message: string): never => f.fail(field, message);
  const obj = (v: unknown, field: string): Json => f.object(v, field);
  const known = (o: Json, field: string, keys: readonly string[]): void => f.known(o, field, keys);
  const str = (v: unknown, field: string, dflt?: string): string => f.string(v, field, dflt);
  const num = (v: unknown, field: string, ok: (x: number) => boolean, want: string, dflt: number): number => f.number(v, field, ok, want, dflt);
  const int = (v: unknown, field: string, min: number, dflt: number): number => f.int(v, field, min, dflt);

  // init: the policy's (and the reference's) starting weights; a model folder is its own init
  const init = validateInit(f, base, 'PPO starts from trained weights (an SFT run)');

  if (c.prompts === undefined) fail('prompts', 'missing: give prompts.path (JSONL or JSON records with a prompt, Alpaca instruction/input, or messages)');
  const p = obj(c.prompts, 'prompts');
  known(p, 'prompts', ['path', 'field', 'limit']);
  const prompts: PpoPrompts = { path: h.rel(str(p.path, 'prompts.path')), field: str(p.field, 'prompts.field', 'prompt'), limit: int(p.limit, 'prompts.limit', 0, 0) };

  const chatTemplate = validateChatTemplate(f, c.chatTemplate, h.rel);

  if (c.reward === undefined) fail('reward', 'missing: give reward.function ("claim-format"), reward.module (a .js/.mjs file exporting (prompt, completion) => number) or reward.model (a reward model folder)');
  const r = obj(c.reward, 'reward');
  const kinds = ['function', 'module', 'model'].filter((k) => r[k] !== undefined);
  if (kinds.length !== 1) fail('reward', `give exactly one of function, module or model (got ${kinds.length ? kinds.join(', ') : 'none'})`);
  let reward: PpoReward;
  if (r.function !== undefined) {
    known(r, 'reward', ['function']);
    reward = { function: str(r.function, 'reward.function') };
    if (!(reward.function in BUILTIN_REWARDS))
      fail('reward.function', `"${reward.function}" is not a built-in reward (built in: ${Object.keys(BUILTIN_REWARDS).join(', ')}); name your own with reward.module`);
  } else if (r.module !== undefined) {
    known(r, 'reward', ['module', 'export']);
    reward = { module: h.rel(str(r.module, 'reward.module')), ...(r.export !== undefined ? { export: str(r.export, 'reward.export') } : {}) };
  } else {
    known(r, 'reward', ['model']);
    reward = { model: path.resolve(str(r.model, 'reward.model')) }; // a run folder: relative to the working directory, as init
  }

  const o = obj(c.ppo ?? {}, 'ppo');
  known(o, 'ppo', ['rolloutBatch', 'epochs', 'maxNewTokens', 'temperature', 'topK', 'topP', 'klCoef', 'klEstimator', 'adaptiveKl', 'gamma', 'lam',
    'cliprange', 'cliprangeValue', 'vfCoef', 'whitenRewards', 'missingEosPenalty', 'kvCacheMiB']);
  const minibatch = base.batchSize * base.gradAccum;
  const rolloutBatch = int(o.rolloutBatch, 'ppo.rolloutBatch', 1, minibatch);
  if (rolloutBatch % minibatch !== 0) fail('ppo.rolloutBatch', `${rolloutBatch} is not a multiple of the minibatch batchSize x gradAccum = ${minibatch}`);
  const est = str(o.klEstimator, 'ppo.klEstimator', 'k1');
  if (est !== 'k1' && est !== 'k3') fail('ppo.klEstimator', `must be "k1" or "k3", got ${JSON.stringify(est)}`);
  let adaptiveKl: PpoHyper['adaptiveKl'];
  if (o.adaptiveKl !== undefined) {
    const a = obj(o.adaptiveKl, 'ppo.adaptiveKl');
    known(a, 'ppo.adaptiveKl', ['target', 'horizon']);
    adaptiveKl = { target: num(a.target, 'ppo.adaptiveKl.target', (x) => x > 0, 'a number > 0', 6), horizon: num(a.horizon, 'ppo.adaptiveKl.horizon', (x) => x > 0, 'a number > 0', 10000) };
  }
  if (o.whitenRewards !== undefined && typeof o.whitenRewards !== 'boolean') fail('ppo.whitenRewards', `must be true or false, got ${JSON.stringify(o.whitenRewards)}`);
  const ppo: PpoHyper = {
    rolloutBatch,
    epochs: int(o.epochs, 'ppo.epochs', 1, 4),
    maxNewTokens: int(o.maxNewTokens, 'ppo.maxNewTokens', 1, 53),
    temperature: num(o.temperature, 'ppo.temperature', (x) => x > 0, 'a number > 0 (PPO samples)', 0.7),
    topK: int(o.topK, 'ppo.topK', 0, 0),
    topP: num(o.topP, 'ppo.topP', (x) => x > 0 && x <= 1, 'a number in (0, 1]', 1),
    klCoef: num(o.klCoef, 'ppo.klCoef', (x) => x >= 0, 'a number >= 0', 0.05),
    klEstimator: est as KlEstimator,
    ...(adaptiveKl ? { adaptiveKl } : {}),
    gamma: num(o.gamma, 'ppo.gamma', (x) => x >= 0 && x <= 1, 'a number in [0, 1]', 1),
    lam: num(o.lam, 'ppo.lam', (x) => x >= 0 && x <= 1, 'a number in [0, 1]', 0.95),
    cliprange: num(o.cliprange, 'ppo.cliprange', (x) => x > 0, 'a number > 0', 0.2),
    cliprangeValue: num(o.cliprangeValue, 'ppo.cliprangeValue', (x) => x > 0, 'a number > 0', 0.2),
    vfCoef: num(o.vfCoef, 'ppo.vfCoef', (x) => x >= 0, 'a number >= 0', 0.1),
    whitenRewards: (o.whitenRewards as boolean | undefined) ?? false,
    missingEosPenalty: o.missingEosPenalty === undefined || o.missingEosPenalty === null ? null : num(o.missingEosPenalty, 'ppo.missingEosPenalty', (x) => x >= 0, 'a number >= 0 (or null: none)', 0),
    kvCacheMiB: num(o.kvCacheMiB, 'ppo.kvCacheMiB', (x) => x > 0, 'a number > 0', 64),
  };
  if (ppo.maxNewTokens + 1 >= base.seqLen) fail('ppo.maxNewTokens', `${ppo.maxNewTokens} leaves no room for a prompt in seqLen ${base.seqLen} (prompt + response tokens)`);
  return { ...base, kind: 'ppo', init, prompts, chatTemplate, reward, ppo, ...(c.lora !== undefined ? { lora: h.lora(c.lora) } : {}) };
}
