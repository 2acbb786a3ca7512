// The fields of a "kind": "ppo" stage config besides the common ones (src/train/config.ts reads
// those and calls validatePpo): the prompts, the chat template, the reward, PPO's hyper-parameters
// (TRL's PPOConfig defaults where it has one) and optional LoRA. Errors name the file and field.
import * as path from 'node:path';
import type { SftChatTemplate, SftLora, StageBase } from '../config.js';
import { Fields, relativeTo, validateChatTemplate, validateInit, validateLora, type Json } from '../config-fields.js';
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
  /**
   * false: as TRL with no stop_token, every response runs maxNewTokens tokens and EOS is an
   * ordinary token (nothing truncated, no missing-EOS penalty). Absent: responses end at EOS.
   */
  stopAtEos?: false;
  /** KV cache of the rollout engine, in MiB. */
  kvCacheMiB: number;
  /**
   * true: the rollout and reference engines run batch-invariant (Engine's batchInvariant: every
   * step padded past the GEMV row limit), so a response's numbers do not depend on the prompts
   * sharing its steps, and N ranks reproduce the 1-rank run bit for bit (set it on both).
   * Costs rollout speed (1.2-2.7x slower decoding measured); absent: off, and N ranks agree
   * with 1 rank to rounding (~1e-7 in the losses).
   */
  batchInvariant?: true;
  /**
   * KV cache of the frozen reference's engine, in MiB (absent: 64): its prompts' blocks pinned
   * for the run, beside room for a rollout. Not used under LoRA (the reference is the policy's base).
   */
  referenceKvCacheMiB?: number;
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

