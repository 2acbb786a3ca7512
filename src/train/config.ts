// Stage configs (one JSON file per stage), validated at the edge. `kind` picks the stage
// (see STAGE_KINDS; a config without it is a pretrain config, as before stage kinds existed); the
// fields every stage shares (model, init, tokenizer, batch shape, budget, optimizer, schedule,
// cadence, divergence policy, memory) are read once here, each kind adds its own.
//
// Every error names the file and the field (`data.weights.patent: must be ...`),
// every error names the file and the field (`data.weights.patent: must be ...`), unknown fields
// are refused (a typo must not be silently ignored), and defaults are filled in, so the loop
// sees a complete StageConfig. Input paths inside the file (model, tokenizer, data.manifests)
// are relative to the file's folder; run folders (runDir, and init, which names the run or
// checkpoint a stage starts from) are relative to the working directory, like --run-dir and the
// default runs/<name>, so a stage-2 init names stage 1's folder exactly as stage 1 printed it.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { deviceUnavailableReason } from '../native/devices.js';
import { validateConfig, type ModelConfig } from '../models/config.js';
import { validateSftDataConfig, type SftDataConfig } from '../data/sft/config.js';
import { Fields, inFile, relativeTo, validateChatTemplate, validateInit, validateLora, type Json } from './config-fields.js';
import { DPO_KEYS, validateDpoFields, type DpoConfig } from './config-dpo.js';
import { groupPattern } from './optimizer.js';
import { LossScaler, resolveLossScale, type LossScaleOption } from './loss-scale.js';
import type { Schedule } from './schedule.js';
import { PPO_KEYS, validatePpo, type PpoConfig } from './ppo/config.js';
import { REWARD_KEYS, validateRewardFields, type RewardConfig } from './config-reward.js';

export interface StageData {
  /** Token shard sets (manifest.json files or their folders). */
  manifests: string[];
  /**
   * Use the built-in sample corpus (original IP text shipped with the package), tokenized with
   * the stage's tokenizer, when no manifests are given. Default: true when manifests is empty.
   */
  sample: boolean;
  /** Mixture weights by category (normalised); omitted: in proportion to each category's tokens. */
  weights?: Record<string, number>;
  /** Share of documents held out for validation (by a hash of each document). Default 0.01. */
  valFraction: number;
}

/** A parameter group of the optimizer: the parameters whose names match, and what they get. */
export interface StageParamGroup {
  /** A glob over parameter names (`*` matches any characters: "model.layers.*.mlp.*") or "/regex/". */
  match: string;
  name?: string;
  /** Multiplier of the schedule's learning rate (e.g. 0.1 for embeddings). */
  lrScale?: number;
  /** Weight decay of every parameter in the group (norms and biases included). */
  weightDecay?: number;
}

interface StageOptimizerBase {
  /** Peak learning rate. */
  lr: number;
  /** Decoupled (AdamW) or L2 (SGD) weight decay of the "decay" group. */
  weightDecay: number;
  /** Global gradient-norm clip; 0 turns clipping off. */
  gradClip: number;
  /** Embedding tables take weight decay (default true; norms and biases never do). */
  decayEmbeddings: boolean;
  /** Parameter groups by name pattern, first match wins (default none: "decay" and "no_decay"). */
  groups: StageParamGroup[];
}

export interface AdamWStageOptimizer extends StageOptimizerBase {
  type: 'adamw';
  beta1: number;
  beta2: number;
  eps: number;
}

