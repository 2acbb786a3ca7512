// The reward model stage (the paper's RLHF, step 1): pairs of a prompt and a chosen and a
// rejected response (src/data/preference), each side rendered whole by the chat template, scored
// by a decoder with a scalar head (src/models/reward.ts) at each side's last token, and the
// Bradley-Terry loss -log sigmoid(r_c - r_r - margin) (+ TRL's optional reward centering). A
// batch of B pairs is one packed forward of 2B sequences (chosen sides, then rejected), so no
// padding is scored and no sequence sees another.
//
// init (required) is a causal LM (SFT or pretraining output: the decoder loaded, lm_head dropped,
// a new score head drawn from normal(0, reward.scoreInitStd) as transformers does) or a reward
// model to go on from. Every checkpoint of a full run is a complete reward folder that
// AutoModelForSequenceClassification loads (runs/<name>/checkpoints/step-N). With `lora`, the
// decoder is frozen under adapters and the score head trains whole (PEFT's modules_to_save for
// sequence classification); checkpoints are PEFT adapter folders (task_type SEQ_CLS, the head in
// modules_to_save) over the init folder, and a completed run writes <runDir>/final/: the merged
// reward folder.
//
// Metrics per step: loss, accuracy (share of pairs with r_c > r_r), margin (mean r_c - r_r),
// rewardChosen / rewardRejected (means); evaluation on the held-out split (data.valFraction)
// writes valLoss (per pair) and val.accuracy, val.margin, ... (over every held-out pair evaluated) to metrics.jsonl.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  preferenceEvalBatches,
  type PreferenceBatch, type PreferenceStreamBatch, type PreferenceStreamPosition,
} from '../../data/preference/index.js';
import { PatentGPTError } from '../../errors.js';
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, PEFT_PREFIX, safetensorsContent, writeFileAtomic, writeSafetensors, type ModelConfig,
} from '../../models/index.js';
import {
  ScoreHeadModel, bradleyTerryLoss, initScoreHeadModel, pairStats, rewardFolderFiles, saveRewardModel,
} from '../../models/reward.js';
import { ForwardRecorder } from '../../nn/index.js';
import { withDropoutRows } from '../../nn/dropout-rows.js';
import { loraLayers, loraParameters, mergeLora, namedLinears } from '../../nn/lora.js';
import { add, type Tensor } from '../../tensor/index.js';
import { ByteTokenizer } from '../../tokenizer/byte.js';
import type { SentencePieceTokenizer } from '../../tokenizer/sentencepiece.js';
import { configHash, type RewardConfig } from '../config.js';
import type { TaskLoss, TrainResult, TrainTask } from '../trainer.js';
import { cfgError, layerRecords, loadStagePairs, prepareStage, recordStage, resolveInitFolder, runStage, type StageRunOptions, type StageSetup } from './common.js';
import { preferenceDropoutRows } from './dropout-keys.js';
import { adapterTaskPart, attachAdapters, loraCounts, peftAdapterConfig, type LoraSummary, type ModelTaskPart } from './lora-part.js';
import { sftRenderer } from './sft.js';

export type RewardOptions = StageRunOptions;

export interface RewardResult extends TrainResult {
  runDir: string;
  model: ModelConfig;
  peakFlops: number;
  peakSource: 'config' | 'measured';
  data: { train: number; val: number; skipped: Partial<Record<string, number>>; truncated: number; renderer: string };
  /** Where the weights came from: init as a causal LM (new head) or a reward model, or the run's own checkpoint (a resume). */
  initFrom: 'causal-lm' | 'reward' | 'checkpoint';
  /** LoRA runs: adapted layers and trainable parameters; final: the merged reward folder (completed runs). */
  lora?: { layers: number; trainable: number; total: number; final?: { model: string } };
}

/** Where a completed LoRA reward run leaves its merged reward folder. */
export const REWARD_FINAL_DIR = 'final';

/** A batch of B pairs as rewardLoss reads it. */
export type RewardLossBatch = Pick<PreferenceBatch, 'pairs' | 'tokens' | 'cuSeqlens'> & {
  positions?: Int32Array;
  /**
   * Scales the pair metrics (accuracy, margin, reward means): the loop averages metrics over
   * batches, so an evaluation whose batches differ in size weighs each by its pairs through this
   * (pairs * batches / all pairs), and val.accuracy is the share over every held-out pair. Default 1.
   */
  metricWeight?: number;
};

/**
 * The stage's loss on one batch of B pairs (2B sequences, chosen first): Bradley-Terry over the
 * scores at each sequence's last token, plus the decoder's auxiliary losses (SMoE), with the
 * pair statistics as metrics.
 */