/** Validates what a ppo config adds to `base`; `source` names the file, `baseDir` resolves paths. */
export function validatePpo(c: Json, base: StageBase, opts: { source?: string; baseDir?: string }): PpoConfig {
  const f = new Fields(opts.source ?? 'config');
  const rel = relativeTo(opts.baseDir);

  // init: the policy's (and the reference's) starting weights; a model folder is its own init
  const init = validateInit(f, base, 'PPO starts from trained weights (an SFT run)');

  if (c.prompts === undefined) f.fail('prompts', 'missing: give prompts.path (JSONL or JSON records with a prompt, Alpaca instruction/input, or messages)');
  const p = f.object(c.prompts, 'prompts');
  f.known(p, 'prompts', ['path', 'field', 'limit']);
  const prompts: PpoPrompts = { path: rel(f.string(p.path, 'prompts.path')), field: f.string(p.field, 'prompts.field', 'prompt'), limit: f.int(p.limit, 'prompts.limit', 0, 0) };

  const chatTemplate = validateChatTemplate(f, c.chatTemplate, rel);

  if (c.reward === undefined) f.fail('reward', 'missing: give reward.function ("claim-format"), reward.module (a .js/.mjs file exporting (prompt, completion) => number) or reward.model (a reward model folder)');
  const r = f.object(c.reward, 'reward');
  const kinds = ['function', 'module', 'model'].filter((k) => r[k] !== undefined);
  if (kinds.length !== 1) f.fail('reward', `give exactly one of function, module or model (got ${kinds.length ? kinds.join(', ') : 'none'})`);
  let reward: PpoReward;
  if (r.function !== undefined) {
    f.known(r, 'reward', ['function']);
    reward = { function: f.string(r.function, 'reward.function') };
    if (!(reward.function in BUILTIN_REWARDS))
      f.fail('reward.function', `"${reward.function}" is not a built-in reward (built in: ${Object.keys(BUILTIN_REWARDS).join(', ')}); name your own with reward.module`);
  } else if (r.module !== undefined) {
    f.known(r, 'reward', ['module', 'export']);
    reward = { module: rel(f.string(r.module, 'reward.module')), ...(r.export !== undefined ? { export: f.string(r.export, 'reward.export') } : {}) };
  } else {
    f.known(r, 'reward', ['model']);
    reward = { model: path.resolve(f.string(r.model, 'reward.model')) }; // a run folder: relative to the working directory, as init
  }

  const o = f.object(c.ppo ?? {}, 'ppo');
  f.known(o, 'ppo', ['rolloutBatch', 'epochs', 'maxNewTokens', 'temperature', 'topK', 'topP', 'klCoef', 'klEstimator', 'adaptiveKl', 'gamma', 'lam',
    'cliprange', 'cliprangeValue', 'vfCoef', 'whitenRewards', 'missingEosPenalty', 'kvCacheMiB', 'stopAtEos', 'referenceKvCacheMiB', 'batchInvariant']);
  const minibatch = base.batchSize * base.gradAccum;
  const rolloutBatch = f.int(o.rolloutBatch, 'ppo.rolloutBatch', 1, minibatch);
  if (rolloutBatch % minibatch !== 0) f.fail('ppo.rolloutBatch', `${rolloutBatch} is not a multiple of the minibatch batchSize x gradAccum = ${minibatch}`);
  const est = f.string(o.klEstimator, 'ppo.klEstimator', 'k1');
  if (est !== 'k1' && est !== 'k3') f.fail('ppo.klEstimator', `must be "k1" or "k3", got ${JSON.stringify(est)}`);
  let adaptiveKl: PpoHyper['adaptiveKl'];
  if (o.adaptiveKl !== undefined) {
    const a = f.object(o.adaptiveKl, 'ppo.adaptiveKl');
    f.known(a, 'ppo.adaptiveKl', ['target', 'horizon']);
    adaptiveKl = { target: f.number(a.target, 'ppo.adaptiveKl.target', (x) => x > 0, 'a number > 0', 6), horizon: f.number(a.horizon, 'ppo.adaptiveKl.horizon', (x) => x > 0, 'a number > 0', 10000) };
  }
  if (o.whitenRewards !== undefined && typeof o.whitenRewards !== 'boolean') f.fail('ppo.whitenRewards', `must be true or false, got ${JSON.stringify(o.whitenRewards)}`);
  const ppo: PpoHyper = {
    rolloutBatch,
    epochs: f.int(o.epochs, 'ppo.epochs', 1, 4),
    maxNewTokens: f.int(o.maxNewTokens, 'ppo.maxNewTokens', 1, 53),
    temperature: f.number(o.temperature, 'ppo.temperature', (x) => x > 0, 'a number > 0 (PPO samples)', 0.7),
    topK: f.int(o.topK, 'ppo.topK', 0, 0),
    topP: f.number(o.topP, 'ppo.topP', (x) => x > 0 && x <= 1, 'a number in (0, 1]', 1),
    klCoef: f.number(o.klCoef, 'ppo.klCoef', (x) => x >= 0, 'a number >= 0', 0.05),
    klEstimator: est as KlEstimator,
    ...(adaptiveKl ? { adaptiveKl } : {}),
    gamma: f.number(o.gamma, 'ppo.gamma', (x) => x >= 0 && x <= 1, 'a number in [0, 1]', 1),
    lam: f.number(o.lam, 'ppo.lam', (x) => x >= 0 && x <= 1, 'a number in [0, 1]', 0.95),
    cliprange: f.number(o.cliprange, 'ppo.cliprange', (x) => x > 0, 'a number > 0', 0.2),
    cliprangeValue: f.number(o.cliprangeValue, 'ppo.cliprangeValue', (x) => x > 0, 'a number > 0', 0.2),
    vfCoef: f.number(o.vfCoef, 'ppo.vfCoef', (x) => x >= 0, 'a number >= 0', 0.1),
    whitenRewards: (o.whitenRewards as boolean | undefined) ?? false,
    missingEosPenalty: o.missingEosPenalty === undefined || o.missingEosPenalty === null ? null : f.number(o.missingEosPenalty, 'ppo.missingEosPenalty', (x) => x >= 0, 'a number >= 0 (or null: none)', 0),
    kvCacheMiB: f.number(o.kvCacheMiB, 'ppo.kvCacheMiB', (x) => x > 0, 'a number > 0', 64),
  };
  // only when set: the default leaves the config's hash as it was
  if (o.referenceKvCacheMiB !== undefined) ppo.referenceKvCacheMiB = f.number(o.referenceKvCacheMiB, 'ppo.referenceKvCacheMiB', (x) => x > 0, 'a number > 0', 64);
  if (o.stopAtEos !== undefined && typeof o.stopAtEos !== 'boolean') f.fail('ppo.stopAtEos', `must be true or false, got ${JSON.stringify(o.stopAtEos)}`);
  if (o.stopAtEos === false) {
    if (ppo.missingEosPenalty !== null) f.fail('ppo.missingEosPenalty', 'has no meaning with ppo.stopAtEos false (no response stops at EOS); drop one of them');
    ppo.stopAtEos = false; // only when set: the default leaves the config's hash as it was
  }
  if (o.batchInvariant !== undefined && typeof o.batchInvariant !== 'boolean') f.fail('ppo.batchInvariant', `must be true or false, got ${JSON.stringify(o.batchInvariant)}`);
  if (o.batchInvariant === true) ppo.batchInvariant = true; // only when set: the default leaves the config's hash as it was
  if (ppo.maxNewTokens + 1 >= base.seqLen) f.fail('ppo.maxNewTokens', `${ppo.maxNewTokens} leaves no room for a prompt in seqLen ${base.seqLen} (prompt + response tokens)`);
  return { ...base, kind: 'ppo', init, prompts, chatTemplate, reward, ppo, ...(c.lora !== undefined ? { lora: validateLora(f, c.lora, base.seed) } : {}) };
}