export interface SgdStageOptimizer extends StageOptimizerBase {
  type: 'sgd';
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

/** The optimizer of a stage: `type` "adamw" (default) or "sgd" (with momentum). */
export type StageOptimizer = AdamWStageOptimizer | SgdStageOptimizer;
export const OPTIMIZER_TYPES = ['adamw', 'sgd'] as const;

export interface StageSchedule {
  kind: 'cosine' | 'constant' | 'wsd';
  warmupSteps: number;
  /** Floor of cosine and WSD decays; default lr / 10. */
  minLr: number;
  /** WSD only: steps of the final decay. */
  decaySteps?: number;
  decayShape?: 'linear' | 'cosine';
}

/** Context extension for stage 2: a larger RoPE base and/or linear position interpolation. */
export interface StageContext {
  /** New RoPE base frequency (e.g. 10000 -> 500000 for 4K -> 16K). */
  ropeTheta?: number;
  /** Positions are divided by this (linear interpolation, e.g. 4 for 4K -> 16K). */
  posScale?: number;
}

/** The stages a config's `kind` names (all of them run). */
export const STAGE_KINDS = ['pretrain', 'sft', 'reward', 'ppo', 'dpo'] as const;
export type StageKind = (typeof STAGE_KINDS)[number];

/** What every stage's config holds (model, budget, optimizer, schedule, cadence, limits). */
export interface StageBase {
  kind: StageKind;
  /** Run name: the run writes runs/<name>/ (or runDir). */
  name: string;
  /** Folder of the run (relative to the working directory); default runs/<name>. */
  runDir: string;
  /**
   * Model: a preset name (e.g. "llama-5m", "llama2-7b"), a path to a config.json / Hugging Face
   * folder, or an inline model config object (ModelConfig fields; defaults filled).
   */
  model: string | ModelConfig;
  /**
   * Weights to start from: a checkpoint folder (runs/<stage1>/checkpoints/step-N), a run folder
   * (its latest checkpoint) or a Hugging Face folder; relative to the working directory, as runDir.
   */
  init?: string;
  /** "byte" (the byte-level tokenizer), "llama2" (LLaMA-2's SentencePiece vocabulary) or a tokenizer.model path. */
  tokenizer: string;
  /** Tokens per training row (context length of this stage). */
  seqLen: number;
  /** Rows per micro-batch (per rank). */
  batchSize: number;
  /** Micro-batches per optimizer step. */
  gradAccum: number;
  /** Stop after this many training tokens (steps are derived); exactly one of tokenBudget and steps. */
  tokenBudget?: number;
  /** Optimizer steps to run. */
  steps?: number;
  optimizer: StageOptimizer;
  schedule: StageSchedule;
  /** Evaluate every N steps (0: only at the end). */
  evalEvery: number;
  /** Validation batches per evaluation. */
  evalBatches: number;
  /** Save a checkpoint every N steps (0: only at the end). */
  checkpointEvery: number;
  /** Checkpoints to keep (0: all). */
  keepCheckpoints: number;
  /** Log metrics every N steps. */
  logEvery: number;
  seed: number;
  /** CPU threads for the native kernels (0: the library default). */
  threads: number;
  /** Peak FLOP/s of the hardware for MFU (0: MFU not reported). */
  peakFlops: number;
  /** Context extension of the model (stage 2 of pretraining; any stage may train at a longer context). */
  context?: StageContext;
  /** Consecutive steps with a non-finite loss or gradient norm skipped before the run diverges. Default 3. */
  maxNonFiniteSteps: number;
  /** What a diverged run does: "stop" (exit non-zero, default) or "rollback" to the last good checkpoint at a lower lr. */
  onDivergence: 'stop' | 'rollback';
  /** Learning-rate factor of each rollback, in (0, 1). Default 0.5. */
  rollbackLrFactor: number;
  /** Rollbacks before the run stops as diverged. Default 3. */
  maxRollbacks: number;
  /** Host memory a training step may use, in GiB (0: the machine's, or its cgroup limit). */
  memoryLimitGiB: number;
  /** Refuse a run whose estimated step memory exceeds the limit. Default true. */
  memoryCheck: boolean;
  /**
   * Where the model trains: "cpu" or "cuda" (the binary must have CUDA and find a GPU). Validated
   * configs always hold it ("cpu" by default); configs built in code may leave it out (cpu).
   */
  device?: 'cpu' | 'cuda';
  /**
   * Matmul precision: "f32" (default), "bf16" or "fp16", mixed precision: every matmul and linear
   * layer, forward and backward, rounds its inputs to bf16 (or fp16) and sums in f32 (AMX or
   * AVX-512 BF16 where the CPU has them, else f32); weights, gradients, optimizer state, norms,
   * softmax and loss stay f32. On CUDA attention computes in the 16-bit format too. fp16's narrow
   * range wants loss scaling (lossScale, dynamic by default there).
   * Validated configs always hold it; configs built in code may leave it out (f32).
   */
  precision?: 'f32' | 'bf16' | 'fp16';
  /**
   * Loss scaling: "dynamic" (torch GradScaler: initial scale 2^16, x2 after 2000 finite steps, /2
   * and the step skipped on overflow), { initialScale, growthInterval, growthFactor, backoffFactor,
   * minScale } (dynamic with those), a fixed number, or "off". Default: "dynamic" at precision
   * fp16, "off" otherwise (src/train/loss-scale.ts). Present only when the config gives it.
   */
  lossScale?: LossScaleOption;
}

/** Continued pretraining (stage 1 and 2 of the paper): packed token shards, next-token loss. */
export interface PretrainConfig extends StageBase {
  kind: 'pretrain';
  data: StageData;
}

/**
 * How an SFT stage renders conversations: "llama2" (LLaMA-2's [INST] <<SYS>> format, built in,
 * over the stage's tokenizer), or a Hugging Face chat template from a tokenizer folder or its
 * tokenizer_config.json (`name` picks one of several named templates).
 */
export type SftChatTemplate = 'llama2' | { path: string; name?: string };

/**
 * Supervised fine-tuning: conversations (messages, Alpaca or ShareGPT records) rendered with a
 * chat template, the loss on the assistant's tokens only. `init` is required (fine-tuning starts
 * from trained weights); a `model` that is a model folder is its own `init` when none is given.
 */
export interface SftConfig extends StageBase {
  kind: 'sft';
  init: string;
  data: SftDataConfig;
  chatTemplate: SftChatTemplate;
  /** LoRA fine-tuning: adapters on the target Linears train, the base stays frozen; absent: full fine-tuning. */
  lora?: SftLora;
}

/**
 * LoRA in an SFT config (PEFT's LoraConfig under our names): only the adapters' A and B are
 * trained and kept in the optimizer; checkpoints hold the adapter in PEFT's format.
 */
export interface SftLora {
  /** Rank of A (r, in) and B (out, r). */
  r: number;
  /** The update is scaled by alpha / r (PEFT's lora_alpha). Default r (a scale of 1). */
  alpha: number;
  /** Dropout on the adapters' input while training. Default 0. */
  dropout: number;
  /**
   * PEFT's target_modules: module-name suffixes (["q_proj", "v_proj"], the default, as PEFT's
   * for LLaMA), a regular expression the whole module name must match, or "all-linear".
   */
  targetModules: string[] | string;
  /** Seeds A's initialisation and the dropout masks. Default: the config's seed. */
  seed: number;
}

export type { DpoConfig } from './config-dpo.js';

/** A stage config, discriminated by `kind`. */
export type StageConfig = PretrainConfig | SftConfig | DpoConfig | PpoConfig | RewardConfig;
export type { PpoConfig } from './ppo/config.js';
export type { RewardConfig, RewardObjective } from './config-reward.js';

/** Most kernel threads a config may ask for (a typo like 20000 must not spawn 20,000 threads). */
export const MAX_THREADS = 1024;


/** Fields every stage's config may hold. */
const COMMON_KEYS = [
  '$schema', 'comment', 'kind', 'name', 'runDir', 'model', 'init', 'tokenizer', 'seqLen', 'batchSize', 'gradAccum', 'tokenBudget', 'steps',
  'optimizer', 'schedule', 'evalEvery', 'evalBatches', 'checkpointEvery', 'keepCheckpoints', 'logEvery', 'seed', 'threads', 'peakFlops', 'context',
  'maxNonFiniteSteps', 'onDivergence', 'rollbackLrFactor', 'maxRollbacks', 'memoryLimitGiB', 'memoryCheck', 'device', 'precision', 'lossScale',
] as const;
/** The fields of each kind besides the common ones. */
const KIND_KEYS: Record<StageKind, readonly string[]> = { pretrain: ['data'], sft: ['data', 'chatTemplate', 'lora'], reward: REWARD_KEYS, ppo: PPO_KEYS, dpo: DPO_KEYS };

export interface ValidateOptions {
  /** Names the source in errors (the file path); default "config". */
  source?: string;
  /** Folder that relative paths are resolved against; default: none (paths kept as given). */
  baseDir?: string;
}

/**
 * Validates a parsed stage config, fills defaults, and resolves relative paths. `kind` picks the
 * stage; a config without it is a pretrain config.
 */
export function validateStageConfig(raw: unknown, opts: ValidateOptions = {}): StageConfig {
  const f = new Fields(opts.source ?? 'config');
  const c = f.object(raw, 'config');
  const kind = f.string(c.kind, 'kind', 'pretrain') as StageKind;
  if (!(STAGE_KINDS as readonly string[]).includes(kind)) f.fail('kind', `must be one of ${STAGE_KINDS.map((k) => `"${k}"`).join(', ')}, got ${JSON.stringify(c.kind)}`);
  f.known(c, '', [...COMMON_KEYS, ...KIND_KEYS[kind]]);
  const rel = relativeTo(opts.baseDir);
  const base = validateBase(f, c, kind, opts, rel);
  const cfg: StageConfig =
    kind === 'sft' ? validateSft(f, c, base, opts, rel)
    : kind === 'reward' ? validateRewardFields(c, base, opts)
    : kind === 'dpo' ? validateDpoFields(c, base, opts)
    : kind === 'ppo' ? validatePpo(c, base, opts)
    : { ...base, kind: 'pretrain', data: validateData(f, f.object(c.data ?? {}, 'data'), rel) };
  checkBudget(f, cfg);
  return cfg;
}

function validateSft(f: Fields, c: Json, base: StageBase, opts: ValidateOptions, rel: (p: string) => string): SftConfig {
  if (c.data === undefined) f.fail('data', 'missing: give data.sources (SFT files: messages, Alpaca or ShareGPT records)');
  const data = inFile(opts.source ?? 'config', () => validateSftDataConfig(c.data, { field: 'data', ...(opts.baseDir ? { baseDir: opts.baseDir } : {}) }));
  if (data.maxLength !== undefined && data.maxLength > base.seqLen)
    f.fail('data.maxLength', `${data.maxLength} exceeds seqLen ${base.seqLen}; an example must fit in a row`);
  const chatTemplate = validateChatTemplate(f, c.chatTemplate, rel);
  const init = validateInit(f, base, 'fine-tuning starts from trained weights');
  return { ...base, kind: 'sft', init, data, chatTemplate, ...(c.lora !== undefined ? { lora: validateLora(f, c.lora, base.seed) } : {}) };
}

function validateData(f: Fields, d: Json, rel: (p: string) => string): StageData {
  f.known(d, 'data', ['manifests', 'sample', 'weights', 'valFraction']);
  let manifests: string[] = [];
  if (d.manifests !== undefined) {
    const list: unknown = d.manifests;
    if (!Array.isArray(list)) f.fail('data.manifests', 'must be an array of paths');
    manifests = (list as unknown[]).map((m, i) => rel(f.string(m, `data.manifests[${i}]`)));
  }
  if (d.sample !== undefined && typeof d.sample !== 'boolean') f.fail('data.sample', `must be true or false, got ${JSON.stringify(d.sample)}`);
  const sample = (d.sample as boolean | undefined) ?? manifests.length === 0;
  if (manifests.length === 0 && !sample) f.fail('data', 'no data: give data.manifests (token shards) or set data.sample to true');
  let weights: Record<string, number> | undefined;
  if (d.weights !== undefined) {
    const w = f.object(d.weights, 'data.weights');
    weights = {};
    for (const [k, v] of Object.entries(w)) weights[k] = f.number(v, `data.weights.${k}`, (x) => x >= 0, 'a number >= 0');
    if (!Object.values(weights).some((x) => x > 0)) f.fail('data.weights', 'at least one category needs a weight above 0');
  }
  const valFraction = f.number(d.valFraction, 'data.valFraction', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0.01);
  return { manifests, sample, ...(weights ? { weights } : {}), valFraction };
}

function validateOptimizer(f: Fields, raw: unknown): StageOptimizer {
  const o = f.object(raw ?? {}, 'optimizer');
  const type = f.string(o.type, 'optimizer.type', 'adamw');
  if (!(OPTIMIZER_TYPES as readonly string[]).includes(type)) f.fail('optimizer.type', `must be ${OPTIMIZER_TYPES.map((t) => `"${t}"`).join(' or ')}, got ${JSON.stringify(o.type)}`);
  const common = ['type', 'lr', 'weightDecay', 'gradClip', 'decayEmbeddings', 'groups'];
  f.known(o, 'optimizer', type === 'adamw' ? [...common, 'beta1', 'beta2', 'eps'] : [...common, 'momentum', 'dampening', 'nesterov']);
  const bool = (v: unknown, field: string, dflt: boolean): boolean => {
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') f.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  let groups: StageParamGroup[] = [];
  if (o.groups !== undefined) {
    if (!Array.isArray(o.groups)) f.fail('optimizer.groups', 'must be an array of { match, name?, lrScale?, weightDecay? }');
    groups = (o.groups as unknown[]).map((g0, i) => {
      const field = `optimizer.groups[${i}]`;
      const g = f.object(g0, field);
      f.known(g, field, ['match', 'name', 'lrScale', 'weightDecay']);
      const match = f.string(g.match, `${field}.match`);
      try {
        groupPattern(match);
      } catch (err) {
        f.fail(`${field}.match`, (err as Error).message.replace(/^match: /, ''));
      }
      return {
        match,
        ...(g.name !== undefined ? { name: f.string(g.name, `${field}.name`) } : {}),
        ...(g.lrScale !== undefined ? { lrScale: f.number(g.lrScale, `${field}.lrScale`, (x) => x >= 0, 'a number >= 0') } : {}),
        ...(g.weightDecay !== undefined ? { weightDecay: f.number(g.weightDecay, `${field}.weightDecay`, (x) => x >= 0, 'a number >= 0') } : {}),
      };
    });
    const names = groups.map((g, i) => g.name ?? `groups[${i}]`);
    names.forEach((n, i) => {
      if (n === 'decay' || n === 'no_decay' || names.indexOf(n) !== i) f.fail(`optimizer.groups[${i}].name`, `"${n}" is taken (the default groups are "decay" and "no_decay"; names must differ)`);
    });
  }
  const base = {
    lr: f.number(o.lr, 'optimizer.lr', (x) => x > 0, 'a positive number'),
    weightDecay: f.number(o.weightDecay, 'optimizer.weightDecay', (x) => x >= 0, 'a number >= 0', type === 'adamw' ? 0.1 : 0),
    gradClip: f.number(o.gradClip, 'optimizer.gradClip', (x) => x >= 0, 'a number >= 0 (0: no clipping)', 1.0),
    decayEmbeddings: bool(o.decayEmbeddings, 'optimizer.decayEmbeddings', true),
    groups,
  };
  if (type === 'sgd') {
    const momentum = f.number(o.momentum, 'optimizer.momentum', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0.9);
    const dampening = f.number(o.dampening, 'optimizer.dampening', (x) => x >= 0 && x <= 1, 'a number in [0, 1]', 0);
    const nesterov = bool(o.nesterov, 'optimizer.nesterov', false);
    if (nesterov && (momentum === 0 || dampening !== 0)) f.fail('optimizer.nesterov', 'needs momentum > 0 and dampening 0');
    return { type: 'sgd', ...base, momentum, dampening, nesterov };
  }
  return {
    type: 'adamw',
    ...base,
    beta1: f.number(o.beta1, 'optimizer.beta1', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0.9),
    beta2: f.number(o.beta2, 'optimizer.beta2', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0.95),
    eps: f.number(o.eps, 'optimizer.eps', (x) => x > 0, 'a positive number', 1e-8),
  };
}

/** The common fields (everything but the kind's own). */
function validateBase(f: Fields, c: Json, stageKind: StageKind, opts: ValidateOptions, rel: (p: string) => string): StageBase {
  const isPathLike = (s: string): boolean => s.includes('/') || s.includes('\\') || s.endsWith('.json') || s.startsWith('.');
  const name = f.string(c.name, 'name');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) f.fail('name', `"${name}" must be letters, digits, _ . - (it names the run folder)`);
  let model: string | ModelConfig;
  if (typeof c.model === 'object' && c.model !== null && !Array.isArray(c.model)) model = validateConfig(c.model, `${opts.source ?? 'config'}: model`);
  else model = f.string(c.model, 'model');
  const tokenizer = f.string(c.tokenizer, 'tokenizer', 'byte');

  const seqLen = f.int(c.seqLen, 'seqLen', 1);
  const batchSize = f.int(c.batchSize, 'batchSize', 1);
  const gradAccum = f.int(c.gradAccum, 'gradAccum', 1, 1);
  if (c.tokenBudget === undefined && c.steps === undefined) f.fail('steps', 'missing: give steps or tokenBudget');
  if (c.tokenBudget !== undefined && c.steps !== undefined) f.fail('tokenBudget', 'give steps or tokenBudget, not both');
  const tokenBudget = c.tokenBudget === undefined ? undefined : f.int(c.tokenBudget, 'tokenBudget', 1);
  const steps = c.steps === undefined ? undefined : f.int(c.steps, 'steps', 1);

  const optimizer = validateOptimizer(f, c.optimizer);
  const s = f.object(c.schedule ?? {}, 'schedule');
  f.known(s, 'schedule', ['kind', 'warmupSteps', 'minLr', 'decaySteps', 'decayShape']);
  const kind0 = f.string(s.kind, 'schedule.kind', 'cosine');
  if (kind0 !== 'cosine' && kind0 !== 'constant' && kind0 !== 'wsd') f.fail('schedule.kind', `must be "cosine", "constant" or "wsd", got "${kind0}"`);
  const kind = kind0 as StageSchedule['kind'];
  const schedule: StageSchedule = {
    kind,
    warmupSteps: f.int(s.warmupSteps, 'schedule.warmupSteps', 0, 0),
    minLr: f.number(s.minLr, 'schedule.minLr', (x) => x >= 0 && x <= optimizer.lr, `a number in [0, optimizer.lr = ${optimizer.lr}]`, optimizer.lr / 10),
  };
  if (kind === 'wsd') schedule.decaySteps = f.int(s.decaySteps, 'schedule.decaySteps', 0);
  else if (s.decaySteps !== undefined) f.fail('schedule.decaySteps', 'only a "wsd" schedule takes decaySteps');
  if (s.decayShape !== undefined) {
    if (kind !== 'wsd') f.fail('schedule.decayShape', 'only a "wsd" schedule takes decayShape');
    if (s.decayShape !== 'linear' && s.decayShape !== 'cosine') f.fail('schedule.decayShape', `must be "linear" or "cosine", got ${JSON.stringify(s.decayShape)}`);
    schedule.decayShape = s.decayShape as 'linear' | 'cosine';
  }

  let context: StageContext | undefined;
  if (c.context !== undefined) {
    const x = f.object(c.context, 'context');
    f.known(x, 'context', ['ropeTheta', 'posScale']);
    context = {};
    if (x.ropeTheta !== undefined) context.ropeTheta = f.number(x.ropeTheta, 'context.ropeTheta', (v) => v > 0, 'a positive number');
    if (x.posScale !== undefined) context.posScale = f.number(x.posScale, 'context.posScale', (v) => v >= 1, 'a number >= 1');
    if (context.ropeTheta === undefined && context.posScale === undefined) f.fail('context', 'give ropeTheta and/or posScale, or leave context out');
  }

  const onDivergence = f.string(c.onDivergence, 'onDivergence', 'stop');
  if (onDivergence !== 'stop' && onDivergence !== 'rollback') f.fail('onDivergence', `must be "stop" or "rollback", got ${JSON.stringify(onDivergence)}`);
  if (c.memoryCheck !== undefined && typeof c.memoryCheck !== 'boolean') f.fail('memoryCheck', `must be true or false, got ${JSON.stringify(c.memoryCheck)}`);
  const threads = f.int(c.threads, 'threads', 0, 0);
  if (threads > MAX_THREADS) f.fail('threads', `must be at most ${MAX_THREADS}, got ${threads} (0 uses one per hardware thread)`);
  const device = f.string(c.device, 'device', 'cpu');
  if (device !== 'cpu' && device !== 'cuda') f.fail('device', `must be "cpu" or "cuda", got ${JSON.stringify(device)}`);
  // Refused here, before any data or weights are read, with the binary's own reason.
  const noCuda = device === 'cuda' ? deviceUnavailableReason('cuda') : null;
  if (noCuda) f.fail('device', `"cuda" cannot be used here: ${noCuda}; use "cpu" (patentgpt info says what the binary has and found)`);
  const precision = f.string(c.precision, 'precision', 'f32');
  if (precision !== 'f32' && precision !== 'bf16' && precision !== 'fp16')
    f.fail('precision', `must be "f32", "bf16" or "fp16" (mixed precision: 16-bit matmuls, f32 weights and optimizer state), got ${JSON.stringify(precision)}`);
  const lossScale = c.lossScale as LossScaleOption | undefined;
  if (lossScale !== undefined) {
    try {
      LossScaler.create(lossScale);
    } catch (err) {
      f.fail('lossScale', (err as Error).message.replace(/^lossScale: /, ''));
    }
  }

  return {
    kind: stageKind,
    name,
    // run folders are relative to the working directory (see the top of the file)
    runDir: c.runDir === undefined ? path.join('runs', name) : f.string(c.runDir, 'runDir'),
    model: typeof model === 'string' && isPathLike(model) ? rel(model) : model,
    ...(c.init !== undefined ? { init: path.resolve(f.string(c.init, 'init')) } : {}),
    tokenizer: tokenizer === 'byte' || tokenizer === 'llama2' ? tokenizer : rel(tokenizer),
    seqLen,
    batchSize,
    gradAccum,
    ...(tokenBudget !== undefined ? { tokenBudget } : {}),
    ...(steps !== undefined ? { steps } : {}),
    optimizer,
    schedule,
    evalEvery: f.int(c.evalEvery, 'evalEvery', 0, 100),
    evalBatches: f.int(c.evalBatches, 'evalBatches', 1, 10),
    checkpointEvery: f.int(c.checkpointEvery, 'checkpointEvery', 0, 500),
    keepCheckpoints: f.int(c.keepCheckpoints, 'keepCheckpoints', 0, 3),
    logEvery: f.int(c.logEvery, 'logEvery', 1, 1),
    seed: f.int(c.seed, 'seed', 0, 0),
    threads,
    peakFlops: f.number(c.peakFlops, 'peakFlops', (x) => x >= 0, 'a number >= 0', 0),
    ...(context ? { context } : {}),
    maxNonFiniteSteps: f.int(c.maxNonFiniteSteps, 'maxNonFiniteSteps', 0, 3),
    onDivergence: onDivergence as StageBase['onDivergence'],
    rollbackLrFactor: f.number(c.rollbackLrFactor, 'rollbackLrFactor', (x) => x > 0 && x < 1, 'a number in (0, 1)', 0.5),
    maxRollbacks: f.int(c.maxRollbacks, 'maxRollbacks', 0, 3),
    memoryLimitGiB: f.number(c.memoryLimitGiB, 'memoryLimitGiB', (x) => x >= 0, 'a number >= 0 (0: the machine\'s memory)', 0),
    memoryCheck: (c.memoryCheck as boolean | undefined) ?? true,
    device: device as 'cpu' | 'cuda',
    precision: precision as 'f32' | 'bf16' | 'fp16',
    ...(lossScale !== undefined ? { lossScale } : {}),
  };
}

/** The warmup and WSD decay fit in the run's steps. */
function checkBudget(f: Fields, cfg: StageConfig): void {
  const schedule = cfg.schedule;
  const total = totalSteps(cfg);
  if (schedule.warmupSteps > total) f.fail('schedule.warmupSteps', `${schedule.warmupSteps} exceeds the run's ${total} steps`);
  if (schedule.kind === 'wsd' && schedule.warmupSteps + schedule.decaySteps! > total)
    f.fail('schedule.decaySteps', `warmupSteps + decaySteps = ${schedule.warmupSteps + schedule.decaySteps!} exceeds the run's ${total} steps`);
}

/**
 * Reads, parses and validates a stage config file (relative paths resolved against its folder).
 * `overrides` replace top-level fields before validation (the CLI's --steps, --run-dir); setting
 * steps drops tokenBudget and the other way round.
 */
export async function loadStageConfig(file: string, overrides: Record<string, unknown> = {}): Promise<StageConfig> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${file}: cannot read the config (${(err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${file}: not valid JSON (${(err as Error).message})`);
  }
  if (Object.keys(overrides).length > 0 && typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
    const o: Json = { ...(raw as Json) };
    if ('steps' in overrides) delete o.tokenBudget;
    if ('tokenBudget' in overrides) delete o.steps;
    for (const [k, v] of Object.entries(overrides)) if (v !== undefined) o[k] = v;
    // A shorter run keeps its schedule's shape: warmup (and a WSD decay) shrink to fit the steps.
    const steps = overrides.steps;
    if (typeof steps === 'number' && typeof o.schedule === 'object' && o.schedule !== null) {
      const sch: Json = { ...(o.schedule as Json) };
      const warm = typeof sch.warmupSteps === 'number' ? sch.warmupSteps : 0;
      const decay = typeof sch.decaySteps === 'number' ? sch.decaySteps : 0;
      if (warm + decay > steps) {
        const f = steps / (warm + decay);
        sch.warmupSteps = Math.floor(warm * f);
        if (typeof sch.decaySteps === 'number') sch.decaySteps = Math.floor(decay * f);
      }
      o.schedule = sch;
    }
    raw = o;
  }
  return validateStageConfig(raw, { source: file, baseDir: path.dirname(path.resolve(file)) });
}

/** Tokens one optimizer step trains on (all ranks). */
export function tokensPerStep(cfg: StageBase, worldSize = 1): number {
  return cfg.batchSize * cfg.gradAccum * cfg.seqLen * worldSize;
}

/** Optimizer steps of the stage: `steps`, or the token budget rounded up to whole steps. */
export function totalSteps(cfg: StageBase, worldSize = 1): number {
  if (cfg.steps !== undefined) return cfg.steps;
  return Math.ceil(cfg.tokenBudget! / tokensPerStep(cfg, worldSize));
}

/** The learning-rate schedule of the stage, over its total steps. */
export function stageSchedule(cfg: StageBase, worldSize = 1): Schedule {
  const s = cfg.schedule;
  const lr = cfg.optimizer.lr;
  const total = totalSteps(cfg, worldSize);
  switch (s.kind) {
    case 'constant':
      return { kind: 'constant', lr, warmupSteps: s.warmupSteps };
    case 'cosine':
      return { kind: 'cosine', lr, warmupSteps: s.warmupSteps, totalSteps: total, minLr: s.minLr };
    case 'wsd':
      return { kind: 'wsd', lr, warmupSteps: s.warmupSteps, totalSteps: total, decaySteps: s.decaySteps!, minLr: s.minLr, ...(s.decayShape ? { decayShape: s.decayShape } : {}) };
  }
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Json)[k])]));
  return v;
}

/**
 * sha256 (hex, 16 chars) of the fields that decide what a run computes; a checkpoint saved under
 * one hash should only be resumed under the same. Logging, evaluation and checkpoint cadence,
 * threads, the device, the run folder, the divergence policy and the memory check are left out: changing
 * them does not change the training (a diverged run may be resumed with onDivergence "rollback").
 * Fields that came after the first runs (kind "pretrain", optimizer type "adamw",
 * decayEmbeddings true, no groups, precision "f32") are left out at their defaults, so a config written before
 * them hashes as it did and its runs resume.
 */
export function configHash(cfg: StageConfig): string {
  const {
    runDir: _r, evalEvery: _e, evalBatches: _b, checkpointEvery: _c, keepCheckpoints: _k, logEvery: _l, threads: _t, peakFlops: _p,
    maxNonFiniteSteps: _n, onDivergence: _d, rollbackLrFactor: _f, maxRollbacks: _m, memoryLimitGiB: _g, memoryCheck: _x, device: _dv, ...rest
  } = cfg;
  const hashed: Json = { ...rest };
  if (hashed.kind === 'pretrain') delete hashed.kind;
  if (hashed.precision === 'f32') delete hashed.precision;
  // Loss scaling decides which steps are skipped: hashed, unless it is its precision's default.
  if (cfg.lossScale !== undefined && JSON.stringify(cfg.lossScale) === JSON.stringify(resolveLossScale(undefined, cfg.precision ?? 'f32'))) delete hashed.lossScale;
  const o: Json = { ...cfg.optimizer };
  if (o.type === 'adamw') delete o.type;
  if (o.decayEmbeddings === true) delete o.decayEmbeddings;
  if (Array.isArray(o.groups) && o.groups.length === 0) delete o.groups;
  hashed.optimizer = o;
  return createHash('sha256').update(JSON.stringify(canonical(hashed))).digest('hex').slice(0, 16);
}