export function rewardLoss(model: ScoreHeadModel, batch: RewardLossBatch, cfg: Pick<RewardConfig, 'reward'>): TaskLoss {
  const B = batch.pairs;
  const rec = new ForwardRecorder();
  try {
    const s = model.scores({ tokens: batch.tokens, cuSeqlens: batch.cuSeqlens, ...(batch.positions ? { positions: batch.positions } : {}) }, rec); // (2B)
    if (s.size !== 2 * B) throw new PatentGPTError('E_DATA', `reward: a batch of ${B} pairs holds ${s.size} sequences, expected ${2 * B}`);
    const r = cfg.reward;
    let loss = bradleyTerryLoss(s.narrow(0, B), s.narrow(B, B), { ...(r.margin ? { margin: new Array<number>(B).fill(r.margin) } : {}), centerCoef: r.centerRewardsCoefficient });
    for (const aux of rec.auxLosses.values()) loss = add(loss, aux);
    const v = s.toArray() as Float32Array;
    const chosen = v.subarray(0, B), rejected = v.subarray(B);
    const { accuracy, margin } = pairStats(chosen, rejected);
    const mean = (a: Float32Array): number => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
    const metrics: Record<string, number> = Object.fromEntries(rec.metrics);
    for (const [name, t] of rec.auxLosses) metrics[name] = t.item();
    const w = batch.metricWeight ?? 1;
    return { loss, metrics: { ...layerRecords(metrics), accuracy: accuracy * w, margin: margin * w, rewardChosen: mean(chosen) * w, rewardRejected: mean(rejected) * w } };
  } finally {
    rec.dispose();
  }
}

/** The id the folder records as pad_token_id: the tokenizer's pad, else <unk> (never EOS, which ends the scored sequences). */
function padIdOf(tok: ByteTokenizer | SentencePieceTokenizer): number | null {
  if (tok.padId >= 0) return tok.padId;
  const unk = tok instanceof ByteTokenizer ? -1 : tok.unkId;
  return unk >= 0 && unk !== tok.eosId ? unk : null;
}

/** Runs (or resumes) one reward model stage. */
export async function reward(cfg: RewardConfig, opts: RewardOptions = {}): Promise<RewardResult> {
  const file = opts.configFile ?? 'config';
  if (cfg.kind !== 'reward') throw cfgError(file, 'kind', `"${String(cfg.kind)}" is not a reward config (run it with its own stage, not reward)`);
  const hash = configHash(cfg);
  // a step holds 2B sequences: the memory check counts them (a reward folder as `model` gives its decoder's config)
  const setup = await prepareStage({ ...cfg, batchSize: 2 * cfg.batchSize }, opts, hash);
  const { log, rank, runDir, modelConfig: modelCfg } = setup;

  // ---- data: rendered, split once; the stream's position is a batch count
  const renderer = sftRenderer(cfg, setup.tokenizer, file);
  const { data, skipped, stream } = await loadStagePairs(cfg, setup, renderer);
  if (data.val.length === 0) log('no validation pairs (data.valFraction is 0 or the split is empty); evaluation is off');
  let val: PreferenceBatch[] | null = null;

  const model = new ScoreHeadModel(modelCfg, { init: 'zeros', padTokenId: padIdOf(setup.tokenizer), ...opts.model });
  try {
    const initDir = await resolveInitFolder(cfg.init, log);
    let initFrom: RewardResult['initFrom'] = 'causal-lm';
    const loadInit = async (): Promise<void> => {
      initFrom = await initScoreHeadModel(model, initDir, { seed: cfg.seed, scoreInitStd: cfg.reward.scoreInitStd });
      model.padTokenId = padIdOf(setup.tokenizer) ?? model.padTokenId;
      log(`initial weights from ${initDir} (${initFrom === 'reward' ? 'a reward model' : 'a causal LM: lm_head dropped, new score head'})`);
    };
    const lora = cfg.lora ? await attachLora(model, cfg, setup, loadInit, initDir) : null;
    const { peak, fpt } = await recordStage(cfg, setup, {
      data: { train: data.train.length, val: data.val.length, skipped, truncated: data.truncated, sources: data.sources, renderer: renderer.name },
      ...(lora ? { lora: lora.summary } : {}),
    }, { pairs: true });

    const task: TrainTask<PreferenceStreamBatch | (PreferenceBatch & { targetCount: number; metricWeight: number })> = {
      ...(lora
        ? lora.taskPart
        : {
          parameters: () => model.namedParameters(),
          // a complete reward folder: AutoModelForSequenceClassification loads any checkpoint
          checkpointFiles: () => [
            { name: 'model.safetensors', content: (sink) => safetensorsContent(model.namedParameters()).write(sink) },
            ...rewardFolderFiles(model, { tokenizer: setup.tokenizer }),
          ],
          restoreCheckpoint: async (ck) => {
            await initScoreHeadModel(model, ck.dir);
            initFrom = 'checkpoint';
          },
          initialize: loadInit,
        }),
      nextBatch: () => stream.next(),
      // training batches' global pairs key the adapters' dropout masks (the same on any rank count)
      loss: (b) => ('index' in b
        ? withDropoutRows(preferenceDropoutRows(stream, b, setup.rankGradAccum, cfg.data.maxLength ?? cfg.seqLen), () => rewardLoss(model, b, cfg))
        : rewardLoss(model, b, cfg)),
      ...(data.val.length > 0
        ? {
          // valLoss is a mean per pair: each batch weighs by its pairs
          evalBatches: (count: number) => {
            val ??= preferenceEvalBatches(data.val, cfg.batchSize);
            const picked = val.slice(0, count);
            const pairs = picked.reduce((a, b) => a + b.pairs, 0);
            return picked.map((b) => ({ ...b, targetCount: b.pairs, metricWeight: (b.pairs * picked.length) / pairs }));
          },
        }
        : {}),
      dataPosition: () => stream.position(),
      restoreDataPosition: (p) => stream.restore(p as PreferenceStreamPosition),
      lossIsTokenNll: false, // a pair loss: exp(valLoss) is no perplexity
    };
    const result = await runStage(task, cfg, setup, opts, {
      rng: { seed: cfg.seed, generators: 'none: the pair order is a pure function of the seed and the batch count' },
      flopsPerToken: fpt,
      peakFlops: peak.peakFlops,
    });
    let loraOut: RewardResult['lora'];
    if (lora) {
      loraOut = { ...lora.summary };
      if (result.status === 'completed' && rank === 0) {
        const dir = path.resolve(runDir, REWARD_FINAL_DIR);
        mergeLora(model);
        await saveRewardModel(model, dir, { tokenizer: setup.tokenizer });
        loraOut.final = { model: dir };
        log(`final reward model (adapters merged): ${dir}`);
      }
    }
    return {
      ...result, runDir, model: modelCfg, peakFlops: peak.peakFlops, peakSource: peak.peakSource, initFrom,
      data: { train: data.train.length, val: data.val.length, skipped, truncated: data.truncated, renderer: renderer.name },
      ...(loraOut ? { lora: loraOut } : {}),
    };
  } finally {
    model.dispose();
  }
}

