// The DPO stage (Rafailov et al. 2023): a policy trained on pairs of a prompt and a chosen and a
// rejected response (src/data/preference) against a fixed reference, full fine-tuning or LoRA.
//
//   per pair:   pi_c, pi_r = summed log-probs of the chosen / rejected response tokens under
//               the policy (prompt and template masked out); ref_c, ref_r the same under the
//               reference; margin = (pi_c - ref_c) - (pi_r - ref_r)
//   sigmoid:    -(1 - eps) log sigmoid(beta margin) - eps log sigmoid(-beta margin)
//               (eps = dpo.labelSmoothing: the conservative cDPO; eps 0 is TRL's "sigmoid")
//   ipo:        (margin' - 1 / (2 beta))^2, margin' on token-averaged log-ratios (as TRL)
//   loss:       the mean over the batch's pairs (TRL: per_sequence_loss.mean())
//
// The reference: "precomputed" runs the initial model once over every pair (training and
// validation) before the first step, so no second model is held (TRL's precompute_ref_log_probs);
// "adapters-off" (LoRA) reads the frozen base with the adapters taken off the layers for a
// no-grad forward each step (PEFT's disable_adapter), so memory is one base plus adapters.
//
// Metrics, as TRL names them: rewards/chosen, rewards/rejected (beta * log-ratio, batch means),
// rewards/margins, rewards/accuracies (share of pairs with chosen reward > rejected reward),
// logps/chosen, logps/rejected; on the validation split the same under "val." and valLoss (the
// mean DPO loss over the held-out pairs).
//
// Model resolution, init weights, tokenizer, run folder, checkpoints (complete model folders, or
// the PEFT adapter under LoRA) and the loop come from stages/common.ts and the Trainer: a killed
// run resumes bit-exact (the precomputed reference log-probs are kept in the run folder,
// reference-logps.json, and read back on resume when config, pairs and init weights match).
// A completed LoRA run writes <runDir>/final/ (the base folder) and final/adapter/ (PEFT), as SFT.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  preferenceEvalBatches, templatePreferenceRenderer,
  type PreferenceBatch, type PreferenceExample, type PreferenceRenderer, type PreferenceStreamPosition,
} from '../../data/preference/index.js';
import { PatentGPTError } from '../../errors.js';
import { writeFileAtomic, type LlamaForCausalLM, type ModelConfig } from '../../models/index.js';
import { withDropoutRows } from '../../nn/dropout-rows.js';
import { withAdaptersDisabled } from '../../nn/lora.js';
import {
  Tensor, add, gather, linear, logprobs, logsigmoid, mean, mul, noGrad, scale, scatterAdd, scope, sub,
} from '../../tensor/index.js';
import { SentencePieceTokenizer } from '../../tokenizer/sentencepiece.js';
import { configHash, type DpoConfig } from '../config.js';
import type { DpoObjective } from '../config-dpo.js';
import type { TaskLoss, TrainResult, TrainTask } from '../trainer.js';
import {
  cfgError, createStageModel, loadInitialWeights, loadStagePairs, modelTaskPart, prepareStage, recordStage, runStage, type StageRunOptions, type StageSetup,
} from './common.js';
import { preferenceDropoutRows } from './dropout-keys.js';
import { adapterTaskPart, attachAdapters, finalLoraSummary, loraCounts, peftAdapterConfig, type LoraSummary, type ModelTaskPart } from './lora-part.js';
import { configChatTemplate, sftRenderer } from './sft.js';

export type DpoOptions = StageRunOptions;

export interface DpoResult extends TrainResult {
  runDir: string;
  model: ModelConfig;
  data: { train: number; val: number; skipped: Partial<Record<string, number>>; truncated: number; renderer: string };
  /** LoRA runs: adapted layers and parameter counts. */
  lora?: { layers: number; trainable: number; total: number; final?: { model: string; adapter: string } };
}

/** Summed response log-probs of each pair's sides: chosen[i], rejected[i] (nats). */
export interface PairLogps {
  chosen: Float64Array;
  rejected: Float64Array;
}

/**
 * (2B) summed log-probs of each packed sequence's response tokens under `model`: the final hidden
 * states at the scored positions only, through the output layer, log-softmax at the next token,
 * summed per sequence. Differentiable (record under grad, or call inside noGrad).
 */
