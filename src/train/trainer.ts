// The one training loop every stage runs (pretrain, and later SFT, reward, PPO, DPO). A stage
// hands it a TrainTask: the parameters, a data source (nextBatch may return a promise: PPO's
// batches are engine rollouts), a loss returning { loss, metrics }, and how the model goes into
// and out of a checkpoint. Per optimizer step the loop runs gradAccum micro-batches (loss scaled
// by 1 / gradAccum, backward, every tensor of a micro-batch freed before the next), calls the
// gradient all-reduce hook (data parallelism; a no-op on one rank), takes one optimizer step
// (AdamW or SGD, in parameter groups, built from TrainerOptions.optimizer) at the schedule's
// learning rate with global-norm clipping, logs metrics, evaluates, and checkpoints.
//
// Metrics: what the task's loss reports (KL, reward, clip fraction; per-layer records such as a
// router's tokens per expert) is averaged over the step's micro-batches and written to
// metrics.jsonl beside loss, lr and gradient norm. The loop reads only the numbers the task
// hands it, so a task that reports nothing costs nothing.
//
// Resume: run() first looks for the newest checkpoint of the run that verifies; it restores the
// weights, the optimizer moments, the data position and the step, and cuts metrics.jsonl back to
// that step, so a run killed at any point (kill -9 included) and started again continues with
// exactly the batches, updates and losses of an uninterrupted run. SIGINT (and SIGTERM) finish
// the current step, save a checkpoint and return { status: 'interrupted' }.
//
// Non-finite values (a diverging learning rate, NaN weights): a step whose loss or gradient norm
// is not finite changes no weight and is counted (metrics: skipped 1). More than
// maxNonFiniteSteps in a row stops the run with status 'diverged' (the CLI exits non-zero), or,
// with onDivergence 'rollback', restores the newest verified checkpoint and goes on at a lower
// learning rate. No checkpoint is written while the last step was non-finite or from weights
// that are not finite, so a diverged run never replaces (or prunes away) its good checkpoints.
//
// Loss scaling (lossScale; "dynamic" by default at precision fp16, src/train/loss-scale.ts): the
// loss is multiplied by the scale before backward and the gradients are unscaled in place and
// checked for inf/NaN after the all-reduce, before clipping and the optimizer. An overflow skips the
// optimizer step (metrics: skipped 1, overflow 1; the weights, the moments and AdamW's step count
// stay) and halves a dynamic scale; it is not a divergence (maxNonFiniteSteps) until the scale is
// at its floor. The learning-rate schedule follows the loop's step, skipped or not, as torch code
// that calls scheduler.step() every iteration after scaler.step() does. The scale is logged
// (lossScale, the one the step's backward used) and checkpointed, so resume is exact.
//
// Data parallelism: each rank's task reads its own shard of the data (BatchStream rank/worldSize);
// the engine (`dataParallel`, src/distributed: MPI buckets that start during the last backward) or
// the plain `allReduce` hook averages the gradients; with the engine, the step's loss, tokens and
// the task's metrics (sums and counts) and the evaluation sums are summed over the ranks, so every
// rank logs, clips and skips on the same numbers as one rank with the same global batch; only rank 0
// writes checkpoints, metrics, the report and the progress bar.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { globalGradNorm, noGrad, scale, scope, setMatmulPrecision, type MatmulPrecision, type Tensor } from '../tensor/index.js';
import { CheckpointManager, type Checkpoint, type CheckpointFile, type TrainState } from './checkpoint.js';
import { METRICS_FILE, MetricMeans, MetricsLog, Throughput, mfu, perplexity, type MetricRecord, type StepMetrics } from './metrics.js';
import { createOptimizer, type OptimizerOptions, type OptimizerState } from './optimizer.js';
import { writeReport } from './plot.js';
import { Progress, type ProgressStream } from './progress.js';
import { learningRate, validateSchedule, type Schedule } from './schedule.js';
import { LossScaler, resolveLossScale, type LossScaleOption } from './loss-scale.js';
import { CudaStream } from '../native/cuda-stream.js';

/** What one batch must tell the loop (data/packing's Batch fits). */
export interface TrainBatchInfo {
  /** The batch's input ids (their count is the token throughput). */
  tokens: ArrayLike<number>;
  /** Targets that count in the loss (weights the validation mean); default tokens.length. */
  targetCount?: number;
}

/** What a task's loss returns: the scalar to train on, and numbers for the logs. */
export interface TaskLoss {
  /** Scalar loss of the batch (mean over its targets), recorded for backward. */
  loss: Tensor;
  /**
   * Numbers for metrics.jsonl (kl, reward, clipFraction, ...) or records of numbers ({ "0": 3.1,
   * "1": 2.9 }: a value per layer or expert), averaged over the step's micro-batches. Values the
   * step already has: reading a tensor here costs a device sync, so report only what is worth it.
   */
  metrics?: StepMetrics;
}

