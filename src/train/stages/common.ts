// What every training stage shares, so a stage module holds only its data and its loss: the
// model config (a preset, a config.json / Hugging Face folder, or inline; context extension),
// the memory check, the run folder and its resume point (refused before anything is written),
// the tokenizer, the model with its initial weights (`init`) and checkpoint files (the model
// folder's files), the peak FLOP/s for MFU, the resolved config.json, and the trainer built from
// the config's common fields.
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadPreferenceData, PreferenceBatchStream, type PreferenceData, type PreferenceDataConfig, type PreferenceRenderer } from '../../data/preference/index.js';
import { PatentGPTError } from '../../errors.js';
import { SparseMoE } from '../../nn/index.js';
import {
  LlamaForCausalLM, extendContext, flopsPerToken, folderFiles, fromHFConfig, headDim, loadWeights, parameterCount, preset, readConfig, resizeVocabulary,
  safetensorsContent, validateConfig, type LlamaOptions, type ModelConfig,
} from '../../models/index.js';
import { measurePeakFlops, noGrad, runtimeInfo, setNumThreads, type Tensor } from '../../tensor/index.js';
import { ByteTokenizer } from '../../tokenizer/byte.js';
import { SentencePieceTokenizer } from '../../tokenizer/sentencepiece.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { CheckpointManager, loadCheckpoint, type Checkpoint } from '../checkpoint.js';
import { MAX_THREADS, stageSchedule, totalSteps, type StageBase, type StageOptimizer } from '../config.js';
import { checkTrainingFits } from '../memory.js';
import type { MetricRecord, StepMetrics } from '../metrics.js';
import type { OptimizerOptions } from '../optimizer.js';
import type { ProgressStream } from '../progress.js';
import { Trainer, findResumePoint, type DataParallelEngine, type TrainBatchInfo, type TrainResult, type TrainTask, type TrainerOptions } from '../trainer.js';

/** How a stage runs, whatever its kind (the CLI's flags, hooks, data parallelism). */
export interface StageRunOptions {
  /** The config's file, named in config errors (default "config"). */
  configFile?: string;
  /** Progress output (bar on a terminal, JSON lines otherwise); null: none. */
  progress?: ProgressStream | null;
  /** Messages (data, model, peak FLOP/s); default: none. */
  log?: (message: string) => void;
  signal?: AbortSignal;
  /** Stop on SIGINT/SIGTERM with a checkpoint (the CLI). */
  handleSignals?: boolean;
  /** Start over in a run folder whose checkpoints all fail to verify (the CLI's --restart-from-scratch). */
  restartFromScratch?: boolean;
  /** Data parallelism: rank, ranks, and the engine (src/distributed) or a plain gradient all-reduce hook. */
  rank?: number;
  worldSize?: number;
  allReduce?: (grads: Tensor[], step: number) => void | Promise<void>;
  dataParallel?: DataParallelEngine;
  /** Each metrics record as it is written (rank 0). */
  onMetrics?: (record: MetricRecord) => void;
  /** The model's feed-forward module per layer and its checkpoint name (SMoE layers, tests); default LLaMA's SwiGLU MLP. */
  model?: Pick<LlamaOptions, 'feedForward' | 'feedForwardName'>;
}

export const cfgError = (source: string, field: string, message: string): PatentGPTError =>
  new PatentGPTError('E_CONFIG', `${source}: ${field}: ${message}`);

/** The stage's base model config: a preset name, a config.json / HF folder path, or inline. */
export async function resolveModelConfig(model: StageBase['model'], source = 'config'): Promise<ModelConfig> {
  if (typeof model !== 'string') return validateConfig(model, `${source}: model`);
  const looksLikePath = model.includes('/') || model.includes('\\') || model.endsWith('.json') || model.startsWith('.');
  if (!looksLikePath) {
    try {
      return preset(model).config;
    } catch (err) {
      throw cfgError(source, 'model', (err as Error).message);
    }
  }
  let st: fs.Stats;
  try {
    st = await fsp.stat(model);
  } catch {
    throw cfgError(source, 'model', `${model}: no such preset, file or folder`);
  }
  if (st.isDirectory()) return readConfig(model);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await fsp.readFile(model, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw cfgError(source, 'model', `${model}: not a readable JSON model config (${(err as Error).message})`);
  }
  return 'hidden_size' in json ? fromHFConfig(json, model) : validateConfig(json, model);
}

