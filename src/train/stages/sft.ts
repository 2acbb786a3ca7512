// The supervised fine-tuning stage (full fine-tuning or LoRA): conversations from SFT files (messages,
// Alpaca or ShareGPT records; src/data/sft) rendered with a chat template, packed into rows
// where each conversation is its own attention segment, and the next-token loss on the
// assistant's tokens only (prompts, template scaffolding and padding carry target -100). The
// model, initial weights (`init`, required), tokenizer, checkpoint files (complete model
// folders), run folder and the loop come from stages/common.ts and the Trainer.
//
// Metrics: loss (the step's summed assistant-token losses over its assistant targets, all
// micro-batches together, as TRL's SFTTrainer: with gradAccum > 1 a micro-batch weighs by its
// tokens, not 1 / gradAccum), supervisedTokens (assistant targets per optimizer step, all
// ranks), valLoss (assistant-token loss on the held-out split, data.valFraction; no split: no
// evaluation).
//
// LoRA (config `lora`): the base weights (`init`) are loaded and frozen, adapters are attached to
// the target Linears, and only the adapters' A and B reach the optimizer (no moments, no
// gradients for the base). A checkpoint then holds the adapter alone, in PEFT's format
// (adapter_config.json + adapter_model.safetensors, base_model_name_or_path = the init folder),
// beside lora_state.json (each adapter's dropout stream position, for forwards outside the
// training steps; a step's masks are keyed by its rows' global places and the step, see
// stages/dropout-keys.ts) and the optimizer state; a resume loads the base from init again, the
// adapter and its dropout positions from the checkpoint, so it goes on bit for bit as an
// uninterrupted run, on any number of ranks under --global-batch. A completed LoRA run writes <runDir>/final/: the base model folder (the frozen
// weights as trained on, with the stage's tokenizer record; transformers loads it) and
// final/adapter/ (the last adapter, PEFT's format, its base final/ itself). `patentgpt sft merge`
// folds it into one model folder; Engine.fromPretrained(final, { adapter }) serves it unmerged.
import * as path from 'node:path';
import {
  loadSftData, llama2ChatRenderer, chatRenderer, sftEvalBatches, SftBatchStream, IGNORE_INDEX,
  type ChatRenderer, type SftBatch, type SftData, type SftStreamBatch, type SftStreamPosition,
} from '../../data/sft/index.js';
import type { LlamaForCausalLM, ModelConfig } from '../../models/index.js';
import { withDropoutRows } from '../../nn/dropout-rows.js';
import { loraLayers } from '../../nn/lora.js';
import { scale } from '../../tensor/index.js';
import { permutation } from '../../util/rng.js';
import { ByteTokenizer } from '../../tokenizer/byte.js';
import type { ChatMessage } from '../../tokenizer/chat.js';
import { loadChatTemplate } from '../../tokenizer/chat-template.js';
import { SentencePieceTokenizer } from '../../tokenizer/sentencepiece.js';
import { configHash, type SftConfig } from '../config.js';
import type { TaskLoss, TrainResult, TrainTask } from '../trainer.js';
import {
  cfgError, createStageModel, layerRecords, loadInitialWeights, logStageData, modelTaskPart, prepareStage, recordStage, runStage, type StageRunOptions, type StageSetup,
} from './common.js';
import { sftDropoutRows } from './dropout-keys.js';
import { adapterTaskPart, attachAdapters, finalLoraSummary, loraCounts, peftAdapterConfig, type LoraSummary, type ModelTaskPart } from './lora-part.js';

export type SftOptions = StageRunOptions;

export interface SftResult extends TrainResult {
  runDir: string;
  model: ModelConfig;
  peakFlops: number;
  peakSource: 'config' | 'measured';
  data: { train: number; val: number; skipped: Partial<Record<string, number>>; truncated: number; rows: number; renderer: string };
  /** LoRA runs: what trained, and the final folders (when the run completed). */
  lora?: LoraSummary;
}

export { LORA_ADAPTER_DIR, LORA_FINAL_DIR, LORA_STATE_FILE, type LoraSummary } from './lora-part.js';