/** A stage's side of the loop: parameters, data, loss and the model's checkpoint files. */
export interface TrainTask<B extends TrainBatchInfo = TrainBatchInfo> {
  /** The trained parameters by name (frozen ones may be listed; the optimizer skips them). */
  parameters(): readonly (readonly [string, Tensor])[];
  /** The next training micro-batch of this rank: the batch, or a promise of it (rollouts). */
  nextBatch(): B | Promise<B>;
  /** The batch's loss, and what it reports. */
  loss(batch: B): TaskLoss;
  /** Fresh validation batches (the same ones at every evaluation); omitted: no evaluation. */
  evalBatches?(count: number): Iterable<B> | AsyncIterable<B>;
  /**
   * Whether the loss is a mean next-token NLL, so exp(valLoss) is a perplexity (default true).
   * Pair losses (DPO, reward models) set false: evaluation then records and logs no perplexity.
   */
  lossIsTokenNll?: boolean;
  /** The training data position (JSON), for the checkpoint. */
  dataPosition(): unknown;
  restoreDataPosition(position: unknown): void;
  /** The model's files in a checkpoint (weights with their names, model config, ...). */
  checkpointFiles(): CheckpointFile[];
  /** Loads the model's weights from a verified checkpoint of this run. */
  restoreCheckpoint(checkpoint: Checkpoint): Promise<void>;
  /** Called instead of a restore when the run starts fresh (load initial weights, ...). */
  initialize?(): Promise<void>;
}

export interface TrainerOptions {
  /** The run folder: checkpoints/, metrics.jsonl, report.svg. */
  runDir: string;
  /** Name shown on the progress bar and the report. */
  name?: string;
  totalSteps: number;
  schedule: Schedule;
  /** Micro-batches per optimizer step. Default 1. */
  gradAccum?: number;
  /** The optimizer: type ("adamw" default, "sgd"), hyper-parameters, parameter groups (maxGradNorm is the global clip). */
  optimizer?: OptimizerOptions;
  /** Evaluate every N steps (0: only at the end). Default 0. */
  evalEvery?: number;
  /** Validation batches per evaluation. Default 10. */
  evalBatches?: number;
  /** Checkpoint every N steps (0: only at the end). Default 0. */
  checkpointEvery?: number;
  /** Checkpoints to keep (0: all). Default 3. */
  keepCheckpoints?: number;
  /** A metrics record every N steps. Default 1. */
  logEvery?: number;
  /** Hash of what decides the computation; a checkpoint with another hash is refused. */
  configHash: string;
  /** Free JSON stored in every checkpoint's state.json (stage name, seeds, ...). */
  rng?: unknown;
  /** Training FLOPs per token of the model (for MFU); 0 or undefined: no MFU. */
  flopsPerToken?: number;
  /** Peak FLOP/s of the hardware (all ranks) for MFU. */
  peakFlops?: number;
  /** Data parallelism: this rank and the number of ranks. Default 0 and 1. */
  rank?: number;
  worldSize?: number;
  /**
   * Gradient all-reduce hook, called after the last backward of each step with every gradient
   * (in parameter order); it must leave the mean over the ranks in place. Required when
   * worldSize > 1; never called on one rank.
   */
  allReduce?: (grads: Tensor[], step: number) => void | Promise<void>;
  /** The data-parallel engine (src/distributed); used instead of allReduce when worldSize > 1. */
  dataParallel?: DataParallelEngine;
  /** Where the progress bar or JSON progress lines go; null: none. Default: Progress's choice. */
  progress?: ProgressStream | null;
  /** Stop (checkpoint, then return 'interrupted') when this aborts. */
  signal?: AbortSignal;
  /** Also stop on SIGINT / SIGTERM of this process (the CLI). Default false. */
  handleSignals?: boolean;
  /** Each metrics record as it is written (rank 0). */
  onMetrics?: (record: MetricRecord) => void;
  /** Consecutive steps with a non-finite loss or gradient norm tolerated (skipped); one more diverges the run. Default 3. */
  maxNonFiniteSteps?: number;
  /** On divergence: 'stop' (status 'diverged', default) or 'rollback' to the newest verified checkpoint at a lower lr. */
  onDivergence?: 'stop' | 'rollback';
  /** Factor the learning rate is multiplied by at each rollback, in (0, 1). Default 0.5. */
  rollbackLrFactor?: number;
  /** Rollbacks allowed in one run before it stops as diverged. Default 3. */
  maxRollbacks?: number;
  /**
   * Start over when the run folder holds checkpoints none of which verifies (the old
   * metrics.jsonl is kept as metrics.jsonl.before-restart). Default false: such a run is refused.
   */
  restartFromScratch?: boolean;
  /**
   * The resume point, already looked up with findResumePoint (a caller that checks before it
   * writes anything); null: start fresh. Undefined: run() looks it up.
   */
  resumeFrom?: Checkpoint | null;
  /**
   * Matmul precision of the run: 'f32' (default) or 'bf16' (mixed precision: matmuls and linear
   * layers round their inputs to bf16 and sum in f32; parameters, gradients and optimizer state
   * stay f32). Set for the run and restored after it.
   */
  precision?: MatmulPrecision;
  /**
   * Loss scaling: "dynamic" (torch GradScaler: 2^16, x2 after 2000 finite steps, /2 and skip on
   * overflow; an object sets those), a fixed number, or "off". Default "dynamic" at precision
   * fp16, else "off". See src/train/loss-scale.ts.
   */
  lossScale?: LossScaleOption;
}