/** The model config a stage trains: the base config with the stage's context extension applied. */
export function stageModelConfig(base: ModelConfig, cfg: Pick<StageBase, 'seqLen' | 'context'>, source = 'config'): ModelConfig {
  let m = base;
  const ctx = cfg.context;
  if (ctx?.ropeTheta !== undefined) {
    if (ctx.ropeTheta < m.ropeTheta) throw cfgError(source, 'context.ropeTheta', `${ctx.ropeTheta} is below the model's ropeTheta ${m.ropeTheta}; raise the base to extend the context`);
    m = extendContext(m, { method: 'base', ropeTheta: ctx.ropeTheta, maxSeqLen: ctx.posScale === undefined ? Math.max(m.maxSeqLen, cfg.seqLen) : m.maxSeqLen });
  }
  if (ctx?.posScale !== undefined) {
    const maxSeqLen = m.maxSeqLen * ctx.posScale;
    if (!Number.isSafeInteger(maxSeqLen)) throw cfgError(source, 'context.posScale', `${ctx.posScale} x maxSeqLen ${m.maxSeqLen} must be a whole number of positions`);
    m = extendContext(m, { method: 'linear', maxSeqLen });
  }
  if (cfg.seqLen > m.maxSeqLen)
    throw cfgError(source, 'seqLen', `${cfg.seqLen} exceeds the model's context of ${m.maxSeqLen} tokens; extend it with context.ropeTheta or context.posScale (stage 2), or lower seqLen`);
  return m;
}

/**
 * The folder `init` names: a run folder (its newest valid checkpoint; older ones are used, with a
 * warning, when the newest do not verify), a checkpoint folder (verified) or a model folder. A
 * LoRA run's checkpoint holds only its adapter: refused, with the merge command to run first.
 */
export async function resolveInitFolder(init: string, log: (m: string) => void = () => {}): Promise<string> {
  if (!fs.existsSync(init)) throw new PatentGPTError('E_CONFIG', `init: ${init}: no such run, checkpoint or model folder`);
  let dir = init;
  if (fs.existsSync(path.join(init, 'checkpoints'))) {
    const skipped: { dir: string; why: string }[] = [];
    const latest = await new CheckpointManager(init, { keep: 0, onSkip: (d, e) => skipped.push({ dir: d, why: e.message }) }).latest();
    if (!latest)
      throw new PatentGPTError('E_CHECKPOINT', `init: ${init}: the run has no complete checkpoint to start from` +
        (skipped.length ? ` (none verifies: ${skipped.map((x) => x.why).join('; ')})` : ''));
    if (skipped.length > 0)
      log(`warning: init: the newest checkpoint ${skipped[0]!.dir} does not verify (${skipped[0]!.why}); starting from the older ${latest.dir}` +
        (skipped.length > 1 ? ` (${skipped.length - 1} more passed over: ${skipped.slice(1).map((x) => path.basename(x.dir)).join(', ')})` : ''));
    dir = latest.dir;
  } else if (fs.existsSync(path.join(init, 'checksums.json')) || fs.existsSync(path.join(init, 'state.json'))) {
    dir = (await loadCheckpoint(init)).dir; // verifies every checksum first
  }
  // a LoRA run's checkpoints hold only its adapter: the weights to start from are base + adapter, merged
  if (fs.existsSync(path.join(dir, 'adapter_config.json')) && !fs.existsSync(path.join(dir, 'config.json')))
    throw new PatentGPTError('E_CONFIG', `init: ${dir} holds a LoRA adapter, not a model; merge it into its base first (patentgpt sft merge --base RUN/final --adapter RUN/final/adapter --out DIR) and give DIR as init`);
  return dir;
}

