// The pretraining stage (stage 1 and stage 2 of the paper): a LLaMA model from the stage
// config, packed batches from token shards, the next-token loss, and the trainer's loop. It
// composes those pieces; the loop itself is the Trainer's.
//
// Stage 2 is the same stage with `init` (stage 1's run folder, a checkpoint folder or a Hugging
// Face folder) and `context`: the model config's RoPE base is raised (context.ropeTheta) and/or
// positions are linearly interpolated (context.posScale), so the model trains at a longer
// seqLen on its own mixture, budget and schedule.
//
// Data: the stage's token shards (data.manifests); or, with no shards, the built-in sample
// corpus tokenized into <runDir>/data/sample; or text files given by the caller (--data),
// tokenized into <runDir>/data/text (reused while the files are unchanged).
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { BatchStream, type Batch, type StreamPosition } from '../data/packing.js';
import { writeSampleShards, type TextEncoderLike } from '../data/sample/index.js';
import { ShardSet } from '../data/shards.js';
import { TEXT_EXTENSIONS, writeTextShards, type TextReadReport } from '../data/textfiles.js';
import {
  LlamaForCausalLM, extendContext, flopsPerToken, fromHFConfig, loadWeights, parameterCount, preset, readConfig, resizeVocabulary,
  folderFiles, safetensorsContent, validateConfig, type ModelConfig,
} from '../models/index.js';
import { measurePeakFlops, noGrad, runtimeInfo, setNumThreads, type Tensor } from '../tensor/index.js';
import { ByteTokenizer } from '../tokenizer/byte.js';
import { SentencePieceTokenizer } from '../tokenizer/sentencepiece.js';
import { writeFileAtomic } from '../util/atomic.js';
import { CheckpointManager, loadCheckpoint } from './checkpoint.js';
import { MAX_THREADS, configHash, stageSchedule, totalSteps, type StageConfig } from './config.js';
import { checkTrainingFits } from './memory.js';
import type { ProgressStream } from './progress.js';
import { Trainer, findResumePoint, type TrainResult, type TrainTask } from './trainer.js';

export interface PretrainOptions {
  /** The config's file, named in config errors (default "config"). */
  configFile?: string;
  /** Text files or folders to train on instead of the config's data (read into shards). */
  dataPaths?: readonly string[];
  /** Progress output (bar on a terminal, JSON lines otherwise); null: none. */
  progress?: ProgressStream | null;
  /** Messages (data, model, peak FLOP/s); default: none. */
  log?: (message: string) => void;
  signal?: AbortSignal;
  /** Stop on SIGINT/SIGTERM with a checkpoint (the CLI). */
  handleSignals?: boolean;
  /** Start over in a run folder whose checkpoints all fail to verify (the CLI's --restart-from-scratch). */
  restartFromScratch?: boolean;
  /** Data parallelism (the engine comes later): rank, ranks, and the gradient all-reduce. */
  rank?: number;
  worldSize?: number;
  allReduce?: (grads: Tensor[], step: number) => void | Promise<void>;
}

export interface PretrainResult extends TrainResult {
  runDir: string;
  /** The model config trained (after any context extension). */
  model: ModelConfig;
  /** Peak FLOP/s MFU is measured against, and where it came from. */
  peakFlops: number;
  peakSource: 'config' | 'measured';
  data: { manifests: string[]; report?: TextReadReport };
}

const cfgError = (source: string, field: string, message: string): PatentGPTError =>
  new PatentGPTError('E_CONFIG', `${source}: ${field}: ${message}`);