export function sequenceLogps(model: LlamaForCausalLM, batch: PreferenceBatch): Tensor {
  return scope(() => {
    const S = batch.cuSeqlens.length - 1;
    const M = batch.scored.rows.length;
    const hs = model.hidden(batch, undefined, Tensor.from(batch.scored.rows, [M], { dtype: 'i32', device: model.device })); // (M, C): the last layer past attention for these rows alone
    const lp = logprobs(linear(hs, model.outputWeight), Tensor.from(batch.scored.ids, [M], { dtype: 'i32' })); // (M)
    return scatterAdd(Tensor.zeros([S]), 0, Tensor.from(batch.scored.seq, [M], { dtype: 'i32' }), lp); // (2B)
  });
}

/** The DPO loss of one batch given the reference log-probs of its pairs (in batch order), with TRL's metrics. */
export function dpoLoss(policy: Tensor, batch: PreferenceBatch, ref: PairLogps, obj: DpoObjective): TaskLoss {
  const B = batch.pairs;
  if (policy.size !== 2 * B || ref.chosen.length !== B || ref.rejected.length !== B)
    throw new PatentGPTError('E_SHAPE', `dpoLoss: ${B} pairs need 2B = ${2 * B} policy log-probs and ${B} reference values per side, got ${policy.size}, ${ref.chosen.length}, ${ref.rejected.length}`);
  const { beta } = obj;
  const pv = policy.toArray() as Float32Array;
  const loss = scope(() => {
    const idx = (o: number): Tensor => Tensor.from(Int32Array.from({ length: B }, (_, i) => o + i), [B], { dtype: 'i32' });
    let pc = gather(policy, 0, idx(0)); // (B)
    let pr = gather(policy, 0, idx(B)); // (B)
    const refDiff = new Float32Array(B);
    if (obj.loss === 'ipo') {
      // token-averaged log-ratios: (pi - ref) / n on each side
      const inv = (o: number): Float32Array => Float32Array.from({ length: B }, (_, i) => 1 / Math.max(1, batch.responseTokens[o + i]!));
      const ic = inv(0);
      const ir = inv(B);
      pc = mul(pc, Tensor.from(ic, [B]));
      pr = mul(pr, Tensor.from(ir, [B]));
      for (let i = 0; i < B; i++) refDiff[i] = ref.chosen[i]! * ic[i]! - ref.rejected[i]! * ir[i]!;
    } else for (let i = 0; i < B; i++) refDiff[i] = ref.chosen[i]! - ref.rejected[i]!;
    const margin = sub(sub(pc, pr), Tensor.from(refDiff, [B])); // (B)
    if (obj.loss === 'ipo') {
      const d = add(margin, Tensor.full([B], -1 / (2 * beta)));
      return mean(mul(d, d));
    }
    const eps = obj.labelSmoothing;
    const pos = scale(mean(logsigmoid(scale(margin, beta))), -(1 - eps));
    return eps > 0 ? add(pos, scale(mean(logsigmoid(scale(margin, -beta))), -eps)) : pos;
  });
  let rc = 0;
  let rr = 0;
  let acc = 0;
  let lc = 0;
  let lr = 0;
  for (let i = 0; i < B; i++) {
    const c = beta * (pv[i]! - ref.chosen[i]!);
    const r = beta * (pv[B + i]! - ref.rejected[i]!);
    rc += c;
    rr += r;
    acc += c > r ? 1 : 0;
    lc += pv[i]!;
    lr += pv[B + i]!;
  }
  return {
    loss,
    metrics: {
      'rewards/chosen': rc / B, 'rewards/rejected': rr / B, 'rewards/margins': (rc - rr) / B, 'rewards/accuracies': acc / B,
      'logps/chosen': lc / B, 'logps/rejected': lr / B,
    },
  };
}

/** Reference log-probs of every example, a batch of `batchSize` pairs at a time (no grad). */
export function referenceLogps(model: LlamaForCausalLM, examples: readonly PreferenceExample[], batchSize: number): PairLogps {
  const out: PairLogps = { chosen: new Float64Array(examples.length), rejected: new Float64Array(examples.length) };
  let at = 0;
  for (const b of preferenceEvalBatches(examples, batchSize)) {
    const v = noGrad(() => scope(() => sequenceLogps(model, b).toArray() as Float32Array));
    for (let i = 0; i < b.pairs; i++) {
      out.chosen[at + i] = v[i]!;
      out.rejected[at + i] = v[b.pairs + i]!;
    }
    at += b.pairs;
  }
  return out;
}

/** The stage's renderer: LLaMA-2's built-in format as SFT, or a Hugging Face template with its generation prompt (TRL's prompt/completion cut). */
export function dpoRenderer(cfg: DpoConfig, tokenizer: StageSetup['tokenizer'], file = 'config'): PreferenceRenderer {
  const t = cfg.chatTemplate;
  if (t === 'llama2' || !(tokenizer instanceof SentencePieceTokenizer)) return sftRenderer(cfg, tokenizer, file);
  return templatePreferenceRenderer(configChatTemplate(t, file), tokenizer, t.name ?? path.basename(t.path));
}