/**
 * Loads starting weights from the folder `init` names (resolveInitFolder). A checkpoint with a
 * smaller vocabulary than the model (LLaMA-2's 32,000 before the merged 55,296) is loaded and its
 * embedding and output rows grown, new rows at the mean of the old ones; any other shape
 * difference is refused naming the tensor. Returns the folder the weights came from.
 */
export async function loadInitialWeights(model: LlamaForCausalLM, init: string, log: (m: string) => void = () => {}): Promise<string> {
  const dir = await resolveInitFolder(init, log);
  const V = model.config.vocabSize;
  const fromVocab = fs.existsSync(path.join(dir, 'config.json')) ? (await readConfig(dir)).vocabSize : V;
  if (fromVocab > V)
    throw new PatentGPTError('E_SHAPE', `init: ${path.join(dir, 'config.json')}: vocab_size ${fromVocab} is larger than the model's ${V}`);
  if (fromVocab === V) {
    await loadWeights(model, dir);
    return dir;
  }
  const small = new LlamaForCausalLM({ ...model.config, vocabSize: fromVocab }, { init: 'zeros' });
  try {
    await loadWeights(small, dir);
    resizeVocabulary(small, V);
    const src = new Map(small.namedParameters());
    noGrad(() => {
      for (const [name, p] of model.namedParameters()) p.write(src.get(name)!.toArray() as Float32Array);
    });
  } finally {
    small.dispose();
  }
  log(`vocabulary grown from ${fromVocab} to ${V} rows (new rows: the mean of the old ones)`);
  return dir;
}

/** The stage's text tokenizer: "byte", "llama2" (LLaMA-2's vocabulary, no file needed) or a tokenizer.model path. */
export async function stageTokenizer(name: string, file: string): Promise<ByteTokenizer | SentencePieceTokenizer> {
  if (name === 'byte') return new ByteTokenizer();
  if (name === 'llama2') return SentencePieceTokenizer.llama2();
  try {
    return SentencePieceTokenizer.load(await fsp.readFile(name));
  } catch (err) {
    throw cfgError(file, 'tokenizer', `"${name}" is not "byte", "llama2" or a readable SentencePiece tokenizer.model: ${(err as Error).message}`);
  }
}

/** The trainer's optimizer options from the config's optimizer (type, hyperparameters, groups). */
export function optimizerOptions(o: StageOptimizer): OptimizerOptions {
  const common: OptimizerOptions = {
    type: o.type, weightDecay: o.weightDecay, maxGradNorm: o.gradClip, decayEmbeddings: o.decayEmbeddings,
    ...(o.groups.length > 0 ? { groups: o.groups } : {}),
  };
  return o.type === 'sgd'
    ? { ...common, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov }
    : { ...common, beta1: o.beta1, beta2: o.beta2, eps: o.eps };
}

/** What prepareStage found: the model config, tokenizer, run folder and resume point. */
export interface StageSetup {
  /** Names the config in errors. */
  file: string;
  log: (message: string) => void;
  rank: number;
  worldSize: number;
  runDir: string;
  /** The model config trained (after any context extension). */
  modelConfig: ModelConfig;
  tokenizer: ByteTokenizer | SentencePieceTokenizer;
  configHash: string;
  /** The checkpoint the run resumes from; null: a fresh start. */
  resumeFrom: Checkpoint | null;
  /**
   * launch --global-batch on more than one rank: the config's batchSize x gradAccum is the global
   * batch and the ranks split gradAccum (each runs gradAccum / worldSize micro-batches a step).
   */
  globalBatch: boolean;
  /** Micro-batches each rank runs per optimizer step: gradAccum, or its share under globalBatch. */
  rankGradAccum: number;
}

/** Ranks whose batches make one optimizer step's budget: 1 under --global-batch (the config's batch is the whole step), else worldSize. */
export const batchRanks = (setup: Pick<StageSetup, 'globalBatch' | 'worldSize'>): number => (setup.globalBatch ? 1 : setup.worldSize);

