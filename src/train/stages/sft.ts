// The supervised fine-tuning stage (full fine-tuning): conversations from SFT files (messages,
// Alpaca or ShareGPT records; src/data/sft) rendered with a chat template, packed into rows
// where each conversation is its own attention segment, and the next-token loss on the
// assistant's tokens only (prompts, template scaffolding and padding carry target -100). The
// model, initial weights (`init`, required), tokenizer, checkpoint files (complete model
// folders), run folder and the loop come from stages/common.ts and the Trainer.
//
// Metrics: loss (the mean over the micro-batch's assistant targets), supervisedTokens (assistant
// targets per optimizer step, all ranks), valLoss (assistant-token loss on the held-out split,
// data.valFraction; no split: no evaluation).
import * as path from 'node:path';
import {
  loadSftData, llama2ChatRenderer, chatRenderer, sftEvalBatches, SftBatchStream,
  type ChatRenderer, type SftBatch, type SftData, type SftStreamBatch, type SftStreamPosition,
} from '../../data/sft/index.js';
import type { LlamaForCausalLM, ModelConfig } from '../../models/index.js';
import { ByteTokenizer } from '../../tokenizer/byte.js';
import type { ChatMessage } from '../../tokenizer/chat.js';
import { loadChatTemplate } from '../../tokenizer/chat-template.js';
import { SentencePieceTokenizer } from '../../tokenizer/sentencepiece.js';
import { configHash, type SftConfig } from '../config.js';
import type { TaskLoss, TrainResult, TrainTask } from '../trainer.js';
import {
  cfgError, createStageModel, layerRecords, modelTaskPart, prepareStage, recordStage, runStage, type StageRunOptions,
} from './common.js';

export type SftOptions = StageRunOptions;

export interface SftResult extends TrainResult {
  runDir: string;
  model: ModelConfig;
  peakFlops: number;
  peakSource: 'config' | 'measured';
  data: { train: number; val: number; skipped: Partial<Record<string, number>>; truncated: number; rows: number; renderer: string };
}

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
 */
export function sftLoss(model: LlamaForCausalLM, batch: SftBatch, perStep = 1): TaskLoss {
  const out = model.lossWithMetrics(batch);
  return { loss: out.loss, metrics: { ...layerRecords(out.metrics), supervisedTokens: batch.targetCount * perStep } };
}

/** The stage's chat renderer: the config's chatTemplate over the stage's tokenizer. */
export function sftRenderer(cfg: Pick<SftConfig, 'chatTemplate' | 'tokenizer'>, tokenizer: ByteTokenizer | SentencePieceTokenizer, file = 'config'): ChatRenderer {
  const t = cfg.chatTemplate;
  if (t === 'llama2') return tokenizer instanceof ByteTokenizer ? llama2ByteRenderer(tokenizer) : llama2ChatRenderer(tokenizer);
  if (!(tokenizer instanceof SentencePieceTokenizer))
    throw cfgError(file, 'chatTemplate', `a Hugging Face chat template needs a SentencePiece tokenizer (tokenizer is "${cfg.tokenizer}"); use "llama2" with the byte tokenizer`);
  let template;
  try {
    template = loadChatTemplate(t.path, t.name);
  } catch (err) {
    throw cfgError(file, t.name !== undefined ? 'chatTemplate.name' : 'chatTemplate', `${t.path}: ${(err as Error).message}`);
  }
  return chatRenderer(template.renderer(tokenizer), t.name ?? path.basename(t.path));
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
  const skipped = data.skipped.nonzero();
  log(`data: ${data.train.length} training and ${data.val.length} validation conversations (chat template ${renderer.name})` +
    (data.skipped.total ? `, ${data.skipped.total} records skipped (${Object.entries(skipped).map(([r, n]) => `${r} ${n}`).join(', ')})` : '') +
    (data.truncated ? `, ${data.truncated} cut to ${dc.maxLength ?? cfg.seqLen} tokens` : ''));
  const pack = { seqLen: cfg.seqLen, mode: dc.packing, strategy: dc.strategy };
  const stream = new SftBatchStream(data.train, { ...pack, batchSize: cfg.batchSize, shuffle: dc.shuffle, seed: cfg.seed, rank, worldSize });
  let val: SftBatch[] | null = null;
  if (data.val.length === 0) log('no validation conversations (data.valFraction is 0 or the split is empty); evaluation is off');

  let model: LlamaForCausalLM | null = null;
  try {
    model = createStageModel(cfg, setup, opts);
    const { peak, fpt } = await recordStage(cfg, setup, {
      data: { train: data.train.length, val: data.val.length, rows: stream.rows.length, skipped, truncated: data.truncated, sources: data.sources, renderer: renderer.name },
    });

    const m: LlamaForCausalLM = model;
    const perStep = cfg.gradAccum * worldSize; // the loop averages metrics over a step's micro-batches
    const task: TrainTask<SftStreamBatch | SftBatch> = {
      ...modelTaskPart(m, cfg, setup),
      nextBatch: () => stream.next(),
      loss: (b) => sftLoss(m, b, perStep),
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
    return {
      ...result, runDir, model: modelCfg, peakFlops: peak.peakFlops, peakSource: peak.peakSource,
      data: { train: data.train.length, val: data.val.length, skipped, truncated: data.truncated, rows: stream.rows.length, renderer: renderer.name },
    };
  } finally {
    model?.dispose();
  }
}
