// The pretraining stage (stage 1 and stage 2 of the paper): packed batches from token shards
// and the next-token loss (with whatever the model's modules report, e.g. per-layer
// feed-forward metrics, in metrics.jsonl). The model, initial weights, tokenizer, checkpoint
// files, run folder and the loop come from stages/common.ts and the Trainer.
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
import { PatentGPTError } from '../../errors.js';
import { BatchStream, type Batch, type StreamPosition } from '../../data/packing.js';
import { writeSampleShards, type TextEncoderLike } from '../../data/sample/index.js';
import { ShardSet } from '../../data/shards.js';
import { TEXT_EXTENSIONS, writeTextShards, type TextReadReport } from '../../data/textfiles.js';
import type { LlamaForCausalLM, ModelConfig } from '../../models/index.js';
import { withDropoutRows } from '../../nn/dropout-rows.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { configHash, type PretrainConfig } from '../config.js';
import type { TrainResult, TrainTask } from '../trainer.js';
import {
  cfgError, createStageModel, layerRecords, modelTaskPart, prepareStage, recordStage, runStage, type StageRunOptions,
} from './common.js';
import { pretrainDropoutRows } from './dropout-keys.js';

export interface PretrainOptions extends StageRunOptions {
  /** Text files or folders to train on instead of the config's data (read into shards). */
  dataPaths?: readonly string[];
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

/**
 * A position saved by a run on another number of ranks (launch --global-batch): the same global
 * row, valid when it is a whole number of this world's batches; checked against a stream of the
 * world it was saved in, then restated for this one. Any other position passes as it is, for
 * restore() to check.
 */
function adoptPosition(pos: StreamPosition, train: BatchStream, streamOf: (worldSize: number) => BatchStream): StreamPosition {
  const rows = train.batchSize * train.worldSize;
  if (typeof pos !== 'object' || pos === null || !(pos.batch > 0) || pos.row === pos.batch * rows) return pos;
  const saved = pos.row / (pos.batch * train.batchSize);
  if (!Number.isSafeInteger(saved) || saved < 1 || pos.row % rows !== 0) return pos;
  streamOf(saved).restore(pos); // the fingerprint and cursors of the world it was saved in
  return { ...pos, batch: pos.row / rows, fingerprint: train.position().fingerprint };
}

/** Runs (or resumes) one pretraining stage. */
export async function pretrain(cfg: PretrainConfig, opts: PretrainOptions = {}): Promise<PretrainResult> {
  const kind = (cfg as { kind?: unknown }).kind; // a config built by hand before kinds has none
  if (kind !== undefined && kind !== 'pretrain')
    throw cfgError(opts.configFile ?? 'config', 'kind', `"${String(kind)}" is not a pretraining config (run it with its own stage, not pretrain)`);
  let hash = configHash(cfg);
  if (opts.dataPaths !== undefined)
    hash = createHash('sha256').update(hash + JSON.stringify(opts.dataPaths.map((p) => path.resolve(p)))).digest('hex').slice(0, 16);
  const setup = await prepareStage(cfg, opts, hash);
  const { log, rank, worldSize, runDir, modelConfig: modelCfg } = setup;

  // ---- data
  const needText = opts.dataPaths !== undefined || cfg.data.manifests.length === 0;
  const tokenizer: TextEncoderLike | null = needText ? setup.tokenizer : null;
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
  opts.dataParallel?.barrier(); // rank 0 wrote the shards above; the others read them now
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
    model = createStageModel(cfg, setup, opts);
    const { peak, fpt } = await recordStage(cfg, setup, {
      ...(opts.dataPaths ? { dataPaths: opts.dataPaths.map((p) => path.resolve(p)) } : {}),
      data: { manifests: manifests.map((m) => path.resolve(m)), mixture: train.mixture },
    });

    const m: LlamaForCausalLM = model;
    const task: TrainTask<Batch> = {
      ...modelTaskPart(m, cfg, setup),
      nextBatch: () => train.next(),
      // the rows' global places key the model's training noise (an SMoE router's jitter; src/nn/dropout-rows.ts)
      loss: (b) => withDropoutRows(pretrainDropoutRows(train, b, setup.rankGradAccum), () => {
        const out = m.lossWithMetrics(b);
        return { loss: out.loss, metrics: layerRecords(out.metrics) };
      }),
      ...(val
        ? {
            evalBatches: function* (count: number) {
              val!.reset();
              for (let i = 0; i < count; i++) yield val!.next();
            },
          }
        : {}),
      dataPosition: () => train.position(),
      restoreDataPosition: (p) => train.restore(adoptPosition(p as StreamPosition, train, (w) => new BatchStream(sets, { ...streamOpts, split: 'train', rank: 0, worldSize: w }))),
    };
    const result = await runStage(task, cfg, setup, opts, {
      rng: { seed: cfg.seed, dataSeed: cfg.seed, generators: 'none: the data order is a pure function of the seed and the position' },
      flopsPerToken: fpt,
      peakFlops: peak.peakFlops,
    });
    return { ...result, runDir, model: modelCfg, peakFlops: peak.peakFlops, peakSource: peak.peakSource, data: { manifests, ...(report ? { report } : {}) } };
  } finally {
    model?.dispose();
    sets.forEach((s) => s.close());
  }
}