/**
 * Everything a stage checks before it allocates or writes: threads, the model config and
 * whether a step fits in memory, the resume point (a resume that would be refused is refused
 * now, before the run folder changes), the tokenizer against the model's vocabulary; then the
 * run folder is made. `hash` is the stage's configHash (a stage may fold in more, e.g. --data).
 */
export async function prepareStage(cfg: StageBase, opts: StageRunOptions, hash: string): Promise<StageSetup> {
  const log = opts.log ?? ((): void => {});
  const rank = opts.rank ?? 0;
  const worldSize = opts.worldSize ?? 1;
  const file = opts.configFile ?? 'config';
  if (!Number.isSafeInteger(cfg.threads) || cfg.threads < 0 || cfg.threads > MAX_THREADS)
    throw cfgError(file, 'threads', `must be an integer in [0, ${MAX_THREADS}], got ${cfg.threads}`);
  if (cfg.threads > 0) setNumThreads(cfg.threads);

  // Global-batch data parallelism (launch --global-batch): the ranks split gradAccum, so the step,
  // the budget, the schedule and every stage's loss weighting are those of one rank.
  const globalBatch = opts.dataParallel?.globalBatch === true && worldSize > 1;
  if (globalBatch && cfg.gradAccum % worldSize !== 0)
    throw cfgError(file, 'gradAccum', `${cfg.gradAccum} is not a multiple of the ${worldSize} ranks (--global-batch splits it among them)`);
  const rankGradAccum = globalBatch ? cfg.gradAccum / worldSize : cfg.gradAccum;

  const base = await resolveModelConfig(cfg.model, file);
  const modelConfig = stageModelConfig(base, cfg, file);
  checkTrainingFits(modelConfig, {
    batchSize: cfg.batchSize, seqLen: cfg.seqLen, source: file, optimizerBuffers: cfg.optimizer.type === 'adamw' ? 2 : cfg.optimizer.momentum > 0 ? 1 : 0,
    ...loraTrainable(cfg, modelConfig),
    ...(!cfg.memoryCheck ? { limit: Number.POSITIVE_INFINITY } : cfg.memoryLimitGiB > 0 ? { limit: cfg.memoryLimitGiB * 1024 ** 3, limitSource: 'of memoryLimitGiB' } : {}),
  });

  const resumeFrom = await findResumePoint({
    runDir: cfg.runDir, configHash: hash, rank, ...(opts.restartFromScratch ? { restartFromScratch: true } : {}),
    onSkip: (d, e) => log(`skipped a checkpoint that does not verify: ${d}: ${e.message}`),
  });

  // Built even when the data comes tokenized: checkpoints record it (model folders name their
  // tokenizer and its special ids).
  const tokenizer = await stageTokenizer(cfg.tokenizer, file);
  if (tokenizer.vocabSize > modelConfig.vocabSize)
    throw cfgError(file, 'model.vocabSize', `${modelConfig.vocabSize} is smaller than the tokenizer's ${tokenizer.vocabSize} ids (tokenizer: "${cfg.tokenizer}")`);
  await fsp.mkdir(cfg.runDir, { recursive: true });
  return { file, log, rank, worldSize, runDir: cfg.runDir, modelConfig, tokenizer, configHash: hash, resumeFrom, globalBatch, rankGradAccum };
}

/**
 * Under LoRA only the adapters get gradients and optimizer state: at most r * (in + out) per
 * projection of every layer (all of them targeted; the real targets are resolved on the model).
 */
function loraTrainable(cfg: StageBase, m: ModelConfig): { trainableParameters?: number } {
  const r = (cfg as { lora?: { r: number } }).lora?.r;
  if (r === undefined) return {};
  const q = m.nHeads * headDim(m), kv = m.nKvHeads * headDim(m), C = m.dim, F = m.ffnDim;
  const attention = (C + q) * 2 + (C + kv) * 2;
  const mlp = 3 * (C + F) * (m.numExperts + (m.numSharedExperts ?? 0));
  return { trainableParameters: r * m.nLayers * (attention + mlp) };
}