/**
 * The precomputed reference of a run, kept in <runDir>/reference-logps.json so a resume reads it
 * instead of another pass: valid only for the same config, pairs (the stream's fingerprint and the
 * validation pairs) and initial weights (their folder, size and modification time).
 */
export const REFERENCE_FILE = 'reference-logps.json';

function referenceKey(configHash: string, trainFingerprint: string, val: readonly PreferenceExample[], from: string): string {
  const h = createHash('sha256').update(`${configHash}\0${trainFingerprint}\0${path.resolve(from)}`);
  for (const f of ['model.safetensors', 'config.json']) {
    try {
      const st = fs.statSync(path.join(from, f));
      h.update(`\0${f}:${st.size}:${st.mtimeMs}`);
    } catch {
      h.update(`\0${f}:none`);
    }
  }
  for (const e of val) h.update(Buffer.from(e.chosen.ids.buffer, e.chosen.ids.byteOffset, e.chosen.ids.byteLength)).update(Buffer.from(e.rejected.ids.buffer, e.rejected.ids.byteOffset, e.rejected.ids.byteLength));
  return h.digest('hex').slice(0, 32);
}

const toJson = (r: PairLogps): { chosen: number[]; rejected: number[] } => ({ chosen: Array.from(r.chosen), rejected: Array.from(r.rejected) });

/** The cached reference when the file is there, whole and made for this key; else null (recompute). */
async function readReferenceCache(file: string, key: string, nTrain: number, nVal: number): Promise<{ train: PairLogps; val: PairLogps } | null> {
  let j: { version?: unknown; key?: unknown; train?: { chosen?: unknown; rejected?: unknown }; val?: { chosen?: unknown; rejected?: unknown } };
  try {
    j = JSON.parse(await fsp.readFile(file, 'utf8')) as typeof j;
  } catch {
    return null;
  }
  const side = (x: unknown, n: number): Float64Array | null =>
    Array.isArray(x) && x.length === n && x.every((v) => typeof v === 'number' && Number.isFinite(v)) ? Float64Array.from(x as number[]) : null;
  if (j.version !== 1 || j.key !== key) return null;
  const tc = side(j.train?.chosen, nTrain);
  const tr = side(j.train?.rejected, nTrain);
  const vc = side(j.val?.chosen, nVal);
  const vr = side(j.val?.rejected, nVal);
  return tc && tr && vc && vr ? { train: { chosen: tc, rejected: tr }, val: { chosen: vc, rejected: vr } } : null;
}

type DpoBatch = PreferenceBatch & { targetCount: number; ref: PairLogps | null; index?: number };

