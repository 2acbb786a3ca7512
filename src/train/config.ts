// The stage config of continued pretraining (one JSON file per stage), validated at the edge:
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
import { validateConfig, type ModelConfig } from '../models/config.js';
import type { Schedule } from './schedule.js';

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

export interface StageOptimizer {
  /** Peak learning rate. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global gradient-norm clip; 0 turns clipping off. */
  gradClip: number;
}

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

export interface StageConfig {
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
  data: StageData;
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
}

/** Most kernel threads a config may ask for (a typo like 20000 must not spawn 20,000 threads). */
export const MAX_THREADS = 1024;

type Json = Record<string, unknown>;

class Fields {
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

const TOP_KEYS = [
  '$schema', 'comment', 'name', 'runDir', 'model', 'init', 'tokenizer', 'data', 'seqLen', 'batchSize', 'gradAccum', 'tokenBudget', 'steps',
  'optimizer', 'schedule', 'evalEvery', 'evalBatches', 'checkpointEvery', 'keepCheckpoints', 'logEvery', 'seed', 'threads', 'peakFlops', 'context',
  'maxNonFiniteSteps', 'onDivergence', 'rollbackLrFactor', 'maxRollbacks', 'memoryLimitGiB', 'memoryCheck',
] as const;

export interface ValidateOptions {
  /** Names the source in errors (the file path); default "config". */
  source?: string;
  /** Folder that relative paths are resolved against; default: none (paths kept as given). */
  baseDir?: string;
}

/** Validates a parsed stage config, fills defaults, and resolves relative paths. */
export function validateStageConfig(raw: unknown, opts: ValidateOptions = {}): StageConfig {
  const f = new Fields(opts.source ?? 'config');
  const c = f.object(raw, 'config');
  f.known(c, '', TOP_KEYS);
  const rel = (p: string): string => (opts.baseDir && !path.isAbsolute(p) ? path.resolve(opts.baseDir, p) : p);
  const isPathLike = (s: string): boolean => s.includes('/') || s.includes('\\') || s.endsWith('.json') || s.startsWith('.');

  const name = f.string(c.name, 'name');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) f.fail('name', `"${name}" must be letters, digits, _ . - (it names the run folder)`);
  let model: string | ModelConfig;
  if (typeof c.model === 'object' && c.model !== null && !Array.isArray(c.model)) model = validateConfig(c.model, `${opts.source ?? 'config'}: model`);
  else model = f.string(c.model, 'model');
  const tokenizer = f.string(c.tokenizer, 'tokenizer', 'byte');

  const d = f.object(c.data ?? {}, 'data');
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

  const seqLen = f.int(c.seqLen, 'seqLen', 1);
  const batchSize = f.int(c.batchSize, 'batchSize', 1);
  const gradAccum = f.int(c.gradAccum, 'gradAccum', 1, 1);
  if (c.tokenBudget === undefined && c.steps === undefined) f.fail('steps', 'missing: give steps or tokenBudget');
  if (c.tokenBudget !== undefined && c.steps !== undefined) f.fail('tokenBudget', 'give steps or tokenBudget, not both');
  const tokenBudget = c.tokenBudget === undefined ? undefined : f.int(c.tokenBudget, 'tokenBudget', 1);
  const steps = c.steps === undefined ? undefined : f.int(c.steps, 'steps', 1);

  const o = f.object(c.optimizer ?? {}, 'optimizer');
  f.known(o, 'optimizer', ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'gradClip']);
  const optimizer: StageOptimizer = {
    lr: f.number(o.lr, 'optimizer.lr', (x) => x > 0, 'a positive number'),
    beta1: f.number(o.beta1, 'optimizer.beta1', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0.9),
    beta2: f.number(o.beta2, 'optimizer.beta2', (x) => x >= 0 && x < 1, 'a number in [0, 1)', 0.95),
    eps: f.number(o.eps, 'optimizer.eps', (x) => x > 0, 'a positive number', 1e-8),
    weightDecay: f.number(o.weightDecay, 'optimizer.weightDecay', (x) => x >= 0, 'a number >= 0', 0.1),
    gradClip: f.number(o.gradClip, 'optimizer.gradClip', (x) => x >= 0, 'a number >= 0 (0: no clipping)', 1.0),
  };

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

  const cfg: StageConfig = {
    name,
    // run folders are relative to the working directory (see the top of the file)
    runDir: c.runDir === undefined ? path.join('runs', name) : f.string(c.runDir, 'runDir'),
    model: typeof model === 'string' && isPathLike(model) ? rel(model) : model,
    ...(c.init !== undefined ? { init: path.resolve(f.string(c.init, 'init')) } : {}),
    tokenizer: tokenizer === 'byte' || tokenizer === 'llama2' ? tokenizer : rel(tokenizer),
    data: { manifests, sample, ...(weights ? { weights } : {}), valFraction },
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
    onDivergence: onDivergence as StageConfig['onDivergence'],
    rollbackLrFactor: f.number(c.rollbackLrFactor, 'rollbackLrFactor', (x) => x > 0 && x < 1, 'a number in (0, 1)', 0.5),
    maxRollbacks: f.int(c.maxRollbacks, 'maxRollbacks', 0, 3),
    memoryLimitGiB: f.number(c.memoryLimitGiB, 'memoryLimitGiB', (x) => x >= 0, 'a number >= 0 (0: the machine\'s memory)', 0),
    memoryCheck: (c.memoryCheck as boolean | undefined) ?? true,
  };
  const total = totalSteps(cfg);
  if (schedule.warmupSteps > total) f.fail('schedule.warmupSteps', `${schedule.warmupSteps} exceeds the run's ${total} steps`);
  if (kind === 'wsd' && schedule.warmupSteps + schedule.decaySteps! > total)
    f.fail('schedule.decaySteps', `warmupSteps + decaySteps = ${schedule.warmupSteps + schedule.decaySteps!} exceeds the run's ${total} steps`);
  return cfg;
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
export function tokensPerStep(cfg: StageConfig, worldSize = 1): number {
  return cfg.batchSize * cfg.gradAccum * cfg.seqLen * worldSize;
}

/** Optimizer steps of the stage: `steps`, or the token budget rounded up to whole steps. */
export function totalSteps(cfg: StageConfig, worldSize = 1): number {
  if (cfg.steps !== undefined) return cfg.steps;
  return Math.ceil(cfg.tokenBudget! / tokensPerStep(cfg, worldSize));
}

/** The learning-rate schedule of the stage, over its total steps. */
export function stageSchedule(cfg: StageConfig, worldSize = 1): Schedule {
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
 * threads, the run folder, the divergence policy and the memory check are left out: changing
 * them does not change the training (a diverged run may be resumed with onDivergence "rollback").
 */
export function configHash(cfg: StageConfig): string {
  const {
    runDir: _r, evalEvery: _e, evalBatches: _b, checkpointEvery: _c, keepCheckpoints: _k, logEvery: _l, threads: _t, peakFlops: _p,
    maxNonFiniteSteps: _n, onDivergence: _d, rollbackLrFactor: _f, maxRollbacks: _m, memoryLimitGiB: _g, memoryCheck: _x, ...rest
  } = cfg;
  return createHash('sha256').update(JSON.stringify(canonical(rest))).digest('hex').slice(0, 16);
}