/**
 * Logs what a fine-tuning stage read (`what`: "conversations", "pairs"): training and held-out
 * counts, the chat template, records skipped by reason and examples cut to `maxLength`. Returns
 * the skip counts that occurred, for the run's config.json and result.
 */
export function logStageData(
  log: (m: string) => void, what: string, renderer: string, maxLength: number,
  data: { train: readonly unknown[]; val: readonly unknown[]; truncated: number; skipped: { total: number; nonzero(): Partial<Record<string, number>> } },
): Partial<Record<string, number>> {
  const skipped = data.skipped.nonzero();
  log(`data: ${data.train.length} training and ${data.val.length} validation ${what} (chat template ${renderer})` +
    (data.skipped.total ? `, ${data.skipped.total} records skipped (${Object.entries(skipped).map(([r, n]) => `${r} ${n}`).join(', ')})` : '') +
    (data.truncated ? `, ${data.truncated} cut to ${maxLength} tokens` : ''));
  return skipped;
}

/**
 * A preference stage's data (DPO, reward): the pairs rendered by `renderer`, split once and
 * logged, and the training stream over them (its position is a batch count).
 */
export async function loadStagePairs(
  cfg: Pick<StageBase, 'seqLen' | 'batchSize' | 'seed'> & { data: PreferenceDataConfig }, setup: Pick<StageSetup, 'log' | 'rank' | 'worldSize'>, renderer: PreferenceRenderer,
): Promise<{ data: PreferenceData; skipped: Partial<Record<string, number>>; stream: PreferenceBatchStream }> {
  const dc = cfg.data;
  const maxLength = dc.maxLength ?? cfg.seqLen;
  const data = await loadPreferenceData({
    sources: dc.sources, renderer, valFraction: dc.valFraction, splitSeed: dc.splitSeed, maxLength, ...(dc.truncation ? { truncation: dc.truncation } : {}),
  });
  const skipped = logStageData(setup.log, 'pairs', renderer.name, maxLength, data);
  const stream = new PreferenceBatchStream(data.train, { batchSize: cfg.batchSize, seed: cfg.seed, shuffle: dc.shuffle, rank: setup.rank, worldSize: setup.worldSize });
  return { data, skipped, stream };
}

/** The stage's model: seeded, or zeros when `init` weights will be loaded over it. */
export function createStageModel(cfg: StageBase, setup: StageSetup, opts: StageRunOptions = {}): LlamaForCausalLM {
  const model = new LlamaForCausalLM(setup.modelConfig, { seed: cfg.seed, ...(cfg.init ? { init: 'zeros' as const } : {}), ...opts.model });
  // initialised on the host (the same seed gives the same weights on every device), then moved
  return cfg.device === 'cuda' ? model.to('cuda') : model;
}

const LAYER_METRIC = /^layers\.(\d+)\.(.+)$/;

/**
 * The model's reported metrics with the per-layer ones (`layers.3.load_balance`) gathered into
 * one record per name ({ load_balance: { "0": ..., "3": ... } }), so metrics.jsonl holds one
 * field per quantity whatever the depth. Returns `metrics` itself when it is empty (dense models).
 */
export function layerRecords(metrics: Readonly<Record<string, number>>): StepMetrics {
  let out: Record<string, number | Record<string, number>> | null = null;
  for (const name in metrics) {
    out ??= {};
    const m = LAYER_METRIC.exec(name);
    if (!m) {
      out[name] = metrics[name]!;
      continue;
    }
    const rec = out[m[2]!];
    if (typeof rec === 'object') rec[m[1]!] = metrics[name]!;
    else out[m[2]!] = { [m[1]!]: metrics[name]! };
  }
  return out ?? metrics;
}

/**
 * The model's side of a TrainTask: its parameters, its checkpoint files (model.safetensors and
 * the model folder's config, generation config and tokenizer files), restoring them, and the
 * `init` weights on a fresh start.
 */