/**
 * LLaMA-2's chat format (src/tokenizer/chat.ts) over the byte tokenizer: BOS "[INST] ... [/INST]"
 * for user turns (the system prompt folded into the first), " answer " EOS for assistant turns,
 * the assistant's text and its EOS masked in. The tiny models of the examples use it.
 */
export function llama2ByteRenderer(tok: ByteTokenizer): ChatRenderer {
  return chatRenderer((messages: readonly ChatMessage[]) => {
    let system: string | null = null;
    let turns = messages;
    if (messages[0]?.role === 'system') {
      system = messages[0].content;
      turns = messages.slice(1);
    }
    if (turns.length === 0) throw new Error('no user turn');
    const ids: number[] = [];
    const mask: number[] = [];
    const push = (text: string, assistant: boolean): void => {
      for (const id of tok.encode(text)) {
        ids.push(id);
        mask.push(assistant ? 1 : 0);
      }
    };
    turns.forEach((m, i) => {
      const expected = i % 2 === 0 ? 'user' : 'assistant';
      if (m.role !== expected) throw new Error(`roles must alternate user/assistant after an optional system message; turn ${i} is ${m.role}`);
      if (m.role === 'user') {
        const content = i === 0 && system !== null ? `<<SYS>>\n${system}\n<</SYS>>\n\n${m.content}` : m.content;
        ids.push(tok.bosId);
        mask.push(0);
        push(`[INST] ${content.trim()} [/INST]`, false);
      } else {
        push(` ${m.content.trim()} `, true);
        ids.push(tok.eosId);
        mask.push(1);
      }
    });
    return { ids: Int32Array.from(ids), assistantMask: Uint8Array.from(mask) };
  }, 'llama-2 (byte)');
}

/**
 * The stage's loss on one batch: the mean next-token cross-entropy over its supervised targets
 * (the assistant's tokens; everything else is -100), with the model's metrics and the
 * supervised-token count scaled to a whole optimizer step (`perStep` micro-batches, all ranks).
 *
 * With `stepTargets` (the supervised targets of the whole optimizer step: every micro-batch of
 * every rank), the mean is reweighted so that the step's loss, and its gradient, is the sum of
 * its token losses over stepTargets, as TRL and transformers compute it (num_items_in_batch): a
 * micro-batch with more assistant tokens weighs more, whatever gradAccum. The loop divides by
 * the `perStep` micro-batches (gradAccum, then the ranks' mean), hence the factor
 * targetCount * perStep / stepTargets. With one micro-batch it is 1.
 */
export function sftLoss(model: LlamaForCausalLM, batch: SftBatch, perStep = 1, stepTargets?: number): TaskLoss {
  const out = model.lossWithMetrics(batch);
  const metrics = layerRecords(out.metrics);
  if (stepTargets === undefined || stepTargets === 0) return { loss: out.loss, metrics: { ...metrics, supervisedTokens: batch.targetCount * perStep } };
  const w = (batch.targetCount * perStep) / stepTargets;
  return { loss: w === 1 ? out.loss : scale(out.loss, w), metrics: { ...metrics, supervisedTokens: stepTargets } };
}

/**
 * The supervised targets of each optimizer step over all its micro-batches and ranks, from the
 * stream's rows and SftBatchStream's contract (src/data/sft/stream.ts): global row g is row
 * perm(seed, epoch)[g mod rows] of epoch g div rows (in order without shuffling), and step s
 * takes global rows [s G W B, (s + 1) G W B) (G micro-batches of W ranks of B rows; G is each
 * rank's share of gradAccum under --global-batch).
 * test/train/sft-lora.test.ts checks it against the batches the ranks' streams produce.
 */
export class SftStepTargets {
  readonly #rowTargets: Int32Array;
  readonly #perStep: number;
  readonly #seed: number;
  readonly #shuffle: boolean;
  #perm: { epoch: number; order: Uint32Array } | null = null;
  #cached: { step: number; count: number } | null = null;