/** What the loop asks of a data-parallel engine (src/distributed implements it over MPI). */
export interface DataParallelEngine {
  /** Once, before the first step: the trained parameters by name, in the task's order. */
  attach(params: readonly (readonly [string, Tensor])[]): void;
  /**
   * ZeRO-1, after attach: the parameters this rank's optimizer updates and keeps moments for
   * (undefined: all). Then afterStep() broadcasts each parameter from its owner, and
   * consolidate() gathers the whole optimizer state for rank 0's checkpoint.
   */
  owns?: (name: string) => boolean;
  afterStep?(): void;
  consolidate?(state: OptimizerState): OptimizerState;
  /** ZeRO-2, after reduceGradients: the global gradient norm (each rank holds only its own gradients). */
  gradNorm?(): number;
  /**
   * The config's batchSize x gradAccum is the global batch: each of the worldSize ranks runs
   * gradAccum / worldSize micro-batches, so the run resumes on another number of ranks.
   */
  readonly globalBatch?: boolean;
  /** Before the backward of each step's last micro-batch (gradient buckets start as they fill). */
  beforeLastBackward(): void;
  /** After it: leaves the mean over the ranks in every gradient. */
  reduceGradients(step: number): void | Promise<void>;
  /** The sum over the ranks of each value (float64), identical on every rank. */
  sum(values: number[]): number[];  /** Returns once every rank has called it (rank 0's data files are written before the others read). */
  barrier(): void;
}

export interface TrainResult {
  /** 'diverged': stopped on non-finite losses or weights (see message); never 'completed' then. */
  status: 'completed' | 'interrupted' | 'diverged';
  /** Why a diverged run stopped, and what to do. */
  message?: string;
  /** Steps skipped for a non-finite loss or gradient norm (this call). */
  nonFiniteSteps: number;
  /** Rollbacks to an earlier checkpoint (this call). */
  rollbacks: number;
  /** With loss scaling: steps skipped for gradient overflow (this call; not in nonFiniteSteps unless the scale was at its floor). */
  overflowSteps?: number;
  /** Optimizer steps done. */
  step: number;
  /** Step the run resumed from (undefined: fresh start). */
  resumedFrom?: number;
  /** The last checkpoint folder written or found (rank 0). */
  checkpoint: string | null;
  /** Training loss of each step this call ran. */
  losses: number[];
  /** The last validation loss, if any evaluation ran. */
  valLoss?: number;
  tokensSeen: number;
  /** Bytes of optimizer moments this rank held at the end (ZeRO-1: about 1/worldSize of them). */
  optimizerStateBytes?: number;
}

function intOption(v: number | undefined, name: string, min: number, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < min) throw new PatentGPTError('E_ARGUMENT', `Trainer: ${name} must be an integer >= ${min}, got ${v}`);
  return x;
}

export interface ResumeLookup {
  runDir: string;
  configHash: string;
  rank?: number;
  /** See TrainerOptions.restartFromScratch. */
  restartFromScratch?: boolean;
  /** Told about each checkpoint passed over because it does not verify. */
  onSkip?: (dir: string, err: PatentGPTError) => void;
}

/**
 * The checkpoint a run resumes from: the newest that verifies, or null for a fresh start. Throws
 * E_CHECKPOINT, before anything is written, when that checkpoint was saved under another config,
 * or when the run folder holds checkpoints and none verifies (unless restartFromScratch).
 */