export function modelTaskPart(
  model: LlamaForCausalLM, cfg: StageBase, setup: StageSetup,
): Pick<TrainTask, 'parameters' | 'checkpointFiles' | 'restoreCheckpoint' | 'initialize'> {
  // SMoE layers with router jitter draw noise per forward: where each stream stands is checkpointed
  const jittered = model.model.layers.items.flatMap((l, i): [string, SparseMoE][] =>
    l.feedForward instanceof SparseMoE && l.feedForward.jitter > 0 ? [[`model.layers.${i}.${l.feedForwardName}`, l.feedForward]] : []);
  return {
    parameters: () => model.namedParameters(),
    checkpointFiles: () => [
      { name: 'model.safetensors', content: (sink) => safetensorsContent(model.namedParameters()).write(sink) },
      ...folderFiles(model.config, { tokenizer: setup.tokenizer }),
      ...(jittered.length > 0 ? [{ name: ROUTER_STATE_FILE, content: JSON.stringify({ jitterDraws: Object.fromEntries(jittered.map(([n, m]) => [n, m.jitterDraws])) }, null, 2) + '\n' }] : []),
    ],
    restoreCheckpoint: async (ck) => {
      await loadWeights(model, ck.dir);
      if (jittered.length > 0) await restoreJitter(jittered, path.join(ck.dir, ROUTER_STATE_FILE));
    },
    initialize: async () => {
      if (!cfg.init) return;
      const from = await loadInitialWeights(model, cfg.init, setup.log);
      setup.log(`initial weights from ${from}`);
    },
  };
}

/** A checkpoint's router_state.json: each jittered SMoE layer's noise stream position. */
export const ROUTER_STATE_FILE = 'router_state.json';

async function restoreJitter(layers: [string, SparseMoE][], file: string): Promise<void> {
  let draws: Record<string, unknown>;
  try {
    draws = (JSON.parse(await fsp.readFile(file, 'utf8')) as { jitterDraws: Record<string, unknown> }).jitterDraws;
  } catch (err) {
    throw new PatentGPTError('E_CHECKPOINT', `${file}: cannot read the routers' jitter positions (${(err as Error).message})`);
  }
  for (const [n, m] of layers) {
    const v = draws?.[n];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      throw new PatentGPTError('E_CHECKPOINT', `${file}: no jitter position for ${n}; the checkpoint is not this run's model`);
    m.jitterDraws = v;
  }
}

/**
 * The stage's peak FLOP/s and training FLOPs per token, logged with the model and the budget, and
 * <runDir>/config.json: the resolved config, what the stage adds (`data`: its inputs), the model
 * and the budget. `pairs`: batchSize counts preference pairs (two sequences each), as in dpo and reward.
 */
export async function recordStage(
  cfg: StageBase, setup: StageSetup, added: Record<string, unknown>, opts: { pairs?: boolean } = {},
): Promise<{ peak: StagePeak; fpt: number }> {
  const m = setup.modelConfig;
  const peak = stagePeak(cfg, setup.worldSize);
  const fpt = flopsPerToken(m, cfg.seqLen).training;
  setup.log(describeStage(cfg, setup, peak, opts.pairs === true));
  await writeRunConfig(setup, {
    stage: cfg, ...added, model: m, parameters: parameterCount(m).total, flopsPerToken: fpt, totalSteps: totalSteps(cfg, batchRanks(setup)),
    peakFlops: peak.peakFlops, peakSource: peak.peakSource, configHash: setup.configHash,
  });
  return { peak, fpt };
}

export type StagePeak = { peakFlops: number; peakSource: 'config' | 'measured'; threads: number };

/** Peak FLOP/s MFU is measured against: the config's, or the measured FMA peak (all ranks). */
function stagePeak(cfg: StageBase, worldSize: number): StagePeak {
  const threads = runtimeInfo().threads;
  if (cfg.peakFlops > 0) return { peakFlops: cfg.peakFlops, peakSource: 'config', threads };
  return { peakFlops: measurePeakFlops(threads, 0.2) * worldSize, peakSource: 'measured', threads };
}