/** What PEFT's adapter_config.json says for sequence classification: the score head trained whole, saved beside the adapters. */
const SEQ_CLS_ADAPTER = { task_type: 'SEQ_CLS', modules_to_save: ['score'] };

/**
 * Saves a LoRA'd reward model's adapters and score head as a PEFT adapter folder
 * (PeftModel.from_pretrained(AutoModelForSequenceClassification(base), dir) loads it).
 */
export async function saveRewardAdapter(model: ScoreHeadModel, dir: string, opts: { baseModel: string }): Promise<void> {
  const config = await peftAdapterConfig(model, opts.baseModel, SEQ_CLS_ADAPTER);
  await fsp.mkdir(dir, { recursive: true });
  const tensors = [...loraParameters(model), ['score.weight', model.score.weight] as [string, Tensor]].map(([n, t]) => [PEFT_PREFIX + n, t] as const);
  await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors);
  await writeFileAtomic(path.join(dir, ADAPTER_CONFIG_FILE), config);
}

/**
 * A LoRA run's model: init loaded first (the base, and a new head for a causal LM), then adapters
 * on the decoder's target Linears (never the head), everything frozen but the adapters and the
 * score head. A checkpoint holds those tensors; a resume loads init again and them over it.
 */
async function attachLora(model: ScoreHeadModel, cfg: RewardConfig, setup: StageSetup, loadInit: () => Promise<void>, initDir: string): Promise<{
  summary: Omit<LoraSummary, 'final'>;
  taskPart: ModelTaskPart;
}> {
  const l = cfg.lora!;
  await loadInit();
  // "all-linear" and patterns name the decoder's Linears: the head trains whole, it takes no adapter
  const decoder = namedLinears(model).map(([n]) => n).filter((n) => n !== 'score');
  let params = attachAdapters(model, l, setup.file, l.targetModules === 'all-linear' ? decoder.map((n) => n.replace(/\./g, '\\.')).join('|') : l.targetModules);
  if (loraLayers(model).some(([n]) => n === 'score')) throw cfgError(setup.file, 'lora.targetModules', 'matches the score head; it trains whole, leave "score" out');
  model.score.weight.requiresGrad = true;
  params = [...params, ['score.weight', model.score.weight]];
  const summary = loraCounts(model, params);
  setup.log(`LoRA: r ${l.r}, alpha ${l.alpha}, dropout ${l.dropout} on ${summary.layers} layers, and the score head; ${summary.trainable} trainable parameters of ${summary.total} (${((100 * summary.trainable) / summary.total).toFixed(2)}%)`);
  // PEFT's adapter folder (PeftModel.from_pretrained loads it on the init reward folder)
  const adapterConfig = await peftAdapterConfig(model, path.resolve(initDir), SEQ_CLS_ADAPTER);
  return { summary, taskPart: adapterTaskPart(model, params, adapterConfig, { what: 'the adapters and score head of the checkpoint', whose: "this run's" }) };
}