export async function findResumePoint(opts: ResumeLookup): Promise<Checkpoint | null> {
  const skipped: string[] = [];
  const mgr = new CheckpointManager(opts.runDir, {
    keep: 0,
    rank: opts.rank ?? 0,
    onSkip: (d, e) => {
      skipped.push(`${path.basename(d)}: ${e.message}`);
      opts.onSkip?.(d, e);
    },
  });
  const latest = await mgr.latest();
  if (latest) {
    if (latest.state.configHash !== opts.configHash)
      throw new PatentGPTError('E_CHECKPOINT',
        `${path.join(latest.dir, 'state.json')}: configHash: ${latest.state.configHash} differs from this config's ${opts.configHash}; ` +
          'the run folder holds a run of another config (use another run folder, or the config it was started with)');
    return latest;
  }
  if (skipped.length > 0 && !opts.restartFromScratch)
    throw new PatentGPTError('E_CHECKPOINT',
      `${path.resolve(mgr.dir)}: none of its ${skipped.length} checkpoints verifies (${skipped.join('; ')}); refusing to start the run over from scratch, ` +
        'which would replace its metrics.jsonl. Restore or move the checkpoints, or start over on purpose with --restart-from-scratch (restartFromScratch: true)');
  return null;
}

/** A yield to the event loop, so signal handlers run between steps. */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Trainer<B extends TrainBatchInfo = TrainBatchInfo> {
  readonly task: TrainTask<B>;
  readonly runDir: string;
  readonly totalSteps: number;
  readonly gradAccum: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly checkpoints: CheckpointManager;
  private readonly opts: TrainerOptions;
  private readonly evalEvery: number;
  private readonly evalBatches: number;
  private readonly checkpointEvery: number;
  private readonly logEvery: number;
  private readonly maxNonFiniteSteps: number;
  private readonly onDivergence: 'stop' | 'rollback';
  private readonly rollbackLrFactor: number;
  private readonly maxRollbacks: number;
  private readonly lossScale: LossScaleOption;

  constructor(task: TrainTask<B>, opts: TrainerOptions) {
    this.task = task;
    this.opts = opts;
    this.runDir = opts.runDir;
    this.totalSteps = intOption(opts.totalSteps, 'totalSteps', 1, 1);
    this.gradAccum = intOption(opts.gradAccum, 'gradAccum', 1, 1);
    this.evalEvery = intOption(opts.evalEvery, 'evalEvery', 0, 0);
    this.evalBatches = intOption(opts.evalBatches, 'evalBatches', 1, 10);
    this.checkpointEvery = intOption(opts.checkpointEvery, 'checkpointEvery', 0, 0);
    this.logEvery = intOption(opts.logEvery, 'logEvery', 1, 1);
    this.rank = intOption(opts.rank, 'rank', 0, 0);
    this.worldSize = intOption(opts.worldSize, 'worldSize', 1, 1);
    if (this.rank >= this.worldSize) throw new PatentGPTError('E_ARGUMENT', `Trainer: rank ${this.rank} is not below worldSize ${this.worldSize}`);
    if (this.worldSize > 1 && !opts.allReduce && !opts.dataParallel)
      throw new PatentGPTError('E_ARGUMENT', `Trainer: worldSize ${this.worldSize} needs an allReduce hook to average the gradients`);
    validateSchedule(opts.schedule);
    this.maxNonFiniteSteps = intOption(opts.maxNonFiniteSteps, 'maxNonFiniteSteps', 0, 3);
    this.maxRollbacks = intOption(opts.maxRollbacks, 'maxRollbacks', 0, 3);
    this.onDivergence = opts.onDivergence ?? 'stop';
    if (this.onDivergence !== 'stop' && this.onDivergence !== 'rollback')
      throw new PatentGPTError('E_ARGUMENT', `Trainer: onDivergence must be "stop" or "rollback", got ${JSON.stringify(opts.onDivergence)}`);
    this.rollbackLrFactor = opts.rollbackLrFactor ?? 0.5;
    if (!(this.rollbackLrFactor > 0 && this.rollbackLrFactor < 1))
      throw new PatentGPTError('E_ARGUMENT', `Trainer: rollbackLrFactor must be in (0, 1), got ${opts.rollbackLrFactor}`);
    this.lossScale = resolveLossScale(opts.lossScale, opts.precision ?? 'f32');
    LossScaler.create(this.lossScale); // its settings are checked before the run starts
    this.checkpoints = new CheckpointManager(opts.runDir, {
      keep: intOption(opts.keepCheckpoints, 'keepCheckpoints', 0, 3),
      rank: this.rank,
    });
  }

  /**
   * Runs (or resumes) the training to totalSteps, or until a stop is asked for, with the matmuls
   * at the options' precision (restored when it returns).
   */
  async run(): Promise<TrainResult> {
    const previous = setMatmulPrecision(this.opts.precision ?? 'f32');
    try {
      return await this.runSteps();
    } finally {
      setMatmulPrecision(previous);
    }
  }

  private async runSteps(): Promise<TrainResult> {
    const { task, opts } = this;
    const lead = this.rank === 0;
    const mgr = new CheckpointManager(this.runDir, { keep: this.checkpoints.keep, rank: this.rank });
    const progress = lead && opts.progress !== null ? new Progress({ total: this.totalSteps, label: opts.name ?? path.basename(this.runDir), ...(opts.progress ? { stream: opts.progress } : {}) }) : null;

    // ---- fresh start or resume (refusals come before anything is written)
    const latest =
      opts.resumeFrom !== undefined
        ? opts.resumeFrom
        : await findResumePoint({
            runDir: this.runDir, configHash: opts.configHash, rank: this.rank, ...(opts.restartFromScratch ? { restartFromScratch: true } : {}),
            onSkip: (d, e) => progress?.log(`skipped a checkpoint that does not verify: ${d}: ${e.message}`),
          });
    if (latest && latest.state.configHash !== opts.configHash)
      throw new PatentGPTError('E_CHECKPOINT', `${path.join(latest.dir, 'state.json')}: configHash: ${latest.state.configHash} differs from this config's ${opts.configHash}`);
    const dp = opts.dataParallel; // on one rank too when given (a 1-GPU NCCL run against the plain trainer)
    dp?.attach(task.parameters().filter(([, p]) => p.requiresGrad));
    const optimizer = createOptimizer(task.parameters(), dp?.owns ? { ...opts.optimizer, owns: dp.owns } : opts.optimizer);
    const scaler = LossScaler.create(this.lossScale);
    let step = 0;
    let tokensSeen = 0;
    let elapsedBefore = 0;
    let resumedFrom: number | undefined;
    let lastCheckpoint: string | null = null;
    let savedAt = -1;
    let lrScale = 1; // lowered by rollbacks; kept in the checkpoint so a resume goes on at the same lr
    const restore = async (ck: Checkpoint): Promise<void> => {
      await task.restoreCheckpoint(ck);
      const optState = await ck.readOptimizer();
      if (!optState) throw new PatentGPTError('E_CHECKPOINT', `${ck.dir}: no optimizer state; cannot resume training exactly`);
      optimizer.loadState(optState);
      task.restoreDataPosition(ck.state.data);
      if (scaler && ck.state.extra?.lossScale !== undefined) scaler.load(ck.state.extra.lossScale);
      step = ck.state.step;
      tokensSeen = ck.state.tokensSeen;
      lastCheckpoint = ck.dir;
      savedAt = step;
    };
    try {
      if (latest) {
        await restore(latest);
        const e = latest.state.extra?.elapsedSec;
        elapsedBefore = typeof e === 'number' ? e : 0;
        const s = latest.state.extra?.lrScale;
        if (typeof s === 'number' && s > 0 && s <= 1) lrScale = s;
        resumedFrom = step;
        progress?.log(`resuming from ${latest.dir}`, { step });
      } else {
        if (lead && opts.restartFromScratch && mgr.steps().length > 0) {
          const log = path.join(this.runDir, METRICS_FILE);
          if (fs.existsSync(log)) {
            fs.renameSync(log, `${log}.before-restart`);
            progress?.log(`restarting from scratch: the old metrics are kept in ${log}.before-restart`);
          }
        }
        await task.initialize?.();
      }
    } catch (err) {
      optimizer.dispose();
      throw err;
    }

    let metrics = MetricsLog.open(this.runDir, { rank: this.rank, ...(latest ? { resumeStep: step } : {}) });
    const started = performance.now();
    const elapsed = (): number => elapsedBefore + (performance.now() - started) / 1000;
    let trainMs = 0; // compute time of training steps only (evaluation and checkpoints excluded)
    const throughput = new Throughput(10, () => trainMs);
    throughput.mark(tokensSeen);

    // ---- stop requests
    let stop = opts.signal?.aborted ?? false;
    const onAbort = (): void => {
      stop = true;
    };
    opts.signal?.addEventListener('abort', onAbort);
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      stop = true;
      if (signals === 1) progress?.log(`${sig}: finishing the step and saving a checkpoint (again to quit at once)`);
      else process.exit(130);
    };
    if (opts.handleSignals) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }

    const losses: number[] = [];
    const stepMetrics = new MetricMeans(); // the task's metrics of the current step
    let valLoss: number | undefined;
    let badRun = 0; // consecutive non-finite steps
    let nonFiniteSteps = 0;
    let overflowSteps = 0;
    let rollbacks = 0;
    let message: string | undefined;
    /** Saves a checkpoint unless the weights are not finite (then returns false and writes nothing). */
    const save = async (): Promise<boolean> => {
      // One native reduction in float64 over every weight: finite exactly when every weight is.
      const weightNorm = globalGradNorm(task.parameters().map(([, p]) => p));
      if (!Number.isFinite(weightNorm)) return false;
      const state: TrainState = {
        step,
        tokensSeen,
        data: task.dataPosition(),
        configHash: opts.configHash,
        ...(opts.rng !== undefined ? { rng: opts.rng } : {}),
        extra: {
          elapsedSec: elapsed(), ...(valLoss !== undefined ? { valLoss } : {}), ...(lrScale !== 1 ? { lrScale } : {}),
          ...(scaler ? { lossScale: scaler.state() } : {}),
        },
      };
      metrics.sync();
      const optState = dp?.consolidate ? dp.consolidate(optimizer.exportState()) : optimizer.exportState(); // ZeRO: a collective
      const dir = await mgr.save(state, lead ? task.checkpointFiles() : [], optState);
      savedAt = step;
      if (dir) {
        lastCheckpoint = dir;
        progress?.log(`checkpoint ${dir}`, { step });
      }
      return true;
    };
    /**
     * The run has diverged (why): roll back when the config asks and a verified checkpoint is
     * there (returns true: go on), else set the message (returns false: stop).
     */
    const diverge = async (why: string): Promise<boolean> => {
      const maxRollbacks = this.maxRollbacks;
      const to = this.onDivergence === 'rollback' && rollbacks < maxRollbacks ? await mgr.latest() : null;
      if (to) {
        if (to.state.configHash !== opts.configHash) throw new PatentGPTError('E_CHECKPOINT', `${to.dir}: configHash differs from this run's; cannot roll back to it`);
        const from = step;
        await restore(to);
        lrScale *= this.rollbackLrFactor;
        rollbacks++;
        badRun = 0;
        metrics.close();
        metrics = MetricsLog.open(this.runDir, { rank: this.rank, resumeStep: step });
        const rec: MetricRecord = { step, rollback: 1, lrScale, rolledBackFrom: from };
        metrics.append(rec);
        if (lead) opts.onMetrics?.(rec);
        progress?.log(`${why}; rolled back to ${to.dir} with the learning rate x${lrScale} (rollback ${rollbacks} of at most ${maxRollbacks})`);
        return true;
      }
      const last = lastCheckpoint ?? (await mgr.latest())?.dir ?? null;
      message =
        `${why}; stopped without writing a checkpoint. ` +
        (last ? `The last good checkpoint is ${last}. ` : 'There is no earlier checkpoint. ') +
        (this.onDivergence === 'rollback'
          ? rollbacks >= maxRollbacks ? `${rollbacks} rollbacks did not help (maxRollbacks ${maxRollbacks}); lower optimizer.lr.` : 'Lower optimizer.lr.'
          : 'Lower optimizer.lr (or schedule.warmupSteps up), or set onDivergence: "rollback" to go back to the last good checkpoint at a lower learning rate.');
      return false;
    };
    /**
     * Data parallel: the task's metrics of a step (or an evaluation) as sums and counts over all the
     * ranks' micro-batches, so the means are one rank's with the same global batch. `sigSums` are the
     * ranks' summed nameSignature() (sent with the step's other numbers): ranks that reported other
     * names never call mismatched sums; they keep their own means, with a warning once.
     */
    let warnedMetrics = false;
    const sumMetrics = (means: MetricMeans, sig: number[], sigSums: number[]): void => {
      if (MetricMeans.sameNamesOnAllRanks(sig, sigSums, this.worldSize)) {
        if (sig[4]! > 0) means.setTotals(dp!.sum(means.totals())); // sig[4]: the reported entries, the same on every rank
        return;
      }
      if (warnedMetrics) return;
      warnedMetrics = true;
      const msg = `step ${step}: the ranks' tasks reported different metric names, so metrics.jsonl holds rank 0's means of its own micro-batches (not the global batch's) for such steps`;
      if (progress) progress.log(`warning: ${msg}`);
      else if (lead) process.stderr.write(`warning: ${msg}\n`);
    };
    const evaluate = async (): Promise<void> => {
      if (!task.evalBatches) return;
      let sum = 0;
      let count = 0;
      const valMetrics = new MetricMeans();
      for await (const b of task.evalBatches(this.evalBatches)) {
        const n = b.targetCount ?? b.tokens.length;
        if (n === 0) continue;
        const l = noGrad(() =>
          scope(() => {
            const out = task.loss(b);
            if (out.metrics) valMetrics.add(out.metrics);
            return out.loss.item();
          }),
        );
        sum += l * n;
        count += n;
        await tick();
      }
      if (dp) {
        const sig = valMetrics.nameSignature();
        const [total, n, ...sigSums] = dp.sum([sum, count, ...sig]);
        [sum, count] = [total!, n!];
        sumMetrics(valMetrics, sig, sigSums);
      }
      if (count === 0) return;
      valLoss = sum / count;
      const ppl = task.lossIsTokenNll === false ? {} : { valPerplexity: perplexity(valLoss) };
      const rec: MetricRecord = { step, valLoss, ...ppl, tokens: tokensSeen, elapsedSec: round(elapsed(), 3) };
      valMetrics.writeTo(rec, 'val.');
      metrics.append(rec);
      if (lead) opts.onMetrics?.(rec);
      progress?.log(`eval at step ${step}`, { valLoss: valLoss, ...(ppl.valPerplexity !== undefined ? { ppl: ppl.valPerplexity } : {}) });
      if (lead) await writeReport(this.runDir, { title: opts.name ?? path.basename(this.runDir) });
    };

    let status: TrainResult['status'] = 'completed';
    let optimizerStateBytes = 0;
    // On CUDA the run's kernels go on a stream of its own (an engine in the same process has its own).
    const stream = task.parameters().some(([, p]) => p.device === 'cuda') ? CudaStream.create() : null;
    const leaveStream = stream?.enter();
    try {
      // Data parallel: a stop request (a signal reaches the ranks at different moments) takes
      // effect only once every rank knows of it, at the same step, so the ranks' collectives (and
      // a ZeRO checkpoint's) stay in step.
      let stopAgreed = false;
      while (step < this.totalSteps) {
        await tick();
        if (dp ? stopAgreed : stop) {
          status = 'interrupted';
          break;
        }
        const t0 = performance.now();
        let lossSum = 0;
        let stepTokens = 0;
        stepMetrics.clear();
        const lossScale = scaler?.scale ?? 1; // this step's (a power of two scales exactly)
        const lossFactor = lossScale / this.gradAccum;
        for (let micro = 0; micro < this.gradAccum; micro++) {
          const next = task.nextBatch();
          // A synchronous source skips the microtask (a batch is never a thenable).
          const batch = typeof (next as { then?: unknown }).then === 'function' ? await next : (next as B);
          stepTokens += batch.tokens.length;
          const { value, scaled } = scope(() => {
            const out = task.loss(batch);
            if (out.metrics) stepMetrics.add(out.metrics);
            const l = out.loss;
            return { value: l.item(), scaled: lossFactor !== 1 ? scale(l, lossFactor) : l };
          });
          lossSum += value;
          if (dp && micro === this.gradAccum - 1) dp.beforeLastBackward();
          scaled.backward();
          scaled.dispose();
        }
        if (dp) {
          await dp.reduceGradients(step);
          const sig = stepMetrics.nameSignature();
          const [total, stops, tokens, ...sigSums] = dp.sum([lossSum, stop ? 1 : 0, stepTokens, ...sig]);
          lossSum = total!; // the global batch's loss, as one rank would log it
          stepTokens = tokens!; // the global batch's tokens (variable-length batches differ per rank)
          if (stops! > 0) stopAgreed = true;
          sumMetrics(stepMetrics, sig, sigSums);
        } else if (this.worldSize > 1) await opts.allReduce!(optimizer.gradients(), step);
        const lr = lrScale === 1 ? learningRate(opts.schedule, step) : learningRate(opts.schedule, step) * lrScale;
        const loss = lossSum / (this.gradAccum * (dp ? this.worldSize : 1));
        // Loss scaling: true gradients back in place, and whether any overflowed (on every rank, as
        // ZeRO-2's ranks hold only their share). A non-finite loss is the model's, not the scale's.
        let overflow = false;
        let benignOverflow = false;
        if (scaler && Number.isFinite(loss)) {
          overflow = scaler.unscale(optimizer.gradients());
          if (dp) overflow = dp.sum([overflow ? 1 : 0])[0]! > 0;
          benignOverflow = overflow && !scaler.atFloor;
          scaler.update(overflow);
        }
        // A non-finite loss skips the step even when the gradient norm happens to be finite.
        const res = Number.isFinite(loss) && !overflow ? optimizer.step(lr, dp?.gradNorm ? { gradNorm: dp.gradNorm() } : {}) : { gradNorm: Number.NaN, clipScale: 1, skipped: true };
        if (dp?.afterStep && !res.skipped) dp.afterStep(); // ZeRO: each parameter from the rank that updated it
        optimizer.zeroGrad();
        step++;
        tokensSeen += dp ? stepTokens : stepTokens * this.worldSize;
        trainMs += performance.now() - t0;
        const tokPerSec = throughput.mark(tokensSeen);
        losses.push(loss);
        if (overflow) overflowSteps++;
        if (benignOverflow) {
          // the scale was too high: halved, not a divergence (badRun neither grows nor resets)
        } else if (res.skipped) {
          badRun++;
          nonFiniteSteps++;
        } else badRun = 0;
        const last = step === this.totalSteps;
        if (step % this.logEvery === 0 || last || res.skipped) {
          const rec: MetricRecord = { step, loss, lr, gradNorm: res.gradNorm, tokens: tokensSeen, elapsedSec: round(elapsed(), 3) };
          if (res.skipped) rec.skipped = 1;
          if (overflow) rec.overflow = 1;
          if (scaler) rec.lossScale = lossScale;
          if (Number.isFinite(tokPerSec)) {
            rec.tokensPerSec = round(tokPerSec, 1);
            if (opts.flopsPerToken && opts.peakFlops) rec.mfu = round(mfu(opts.flopsPerToken, tokPerSec, opts.peakFlops), 5);
          }
          stepMetrics.writeTo(rec);
          metrics.append(rec);
          if (lead) opts.onMetrics?.(rec);
        }
        progress?.update(step, { loss, lr, 'tok/s': Number.isFinite(tokPerSec) ? Math.round(tokPerSec) : undefined });
        if (benignOverflow)
          progress?.log(`step ${step}: gradients overflowed at loss scale ${lossScale}; step skipped, weights unchanged, loss scale now ${scaler!.scale}`);
        else if (res.skipped)
          progress?.log(`step ${step}: non-finite ${Number.isFinite(loss) ? `gradient norm ${res.gradNorm}` : `loss ${loss}`}; step skipped, weights unchanged (${badRun} in a row, at most ${this.maxNonFiniteSteps})`);
        if (badRun > this.maxNonFiniteSteps) {
          if (await diverge(`${badRun} consecutive steps with a non-finite loss or gradient norm (steps ${step - badRun + 1}-${step}; last loss ${loss}, gradient norm ${res.gradNorm})`)) continue;
          status = 'diverged';
          break;
        }
        if (badRun > 0) continue; // no evaluation or checkpoint from weights whose loss is not finite
        if ((this.evalEvery > 0 && step % this.evalEvery === 0) || last) await evaluate();
        if ((this.checkpointEvery > 0 && step % this.checkpointEvery === 0) || last) {
          if (await save()) continue;
          if (await diverge(`the weights hold non-finite values after step ${step}`)) continue;
          status = 'diverged';
          break;
        }
      }
      if (status === 'completed' && badRun > 0) {
        // The run reached its last step on a non-finite loss: it cannot end on a checkpoint.
        status = 'diverged';
        const good = lastCheckpoint ?? (await mgr.latest())?.dir ?? null;
        message = `the last ${badRun} step(s) had a non-finite loss or gradient norm; no final checkpoint was written` +
          (good ? ` (the last good one is ${good})` : '') + '. Lower optimizer.lr and run again.';
      }
      if (status === 'interrupted') {
        if (badRun > 0) progress?.log(`interrupted at step ${step} after a non-finite step: no checkpoint written; the run resumes from ${lastCheckpoint ?? 'the start'}`);
        else if (savedAt !== step && !(await save())) progress?.log(`interrupted at step ${step}: the weights are not finite, no checkpoint written`);
        progress?.log(`interrupted at step ${step}; run the same command again to resume`);
      }
      if (status === 'diverged') progress?.log(`diverged: ${message}`);
      if (lead) await writeReport(this.runDir, { title: opts.name ?? path.basename(this.runDir) });
      progress?.done({ step, valLoss });
      // A rank that ends non-zero (interrupted, diverged) makes mpirun end the job: none leaves
      // before rank 0 has written its checkpoint and report.
      if (dp && status !== 'completed') dp.barrier();
    } finally {
      optimizerStateBytes = optimizer.stateBytes();
      metrics.close();
      optimizer.dispose();
      leaveStream?.();
      stream?.dispose();
      opts.signal?.removeEventListener('abort', onAbort);
      if (opts.handleSignals) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }
    return {
      status, ...(message !== undefined ? { message } : {}), nonFiniteSteps, rollbacks, ...(scaler ? { overflowSteps } : {}),
      step, ...(resumedFrom !== undefined ? { resumedFrom } : {}), checkpoint: lastCheckpoint, losses, ...(valLoss !== undefined ? { valLoss } : {}), tokensSeen,
      ...(dp ? { optimizerStateBytes } : {}),
    };
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