  constructor(stream: SftBatchStream, opts: { gradAccum: number; seed: number; shuffle: boolean }) {
    this.#rowTargets = Int32Array.from(stream.rows, (r) => r.targets.reduce((n, t) => n + (t === IGNORE_INDEX ? 0 : 1), 0));
    this.#perStep = opts.gradAccum * stream.worldSize * stream.batchSize;
    this.#seed = opts.seed;
    this.#shuffle = opts.shuffle;
  }

  /** Supervised targets of optimizer step `step` (0-based), all ranks. */
  of(step: number): number {
    if (this.#cached?.step === step) return this.#cached.count;
    const n = this.#rowTargets.length;
    let count = 0;
    for (let g = step * this.#perStep; g < (step + 1) * this.#perStep; g++) {
      const epoch = Math.floor(g / n);
      let row = g % n;
      if (this.#shuffle) {
        if (this.#perm?.epoch !== epoch) this.#perm = { epoch, order: permutation(n, this.#seed, 'sft-rows', epoch) };
        row = this.#perm.order[row]!;
      }
      count += this.#rowTargets[row]!;
    }
    this.#cached = { step, count };
    return count;
  }
}

/** The stage's chat renderer: the config's chatTemplate over the stage's tokenizer. */
export function sftRenderer(cfg: Pick<SftConfig, 'chatTemplate' | 'tokenizer'>, tokenizer: ByteTokenizer | SentencePieceTokenizer, file = 'config'): ChatRenderer {
  const t = cfg.chatTemplate;
  if (t === 'llama2') return tokenizer instanceof ByteTokenizer ? llama2ByteRenderer(tokenizer) : llama2ChatRenderer(tokenizer);
  if (!(tokenizer instanceof SentencePieceTokenizer))
    throw cfgError(file, 'chatTemplate', `a Hugging Face chat template needs a SentencePiece tokenizer (tokenizer is "${cfg.tokenizer}"); use "llama2" with the byte tokenizer`);
  return chatRenderer(configChatTemplate(t, file).renderer(tokenizer), t.name ?? path.basename(t.path));
}

/** The Hugging Face chat template a config's chatTemplate names; a config error naming the field when it cannot be read. */
export function configChatTemplate(t: Exclude<SftConfig['chatTemplate'], 'llama2'>, file = 'config'): ReturnType<typeof loadChatTemplate> {
  try {
    return loadChatTemplate(t.path, t.name);
  } catch (err) {
    throw cfgError(file, t.name !== undefined ? 'chatTemplate.name' : 'chatTemplate', `${t.path}: ${(err as Error).message}`);
  }
}

/** Runs (or resumes) one supervised fine-tuning stage. */
export async function sft(cfg: SftConfig, opts: SftOptions = {}): Promise<SftResult> {
  const file = opts.configFile ?? 'config';
  if (cfg.kind !== 'sft') throw cfgError(file, 'kind', `"${String(cfg.kind)}" is not an SFT config (run it with its own stage, not sft)`);
  const hash = configHash(cfg);
  const setup = await prepareStage(cfg, opts, hash);
  const { log, rank, worldSize, runDir, modelConfig: modelCfg } = setup;

  // ---- data: rendered, split and mixed once; the stream's position is a batch count
  const renderer = sftRenderer(cfg, setup.tokenizer, file);
  const dc = cfg.data;
  const data: SftData = await loadSftData({
    sources: dc.sources, renderer, seed: cfg.seed, valFraction: dc.valFraction, splitSeed: dc.splitSeed, shuffle: dc.shuffle,
    trainOnPrompt: dc.trainOnPrompt, maxLength: dc.maxLength ?? cfg.seqLen,
  });
  const skipped = logStageData(log, 'conversations', renderer.name, dc.maxLength ?? cfg.seqLen, data);
  const pack = { seqLen: cfg.seqLen, mode: dc.packing, strategy: dc.strategy };
  const stream = new SftBatchStream(data.train, { ...pack, batchSize: cfg.batchSize, shuffle: dc.shuffle, seed: cfg.seed, rank, worldSize });
  // --global-batch: each rank runs its share of gradAccum; a step is still gradAccum x batchSize rows
  const accum = setup.rankGradAccum;
  const stepTargets = new SftStepTargets(stream, { gradAccum: accum, seed: cfg.seed, shuffle: dc.shuffle });
  let val: SftBatch[] | null = null;
  if (data.val.length === 0) log('no validation conversations (data.valFraction is 0 or the split is empty); evaluation is off');

  let model: LlamaForCausalLM | null = null;
  try {
    model = createStageModel(cfg, setup, opts);
    const m: LlamaForCausalLM = model;
    const lora = cfg.lora ? await attachLora(m, cfg, setup) : null;
    const { peak, fpt } = await recordStage(cfg, setup, {
      data: { train: data.train.length, val: data.val.length, rows: stream.rows.length, skipped, truncated: data.truncated, sources: data.sources, renderer: renderer.name },
      ...(lora ? { lora: lora.summary } : {}),
    });

    const perStep = accum * worldSize; // the loop averages metrics (and the ranks' gradients) over a step's micro-batches
    const task: TrainTask<SftStreamBatch | SftBatch> = {
      ...(lora ? lora.taskPart : modelTaskPart(m, cfg, setup)),
      nextBatch: () => stream.next(),
      // training batches carry their index: the step's token count reweights them (TRL's averaging),
      // and their global rows key the dropout masks (the same on any rank count; src/nn/dropout-rows.ts)
      loss: (b) => ('index' in b
        ? withDropoutRows(sftDropoutRows(stream, b, accum, cfg.seqLen), () => sftLoss(m, b, perStep, stepTargets.of(Math.floor(b.index / accum))))
        : sftLoss(m, b, perStep)),
      ...(data.val.length > 0
        ? {
            evalBatches: (count: number) => {
              val ??= sftEvalBatches(data.val, { ...pack, batchSize: cfg.batchSize });
              return val.slice(0, count);
            },
          }
        : {}),
      dataPosition: () => stream.position(),
      restoreDataPosition: (p) => stream.restore(p as SftStreamPosition),
    };
    const result = await runStage(task, cfg, setup, opts, {
      rng: { seed: cfg.seed, dataSeed: cfg.seed, generators: 'none: the row order is a pure function of the seed and the batch count' },
      flopsPerToken: fpt,
      peakFlops: peak.peakFlops,
    });
    const loraSummary = lora ? await finalLoraSummary(lora.summary, result, m, setup) : undefined;
    return {
      ...result, runDir, model: modelCfg, peakFlops: peak.peakFlops, peakSource: peak.peakSource,
      data: { train: data.train.length, val: data.val.length, skipped, truncated: data.truncated, rows: stream.rows.length, renderer: renderer.name },
      ...(loraSummary ? { lora: loraSummary } : {}),
    };
  } finally {
    model?.dispose();
  }
}

/**
 * A LoRA run's model: the base weights from init (loaded before the adapters, so a grown
 * vocabulary works as in full fine-tuning), then the adapters (A seeded, B zeros), the base
 * frozen. Returns the task's model side: only the adapters are parameters of the loop; a
 * checkpoint holds them in PEFT's format; a resume restores them over the same base.
 */
async function attachLora(model: LlamaForCausalLM, cfg: SftConfig, setup: StageSetup): Promise<{ summary: LoraSummary; taskPart: ModelTaskPart }> {
  const l = cfg.lora!;
  const from = await loadInitialWeights(model, cfg.init, setup.log);
  const params = attachAdapters(model, l, setup.file);
  const layers = loraLayers(model).map(([n]) => n);
  const summary = loraCounts(model, params);
  setup.log(`LoRA: r ${l.r}, alpha ${l.alpha}, dropout ${l.dropout} on ${layers.length} layers (${layers.slice(0, 2).join(', ')}${layers.length > 2 ? ', ...' : ''}); ` +
    `${summary.trainable} trainable parameters of ${summary.total} (${((100 * summary.trainable) / summary.total).toFixed(2)}%); base weights from ${from}, frozen`);
  const adapterConfig = await peftAdapterConfig(model, path.resolve(from));
  return { summary, taskPart: adapterTaskPart(model, params, adapterConfig, { what: 'the LoRA adapter of the checkpoint', whose: "this run's adapter" }) };
}