/** Runs (or resumes) one DPO stage. */
export async function dpo(cfg: DpoConfig, opts: DpoOptions = {}): Promise<DpoResult> {
  const file = opts.configFile ?? 'config';
  if (cfg.kind !== 'dpo') throw cfgError(file, 'kind', `"${String(cfg.kind)}" is not a DPO config (run it with its own stage, not dpo)`);
  const hash = configHash(cfg);
  // a batch holds 2 * batchSize sequences (chosen and rejected): the memory check counts them all
  const setup = await prepareStage({ ...cfg, batchSize: 2 * cfg.batchSize }, opts, hash);
  const { log, rank, runDir, modelConfig: modelCfg } = setup;

  const renderer = dpoRenderer(cfg, setup.tokenizer, file);
  const { data, skipped, stream } = await loadStagePairs(cfg, setup, renderer);

  let model: LlamaForCausalLM | null = null;
  try {
    model = createStageModel(cfg, setup, opts);
    const m: LlamaForCausalLM = model;
    // the initial weights first: the precomputed reference is the model as it starts
    const from = await loadInitialWeights(m, cfg.init, log);
    log(`initial weights from ${from}`);
    const lora = cfg.lora ? await attachLora(m, cfg, setup, from) : null;
    const obj = cfg.dpo;
    let refTrain: PairLogps | null = null;
    let refVal: PairLogps | null = null;
    if (obj.reference === 'precomputed') {
      const key = referenceKey(setup.configHash, stream.fingerprint, data.val, from);
      const file = path.join(runDir, REFERENCE_FILE);
      const cached = setup.resumeFrom ? await readReferenceCache(file, key, data.train.length, data.val.length) : null;
      if (cached) {
        ({ train: refTrain, val: refVal } = cached);
        log(`reference log-probs of ${data.train.length + data.val.length} pairs read from ${file}`);
      } else {
        const t0 = Date.now();
        refTrain = referenceLogps(m, data.train, cfg.batchSize);
        refVal = referenceLogps(m, data.val, cfg.batchSize);
        log(`reference log-probs of ${data.train.length + data.val.length} pairs precomputed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        if (rank === 0) await writeFileAtomic(file, JSON.stringify({ version: 1, key, train: toJson(refTrain), val: toJson(refVal) }) + '\n');
      }
    }
    await recordStage(cfg, setup, {
      data: { train: data.train.length, val: data.val.length, skipped, truncated: data.truncated, sources: data.sources, renderer: renderer.name },
      ...(lora ? { lora: lora.summary } : {}),
    }, { pairs: true });

    const pick = (ref: PairLogps, idx: readonly number[]): PairLogps => ({ chosen: Float64Array.from(idx, (i) => ref.chosen[i]!), rejected: Float64Array.from(idx, (i) => ref.rejected[i]!) });
    const liveRef = (b: PreferenceBatch): PairLogps => {
      const v = noGrad(() => scope(() => withAdaptersDisabled(m, () => sequenceLogps(m, b).toArray() as Float32Array)));
      return { chosen: Float64Array.from(v.subarray(0, b.pairs)), rejected: Float64Array.from(v.subarray(b.pairs)) };
    };
    let val: DpoBatch[] | null = null;
    const task: TrainTask<DpoBatch> = {
      ...(lora ? lora.taskPart : { ...modelTaskPart(m, cfg, setup), initialize: async () => {} }), // init already loaded above
      nextBatch: () => {
        const b = stream.next();
        return { ...b, targetCount: b.pairs, ref: refTrain ? pick(refTrain, b.examples) : null };
      },
      // training batches' global pairs key the adapters' dropout masks (the same on any rank count)
      loss: (b) => (b.index !== undefined
        ? withDropoutRows(preferenceDropoutRows(stream, { ...b, index: b.index }, setup.rankGradAccum, cfg.data.maxLength ?? cfg.seqLen), () => dpoLoss(sequenceLogps(m, b), b, b.ref ?? liveRef(b), obj))
        : dpoLoss(sequenceLogps(m, b), b, b.ref ?? liveRef(b), obj)),
      ...(data.val.length > 0
        ? {
            evalBatches: (count: number) => {
              val ??= preferenceEvalBatches(data.val, cfg.batchSize).map((b) => ({ ...b, targetCount: b.pairs, ref: refVal ? pick(refVal, b.examples) : null }));
              return val.slice(0, count);
            },
          }
        : {}),
      dataPosition: () => stream.position(),
      restoreDataPosition: (p) => stream.restore(p as PreferenceStreamPosition),
      lossIsTokenNll: false, // a pair loss: exp(valLoss) is no perplexity
    };
    if (data.val.length === 0) log('no validation pairs (data.valFraction is 0 or the split is empty); evaluation is off');
    const result = await runStage(task, cfg, setup, opts, {
      rng: { seed: cfg.seed, dataSeed: cfg.seed, generators: 'none: the pair order is a pure function of the seed and the batch count' },
    });
    const loraSummary = lora ? await finalLoraSummary(lora.summary, result, m, setup) : undefined;
    return {
      ...result, runDir, model: modelCfg,
      data: { train: data.train.length, val: data.val.length, skipped, truncated: data.truncated, renderer: renderer.name },
      ...(loraSummary ? { lora: loraSummary } : {}),
    };
  } finally {
    model?.dispose();
  }
}

/**
 * LoRA over the loaded base: adapters on the target Linears (A seeded, B zeros, so the model is
 * still the base), the base frozen; checkpoints hold the adapter in PEFT's format.
 */
async function attachLora(model: LlamaForCausalLM, cfg: DpoConfig, setup: StageSetup, from: string): Promise<{ summary: LoraSummary; taskPart: ModelTaskPart }> {
  const l = cfg.lora!;
  const params = attachAdapters(model, l, setup.file);
  const summary = loraCounts(model, params);
  setup.log(`LoRA: r ${l.r}, alpha ${l.alpha} on ${summary.layers} layers; ${summary.trainable} trainable parameters of ${summary.total}; the frozen base is the reference (${cfg.dpo.reference})`);
  const adapterConfig = await peftAdapterConfig(model, path.resolve(from));
  return { summary, taskPart: adapterTaskPart(model, params, adapterConfig, { what: 'the LoRA adapter of the checkpoint', whose: "this run's adapter" }) };
}