/** One line about the model, the budget and the peak, for the log; `pairs`: a batch item is a pair of sequences. */
export function describeStage(cfg: StageBase, setup: Pick<StageSetup, 'modelConfig' | 'worldSize'> & Partial<Pick<StageSetup, 'globalBatch'>>, peak: StagePeak, pairs = false): string {
  const m = setup.modelConfig;
  const W = batchRanks({ worldSize: setup.worldSize, globalBatch: setup.globalBatch === true });
  const items = cfg.batchSize * cfg.gradAccum * W;
  const step = pairs ? `${items} pairs (${2 * items} sequences of up to ${cfg.seqLen} tokens)` : `${items * cfg.seqLen} tokens`;
  return `model: ${(parameterCount(m).total / 1e6).toFixed(2)}M parameters, context ${m.maxSeqLen}, ropeTheta ${m.ropeTheta}` +
    (m.ropeScaling ? `, ropeScaling ${m.ropeScaling.type} x${m.ropeScaling.factor}` : '') +
    `; ${totalSteps(cfg, W)} steps of ${step}${setup.globalBatch ? ` (global: ${cfg.gradAccum / setup.worldSize} micro-batches on each of ${setup.worldSize} ranks)` : ''}; ` +
    `MFU against ${(peak.peakFlops / 1e9).toFixed(1)} GFLOP/s (${peak.peakSource === 'config' ? 'peakFlops of the config' : `measured FMA peak, ${peak.threads} threads`})`;
}

/** Writes <runDir>/config.json (rank 0): the resolved stage config and what the stage adds. */
async function writeRunConfig(setup: StageSetup, resolved: Record<string, unknown>): Promise<void> {
  if (setup.rank === 0) await writeFileAtomic(path.join(setup.runDir, 'config.json'), JSON.stringify(resolved, null, 2) + '\n');
}

/**
 * Runs the stage's task in the one training loop, with everything the config's common fields
 * decide (budget, schedule, optimizer and groups, cadence, divergence policy, resume point).
 */
export async function runStage<B extends TrainBatchInfo>(
  task: TrainTask<B>, cfg: StageBase, setup: StageSetup, opts: StageRunOptions,
  extra: Pick<TrainerOptions, 'flopsPerToken' | 'peakFlops' | 'rng'>,
): Promise<TrainResult> {
  const W = batchRanks(setup); // --global-batch: the ranks split gradAccum (prepareStage checked it)
  const trainer = new Trainer(task, {
    runDir: setup.runDir,
    name: cfg.name,
    totalSteps: totalSteps(cfg, W),
    schedule: stageSchedule(cfg, W),
    gradAccum: setup.rankGradAccum,
    optimizer: optimizerOptions(cfg.optimizer),
    evalEvery: cfg.evalEvery,
    evalBatches: cfg.evalBatches,
    checkpointEvery: cfg.checkpointEvery,
    keepCheckpoints: cfg.keepCheckpoints,
    logEvery: cfg.logEvery,
    configHash: setup.configHash,
    ...extra,
    rank: setup.rank,
    worldSize: setup.worldSize,
    ...(opts.allReduce ? { allReduce: opts.allReduce } : {}),
    ...(opts.dataParallel ? { dataParallel: opts.dataParallel } : {}),
    ...(opts.progress !== undefined ? { progress: opts.progress } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onMetrics ? { onMetrics: opts.onMetrics } : {}),
    handleSignals: opts.handleSignals ?? false,
    maxNonFiniteSteps: cfg.maxNonFiniteSteps,
    onDivergence: cfg.onDivergence,
    rollbackLrFactor: cfg.rollbackLrFactor,
    maxRollbacks: cfg.maxRollbacks,
    ...(cfg.precision ? { precision: cfg.precision } : {}),
    ...(cfg.lossScale !== undefined ? { lossScale: cfg.lossScale } : {}),
    resumeFrom: setup.resumeFrom,
    ...(opts.restartFromScratch ? { restartFromScratch: true } : {}),
  });
  return trainer.run();
}