/** The stage's base model config: a preset name, a config.json / HF folder path, or inline. */
export async function resolveModelConfig(model: StageConfig['model'], source = 'config'): Promise<ModelConfig> {
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
export function stageModelConfig(base: ModelConfig, cfg: Pick<StageConfig, 'seqLen' | 'context'>, source = 'config'): ModelConfig {
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
 * Loads starting weights: a run folder (its newest valid checkpoint), a checkpoint folder or a
 * Hugging Face folder. A checkpoint with a smaller vocabulary than the model (LLaMA-2's 32,000
 * before the merged 55,296) is loaded and its embedding and output rows grown, new rows at the
 * mean of the old ones; any other shape difference is refused naming the tensor. Returns the
 * folder the weights came from.
 */
export async function loadInitialWeights(model: LlamaForCausalLM, init: string, log: (m: string) => void = () => {}): Promise<string> {
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

async function sourceFingerprint(paths: readonly string[]): Promise<string> {
  const h = createHash('sha256');
  const walk = async (p: string): Promise<void> => {
    const st = await fsp.stat(p);
    if (st.isDirectory()) {
      for (const e of (await fsp.readdir(p)).sort()) if (!e.startsWith('.')) await walk(path.join(p, e));
    } else if ((TEXT_EXTENSIONS as readonly string[]).includes(path.extname(p).toLowerCase())) h.update(`${path.resolve(p)}\0${st.size}\0${st.mtimeMs}\n`);
  };
  for (const p of paths) {
    try {
      await walk(p);
    } catch (err) {
      throw new PatentGPTError('E_DATA', `${p}: cannot read the data path (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  return h.digest('hex');
}

/** Runs (or resumes) one pretraining stage. */
export async function pretrain(cfg: StageConfig, opts: PretrainOptions = {}): Promise<PretrainResult> {
  const log = opts.log ?? ((): void => {});
  const rank = opts.rank ?? 0;
  const worldSize = opts.worldSize ?? 1;
  const runDir = cfg.runDir;
  const file = opts.configFile ?? 'config';
  if (!Number.isSafeInteger(cfg.threads) || cfg.threads < 0 || cfg.threads > MAX_THREADS)
    throw cfgError(file, 'threads', `must be an integer in [0, ${MAX_THREADS}], got ${cfg.threads}`);
  if (cfg.threads > 0) setNumThreads(cfg.threads);

  // ---- model config, and whether it fits (before anything is allocated or written)
  const base = await resolveModelConfig(cfg.model, file);
  const modelCfg = stageModelConfig(base, cfg, file);
  if (cfg.memoryCheck)
    checkTrainingFits(modelCfg, {
      batchSize: cfg.batchSize, seqLen: cfg.seqLen, source: file,
      ...(cfg.memoryLimitGiB > 0 ? { limit: cfg.memoryLimitGiB * 1024 ** 3, limitSource: 'of memoryLimitGiB' } : {}),
    });
  else checkTrainingFits(modelCfg, { batchSize: cfg.batchSize, seqLen: cfg.seqLen, source: file, limit: Number.POSITIVE_INFINITY });

  // ---- the run folder: a resume that will be refused is refused now, before anything in it changes
  let hash = configHash(cfg);
  if (opts.dataPaths !== undefined)
    hash = createHash('sha256').update(hash + JSON.stringify(opts.dataPaths.map((p) => path.resolve(p)))).digest('hex').slice(0, 16);
  const resumeFrom = await findResumePoint({
    runDir, configHash: hash, rank, ...(opts.restartFromScratch ? { restartFromScratch: true } : {}),
    onSkip: (d, e) => log(`skipped a checkpoint that does not verify: ${d}: ${e.message}`),
  });

  // ---- data
  const needText = opts.dataPaths !== undefined || cfg.data.manifests.length === 0;
  // Built even when the data comes tokenized: checkpoints record it (model folders name their
  // tokenizer and its special ids).
  const stageTok = await stageTokenizer(cfg.tokenizer, file);
  if (stageTok.vocabSize > modelCfg.vocabSize)
    throw cfgError(file, 'model.vocabSize', `${modelCfg.vocabSize} is smaller than the tokenizer's ${stageTok.vocabSize} ids (tokenizer: "${cfg.tokenizer}")`);
  const tokenizer: TextEncoderLike | null = needText ? stageTok : null;
  await fsp.mkdir(runDir, { recursive: true });
  let manifests = cfg.data.manifests;
  let report: TextReadReport | undefined;
  let weights = cfg.data.weights;
  if (opts.dataPaths !== undefined) {
    if (opts.dataPaths.length === 0) throw new PatentGPTError('E_ARGUMENT', '--data: give at least one file or folder');
    const dir = path.join(runDir, 'data', 'text');
    const fp = await sourceFingerprint(opts.dataPaths);
    const stamp = path.join(dir, 'source.json');
    let cached = false;
    try {
      const s = JSON.parse(await fsp.readFile(stamp, 'utf8')) as { fingerprint?: string; report?: TextReadReport };
      cached = s.fingerprint === fp && fs.existsSync(path.join(dir, 'manifest.json'));
      if (cached) report = s.report;
    } catch {
      /* no cache */
    }
    if (!cached && rank === 0) {
      log(`reading text from ${opts.dataPaths.join(', ')}`);
      report = (await writeTextShards(dir, opts.dataPaths, tokenizer!)).report;
      await writeFileAtomic(stamp, JSON.stringify({ fingerprint: fp, paths: opts.dataPaths.map((p) => path.resolve(p)), report }, null, 2) + '\n');
    }
    if (report) {
      log(`data: ${report.documents} documents from ${report.files} files` +
        (report.unreadable.length ? `, ${report.unreadable.length} unreadable files skipped` : '') +
        (report.ignored ? `, ${report.ignored} files of other types ignored` : '') +
        (report.skippedRecords ? `, ${report.skippedRecords} records without text skipped` : ''));
      for (const u of report.unreadable.slice(0, 5)) log(`  skipped ${u.file}: ${u.reason}`);
    }
    manifests = [dir];
  } else if (manifests.length === 0) {
    const dir = path.join(runDir, 'data', 'sample');
    if (rank === 0) await writeSampleShards(dir, tokenizer!);
    manifests = [dir];
    log(`data: the built-in sample corpus, byte-tokenized into ${dir}`);
  }
  const sets: ShardSet[] = [];
  try {
    for (const m of manifests) sets.push(await ShardSet.open(m, { vocabSize: modelCfg.vocabSize, verify: 'size' }));
  } catch (err) {
    sets.forEach((s) => s.close());
    throw err;
  }
  if (weights && opts.dataPaths !== undefined) {
    const present = new Set(sets.flatMap((s) => s.shards.map((x) => x.category)));
    const kept = Object.fromEntries(Object.entries(weights).filter(([k, w]) => present.has(k) && w > 0));
    if (Object.keys(kept).length === 0) {
      log(`data.weights names none of the data's categories (${[...present].join(', ')}); mixing by token count`);
      weights = undefined;
    } else weights = kept;
  }
  const streamOpts = {
    batchSize: cfg.batchSize, seqLen: cfg.seqLen, seed: cfg.seed, valFraction: cfg.data.valFraction, rank, worldSize,
    ...(weights ? { weights } : {}),
  };

  let model: LlamaForCausalLM | null = null;
  try {
    const train = new BatchStream(sets, { ...streamOpts, split: 'train' });
    let val: BatchStream | null = null;
    try {
      val = new BatchStream(sets, { ...streamOpts, split: 'val', rank: 0, worldSize: 1 });
    } catch (err) {
      if (!(err instanceof PatentGPTError) || err.code !== 'E_DATA') throw err;
      log(`no validation text (${err.message}); evaluation is off`);
    }
    log(`data mixture: ${train.mixture.map((m) => `${m.category} ${(m.weight * 100).toFixed(1)}%`).join(', ')}`);

    // ---- model and peak
    model = new LlamaForCausalLM(modelCfg, { seed: cfg.seed, ...(cfg.init ? { init: 'zeros' as const } : {}) });
    const threads = runtimeInfo().threads;
    const peakSource = cfg.peakFlops > 0 ? ('config' as const) : ('measured' as const);
    const peakFlops = cfg.peakFlops > 0 ? cfg.peakFlops : measurePeakFlops(threads, 0.2) * worldSize;
    const fpt = flopsPerToken(modelCfg, cfg.seqLen).training;
    const steps = totalSteps(cfg, worldSize);
    log(`model: ${(parameterCount(modelCfg).total / 1e6).toFixed(2)}M parameters, context ${modelCfg.maxSeqLen}, ropeTheta ${modelCfg.ropeTheta}` +
      (modelCfg.ropeScaling ? `, ropeScaling ${modelCfg.ropeScaling.type} x${modelCfg.ropeScaling.factor}` : '') +
      `; ${steps} steps of ${cfg.batchSize * cfg.gradAccum * cfg.seqLen * worldSize} tokens; ` +
      `MFU against ${(peakFlops / 1e9).toFixed(1)} GFLOP/s (${peakSource === 'config' ? 'peakFlops of the config' : `measured FMA peak, ${threads} threads`})`);

    if (rank === 0) {
      const resolved = {
        stage: cfg,
        ...(opts.dataPaths ? { dataPaths: opts.dataPaths.map((p) => path.resolve(p)) } : {}),
        data: { manifests: manifests.map((m) => path.resolve(m)), mixture: train.mixture },
        model: modelCfg,
        parameters: parameterCount(modelCfg).total,
        flopsPerToken: fpt,
        totalSteps: steps,
        peakFlops,
        peakSource,
        configHash: hash,
      };
      await writeFileAtomic(path.join(runDir, 'config.json'), JSON.stringify(resolved, null, 2) + '\n');
    }

    const m = model;
    const task: TrainTask<Batch> = {
      parameters: () => m.namedParameters(),
      nextBatch: () => train.next(),
      loss: (b) => m.loss(b),
      ...(val
        ? {
            evalBatches: function* (count: number) {
              val!.reset();
              for (let i = 0; i < count; i++) yield val!.next();
            },
          }
        : {}),
      dataPosition: () => train.position(),
      restoreDataPosition: (p) => train.restore(p as StreamPosition),
      checkpointFiles: () => [
        { name: 'model.safetensors', content: (sink) => safetensorsContent(m.namedParameters()).write(sink) },
        ...folderFiles(m.config, { tokenizer: stageTok }),
      ],
      restoreCheckpoint: async (ck) => {
        await loadWeights(m, ck.dir);
      },
      initialize: async () => {
        if (!cfg.init) return;
        const from = await loadInitialWeights(m, cfg.init, log);
        log(`initial weights from ${from}`);
      },
    };
    const trainer = new Trainer(task, {
      runDir,
      name: cfg.name,
      totalSteps: steps,
      schedule: stageSchedule(cfg, worldSize),
      gradAccum: cfg.gradAccum,
      optimizer: {
        beta1: cfg.optimizer.beta1, beta2: cfg.optimizer.beta2, eps: cfg.optimizer.eps, weightDecay: cfg.optimizer.weightDecay,
        maxGradNorm: cfg.optimizer.gradClip,
      },
      evalEvery: cfg.evalEvery,
      evalBatches: cfg.evalBatches,
      checkpointEvery: cfg.checkpointEvery,
      keepCheckpoints: cfg.keepCheckpoints,
      logEvery: cfg.logEvery,
      configHash: hash,
      rng: { seed: cfg.seed, dataSeed: cfg.seed, generators: 'none: the data order is a pure function of the seed and the position' },
      flopsPerToken: fpt,
      peakFlops,
      rank,
      worldSize,
      ...(opts.allReduce ? { allReduce: opts.allReduce } : {}),
      ...(opts.progress !== undefined ? { progress: opts.progress } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      handleSignals: opts.handleSignals ?? false,
      maxNonFiniteSteps: cfg.maxNonFiniteSteps,
      onDivergence: cfg.onDivergence,
      rollbackLrFactor: cfg.rollbackLrFactor,
      maxRollbacks: cfg.maxRollbacks,
      resumeFrom,
      ...(opts.restartFromScratch ? { restartFromScratch: true } : {}),
    });
    const result = await trainer.run();
    return { ...result, runDir, model: modelCfg, peakFlops, peakSource, data: { manifests, ...(report ? { report } : {}) } };
  } finally {
    model?.dispose();
    sets.forEach((s) => s.close());
  }
}

/** The stage's text tokenizer: "byte", "llama2" (LLaMA-2's vocabulary, no file needed) or a tokenizer.model path. */
async function stageTokenizer(name: string, file: string): Promise<ByteTokenizer | SentencePieceTokenizer> {
  if (name === 'byte') return new ByteTokenizer();
  if (name === 'llama2') return SentencePieceTokenizer.llama2();
  try {
    return SentencePieceTokenizer.load(await fsp.readFile(name));
  } catch (err) {
    throw cfgError(file, 'tokenizer', `"${name}" is not "byte", "llama2" or a readable SentencePiece tokenizer.model: ${(err as Error).message}`);
  }
}
