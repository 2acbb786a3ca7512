// The PPO stage (RLHF after SFT, the paper's last training stage), in numbered stages per rollout:
//
//   1. prompts: rollout r takes rolloutBatch prompts (a seeded permutation per pass), rendered
//      with the chat template up to the assistant's turn.
//   2. generate: the package's Engine (paged KV cache, continuous batching) samples one response
//      per prompt from the CURRENT policy: the engine runs the policy module itself, whose weights
//      the optimizer updates in place (the fused decode path reads the same storages; LoRA layers
//      take the generic path, adapters included). Prefix caching is off: a cached block holds
//      keys and values of older weights. Each response has its own seed, f(seed, r, i).
//   3. score: the reward function (prompt text, completion text) or a frozen reward model on
//      (prompt ++ response) read at its last token, the true EOS; missing_eos_penalty where the
//      response ran out of tokens without one.
//   4. log-probs and values of the rollout policy come from the generation itself, as TRL takes
//      its old log-probs from generate's scores: per sampled token, the log-prob of its raw logits
//      at the sampling temperature (logits / (temperature + 1e-7)) and the value head on the
//      final-normed hidden row those logits came from (the engine hands both over), so no policy
//      forward scores the rollout. Only the reference scores it: the frozen init model through its
//      own engine (Engine.score), the prompts' KV blocks pinned in its cache once for the run
//      (ppo.referenceKvCacheMiB), so a rollout computes only each response and its prompt's last
//      partial block; or under LoRA the same base with its adapters detached (one base in memory)
//      in a packed forward (no padding).
//      The engine's paged forward rounds differently from the training forward, as HF generate's
//      from TRL's: the first minibatch's ratio is near 1, not exactly 1.
//   5. per-token KL penalty, score on the EOS, GAE, whitened advantages (src/train/ppo/math.ts).
//   6. epochs x minibatches of the clipped policy + value loss (src/train/ppo/loss.ts), each
//      minibatch one optimizer step of the shared training loop (gradAccum micro-batches).
//
// Data parallel (N ranks: patentgpt launch, mpirun, srun): each rank samples, scores and references
// its contiguous share of a rollout's prompts (src/train/ppo/exchange.ts), each response with its
// own seed f(seed, r, global index), and the scored rows are exchanged, so every rank holds the
// 1-rank rollout and runs stage 5 over all of it (global KL, GAE and whitening statistics, exactly
// as one rank). Stage 6: the step's gradAccum x N micro-batches (gradAccum / N each under
// --global-batch) are the 1-rank minibatch order dealt round-robin (rank r takes micro-batches
// r, r + N, ...), the gradients averaged by the engine, the metrics summed over the ranks by the
// training loop. A checkpoint counts the micro-batches of the rollout consumed by all ranks, so it resumes
// on another number of ranks. The union equals the 1-rank rollout bit for bit, however many engine
// steps a rollout takes, with ppo.batchInvariant: the engine cuts no prompt at a step's leftover
// budget, and the rollout and reference engines are batchInvariant (every step padded past the
// GEMV row limit), so a response's log-probs and values do not depend on which prompts share its
// steps (without it, by default, for speed, they agree to rounding: ~1e-7 in the losses). LoRA dropout masks are keyed
// by each row's global place (rollout, row, step; stages/dropout-keys.ts), so they are the 1-rank run's too.
//
// The value head is a (1, C) score head on the policy's final hidden states (the head of
// LlamaForSequenceClassification, sharing the trunk: no second decoder in memory). A checkpoint
// holds the policy (or its adapter), the value head (value_head.safetensors), and in state.json
// the rollout buffer being trained on, the KL coefficient and the rollout count: sampling seeds,
// prompt order and minibatch order are functions of those, so a resume is bit-exact.
import * as path from 'node:path';
import { PatentGPTError } from '../../errors.js';
import { readSftRecords, where } from '../../data/sft/index.js';
import type { ChatRenderer } from '../../data/sft/render.js';
import { Engine, type SampledToken } from '../../infer/engine.js';
import {
  ADAPTER_WEIGHTS_FILE, LlamaForCausalLM, PEFT_PREFIX, loadWeights, safetensorsContent, type ModelConfig,
} from '../../models/index.js';
import { loadRewardModel, packSequences, type ScoreHeadModel } from '../../models/reward.js';
import { Linear } from '../../nn/index.js';
import { withDropoutRows, type DropoutRows } from '../../nn/dropout-rows.js';
import { loraLayers, withAdaptersDisabled } from '../../nn/lora.js';
import { Tensor, linear, logprobs, noGrad, scale, scope } from '../../tensor/index.js';
import { configHash } from '../config.js';
import type { PpoConfig } from '../ppo/config.js';
import { meanEntropy, ppoLoss } from '../ppo/loss.js';
import { AdaptiveKLController, FixedKLController, advantagesAndReturns, penalizeMissingEos, truncateAtEos, type KlController } from '../ppo/math.js';
import { ReferenceScorer } from '../ppo/reference.js';
import { exchangeRollout, rolloutShare, type SampledRow } from '../ppo/exchange.js';
import { loadRewardFunction, scoreAll, type RewardFunction } from '../ppo/rewards.js';
import {
  microBatchRows, microBatchesPerRollout, packRollout, responseSeed, rolloutCacheFit, rolloutFromJson, rolloutPrompts, rolloutToJson,
  type PackedRollout, type Rollout, type RolloutRow,
} from '../ppo/rollout.js';
import type { TaskLoss, TrainBatchInfo, TrainResult, TrainTask } from '../trainer.js';
import { cfgError, createStageModel, loadInitialWeights, modelTaskPart, prepareStage, recordStage, runStage, type StageRunOptions } from './common.js';
import { ppoDropoutRows } from './dropout-keys.js';
import { attachAdapters, loraCounts, peftAdapterConfig, peftCheckpointFiles, readTensorsInto, writeLoraFinal } from './lora-part.js';
import { sftRenderer } from './sft.js';

export type PpoOptions = StageRunOptions & {
  /** A reward function that replaces the config's (tests, programs that score in-process). */
  rewardFunction?: RewardFunction;
};

export interface PpoResult extends TrainResult {
  runDir: string;
  model: ModelConfig;
  prompts: { used: number; skipped: number };
  rollouts: number;
  lora?: { layers: number; trainable: number; total: number; final?: { model: string; adapter: string } };
}

/** A PPO micro-batch: rows of the current rollout. */
interface PpoBatch extends TrainBatchInfo {
  rows: RolloutRow[];
  packed: PackedRollout;
  stats: Rollout['stats'];
  /** Its rows' global places, keying the LoRA dropout masks. */
  dropoutRows: DropoutRows;
}

/** The policy at the response rows of a packed rollout: logits at the sampling temperature (n, V), log-probs of the response tokens (n), values (n). */
interface PolicyOutputs {
  logits: Tensor;
  logprobs: Tensor;
  values: Tensor | null;
}

/** A prompt as the policy sees it: its text (for reward functions) and its rendered ids. */
interface Prompt {
  text: string;
  ids: Int32Array;
}

/** The text of a prompt record: the configured field, Alpaca's instruction (+ "\n" + input), or the messages before the first assistant turn. */
function promptMessages(rec: unknown, field: string): { role: 'system' | 'user'; content: string }[] | null {
  if (typeof rec !== 'object' || rec === null) return typeof rec === 'string' && rec.trim() ? [{ role: 'user', content: rec }] : null;
  const r = rec as Record<string, unknown>;
  if (typeof r[field] === 'string' && (r[field] as string).trim()) return [{ role: 'user', content: r[field] as string }];
  if (typeof r.instruction === 'string') {
    const input = typeof r.input === 'string' && r.input.trim() ? `\n${r.input}` : '';
    return [{ role: 'user', content: r.instruction + input }];
  }
  if (Array.isArray(r.messages)) {
    const out: { role: 'system' | 'user'; content: string }[] = [];
    for (const m of r.messages as { role?: unknown; content?: unknown }[]) {
      if (m?.role === 'assistant') break;
      if ((m?.role === 'system' || m?.role === 'user') && typeof m.content === 'string') out.push({ role: m.role, content: m.content });
    }
    return out.some((m) => m.role === 'user') ? out : null;
  }
  return null;
}

/** Reads and renders the prompts: ids up to where the assistant's answer starts. */
async function loadPrompts(cfg: PpoConfig, renderer: ChatRenderer, maxLen: number): Promise<{ prompts: Prompt[]; skipped: number; why: Map<string, number> }> {
  const prompts: Prompt[] = [];
  const why = new Map<string, number>();
  const skip = (reason: string): void => void why.set(reason, (why.get(reason) ?? 0) + 1);
  for await (const item of readSftRecords(cfg.prompts.path)) {
    if (cfg.prompts.limit > 0 && prompts.length >= cfg.prompts.limit) break;
    if (!item.ok) {
      skip('unreadable');
      continue;
    }
    const messages = promptMessages(item.record, cfg.prompts.field);
    if (!messages) {
      skip('no-prompt');
      continue;
    }
    let ids: Int32Array;
    try {
      // rendered with a placeholder answer: the prompt is everything before the assistant's first token
      const r = renderer.render([...messages, { role: 'assistant', content: 'x' }]);
      const start = r.assistantMask.indexOf(1);
      if (start <= 0) throw new Error(`the template marks no assistant tokens (${where(item.source)})`);
      ids = r.ids.slice(0, start);
    } catch {
      skip('render-error');
      continue;
    }
    if (ids.length > maxLen) {
      skip('too-long');
      continue;
    }
    prompts.push({ text: messages.map((m) => m.content).join('\n'), ids });
  }
  if (prompts.length === 0)
    throw new PatentGPTError('E_DATA', `${cfg.prompts.path}: no usable prompt (${[...why].map(([k, v]) => `${k} ${v}`).join(', ') || 'the file is empty'}); records need a "${cfg.prompts.field}" string, Alpaca instruction/input, or messages`);
  return { prompts, skipped: [...why.values()].reduce((a, b) => a + b, 0), why };
}

/** The policy's outputs at the response rows of `packed`, recorded for backward when gradients are on. */
function policyOutputs(model: LlamaForCausalLM, packed: PackedRollout, temperature: number, head: Linear | null): PolicyOutputs {
  // The last layer runs past attention for the response rows alone (no auxiliary loss is read here).
  const ids = Tensor.from(packed.rows, [packed.rows.length], { dtype: 'i32', device: model.device });
  const rows = model.hidden({ tokens: packed.tokens, cuSeqlens: packed.cuSeqlens }, undefined, ids);
  const logits = scale(linear(rows, model.outputWeight), 1 / (temperature + 1e-7));
  const lp = logprobs(logits, Tensor.from(packed.ids, [packed.ids.length], { dtype: 'i32', device: rows.device }));
  return { logits, logprobs: lp, values: head ? linear(rows, head.weight).reshape([packed.rows.length]) : null };
}

/** Log-probs of the response tokens at the sampling temperature; no gradient (the reference's pass). */
function scoreTokens(model: LlamaForCausalLM, packed: PackedRollout, temperature: number): Float32Array {
  return noGrad(() => scope(() => Float32Array.from(policyOutputs(model, packed, temperature, null).logprobs.toArray() as Float32Array)));
}

/**
 * What the rollout keeps of each sampled token (GenerateOptions.onToken): its log-prob at the
 * sampling temperature, as policyOutputs computes it from the same logits (log-softmax of
 * logits / (temperature + 1e-7)), and the value head on the hidden row those logits came from.
 */
export function tokenScorer(temperature: number, headWeight: Float32Array): { logprobs: number[]; values: number[]; onToken: (t: SampledToken) => void } {
  const logprobs: number[] = [], values: number[] = [];
  const inv = 1 / (temperature + 1e-7);
  return {
    logprobs, values,
    onToken: ({ token, logits, hidden }) => {
      if (!hidden) throw new PatentGPTError('E_INTERNAL', 'ppo: the rollout engine handed no hidden row (it needs hiddenStates: true)');
      let m = -Infinity;
      for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]! * inv);
      let z = 0;
      for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i]! * inv - m);
      logprobs.push(logits[token]! * inv - m - Math.log(z));
      let v = 0;
      for (let i = 0; i < hidden.length; i++) v += hidden[i]! * headWeight[i]!;
      values.push(v);
    },
  };
}

/** Runs (or resumes) one PPO stage. */
export async function ppo(cfg: PpoConfig, opts: PpoOptions = {}): Promise<PpoResult> {
  const file = opts.configFile ?? 'config';
  if (cfg.kind !== 'ppo') throw new PatentGPTError('E_CONFIG', `${file}: kind: "${String(cfg.kind)}" is not a PPO config (run it with its own stage, not ppo)`);
  const hash = configHash(cfg);
  const setup = await prepareStage(cfg, opts, hash);
  const { log, runDir, modelConfig, rank, worldSize } = setup;
  const P = cfg.ppo;
  // N ranks: the rollout is exchanged and the metrics summed through the data-parallel engine
  const dp = worldSize > 1 ? opts.dataParallel ?? null : null;
  if (worldSize > 1 && !dp)
    throw new PatentGPTError('E_UNSUPPORTED', `ppo: ${worldSize} ranks need the data-parallel engine (patentgpt launch, mpirun or srun), not a plain gradient all-reduce hook`);
  // micro-batches per optimizer step over all ranks; a rollout's minibatches must fill whole steps
  const stepMicro = setup.rankGradAccum * worldSize;
  if ((P.rolloutBatch / cfg.batchSize) % stepMicro !== 0)
    throw cfgError(file, 'ppo.rolloutBatch', `${P.rolloutBatch} is not a multiple of the global minibatch batchSize ${cfg.batchSize} x ${stepMicro} micro-batches (gradAccum ${cfg.gradAccum}` +
      `${setup.globalBatch ? ' split over' : ' on each of'} ${worldSize} ranks); raise it, or launch with --global-batch`);

  // ---- prompts and reward
  const renderer = sftRenderer(cfg, setup.tokenizer, file);
  const { prompts, skipped, why } = await loadPrompts(cfg, renderer, cfg.seqLen - P.maxNewTokens);
  log(`prompts: ${prompts.length} from ${cfg.prompts.path} (chat template ${renderer.name})` + (skipped ? `, ${skipped} skipped (${[...why].map(([k, v]) => `${k} ${v}`).join(', ')})` : ''));
  let rewardFn: RewardFunction | null = opts.rewardFunction ?? null;
  let rewardModel: ScoreHeadModel | null = null;
  if (!rewardFn) {
    if ('model' in cfg.reward) {
      rewardModel = await loadRewardModel(cfg.reward.model);
      if (rewardModel.config.vocabSize !== modelConfig.vocabSize) {
        rewardModel.dispose();
        throw new PatentGPTError('E_CONFIG', `${file}: reward.model: its vocabulary of ${rewardModel.config.vocabSize} differs from the policy's ${modelConfig.vocabSize}; the reward model must read the policy's token ids`);
      }
      for (const p of rewardModel.parameters()) p.requiresGrad = false;
    } else rewardFn = await loadRewardFunction(cfg.reward, file);
  }

  let policy: LlamaForCausalLM | null = null;
  let reference: LlamaForCausalLM | null = null;
  let head: Linear | null = null;
  let engine: Engine | null = null;
  let refScorer: ReferenceScorer | null = null;
  try {
    // ---- policy, reference, value head
    policy = createStageModel(cfg, setup, opts);
    const pol: LlamaForCausalLM = policy;
    const from = await loadInitialWeights(pol, cfg.init, log);
    head = new Linear(modelConfig.dim, 1); // zeros: the values start at 0
    const vh: Linear = head;
    let trainable: [string, Tensor][];
    let loraSummary: PpoResult['lora'];
    let adapterConfig = '';
    if (cfg.lora) {
      const l = cfg.lora;
      trainable = attachAdapters(pol, l, file);
      const counts = loraCounts(pol, trainable);
      loraSummary = counts;
      log(`LoRA: r ${l.r}, alpha ${l.alpha} on ${counts.layers} layers; ${counts.trainable} trainable parameters of ${counts.total}; the frozen base from ${from} is also the reference`);
      adapterConfig = await peftAdapterConfig(pol, path.resolve(from));
    } else {
      trainable = pol.namedParameters();
      reference = new LlamaForCausalLM(modelConfig, { init: 'zeros', ...opts.model });
      await loadInitialWeights(reference, cfg.init);
      for (const p of reference.parameters()) p.requiresGrad = false;
      log(`full fine-tuning from ${from}; a frozen copy of it is the reference`);
    }
    const params: [string, Tensor][] = [...trainable, ['value_head.score.weight', vh.weight]];
    // the frozen copy through its own engine, the prompts' blocks pinned once (src/train/ppo/reference.ts);
    // under LoRA the live policy with its adapters detached: one packed forward (no engine runs a
    // module whose adapters are bypassed only for the call)
    if (reference) {
      const refMiB = P.referenceKvCacheMiB ?? 64;
      refScorer = await ReferenceScorer.create(reference, prompts.map((p) => p.ids), {
        temperature: P.temperature, kvCacheBytes: refMiB * 2 ** 20, rolloutBatch: P.rolloutBatch, maxNewTokens: P.maxNewTokens, seqLen: cfg.seqLen,
        maxNumBatchedTokens: Math.max(512, cfg.seqLen), batchInvariant: P.batchInvariant === true,
      });
      log(`reference: ${refScorer.pinnedPrompts} of ${prompts.length} prompts' KV blocks pinned (${refScorer.pinnedTokens} tokens) in its ${refMiB} MiB cache (ppo.referenceKvCacheMiB)`);
    }
    const refs: ReferenceScorer | null = refScorer;
    const refLogprobs = async (seqs: { prompt: Int32Array; response: Int32Array }[]): Promise<Float32Array> => refs
      ? refs.logprobs(seqs)
      : withAdaptersDisabled(pol, () => scoreTokens(pol, packRollout(seqs), P.temperature));

    engine = new Engine(pol, {
      kvCacheBytes: P.kvCacheMiB * 2 ** 20, maxNumSeqs: P.rolloutBatch, enablePrefixCaching: false, eosTokenId: setup.tokenizer.eosId,
      maxNumBatchedTokens: Math.max(512, cfg.seqLen), hiddenStates: true, // the value head reads the hidden rows of the sampled tokens
      batchInvariant: P.batchInvariant === true, // a response's bits then do not depend on the prompts sharing its steps: 1 and N ranks sample the same rollout
    });
    const fit = rolloutCacheFit(modelConfig, prompts.map((p) => p.ids.length), P.rolloutBatch, P.maxNewTokens, P.kvCacheMiB);
    if (fit.short) log(`ppo.kvCacheMiB ${P.kvCacheMiB} holds ${fit.holds} tokens, a rollout of ${P.rolloutBatch} reaches ${fit.needs}: responses will wait their turn or be recomputed (about ${fit.suggestMiB} MiB samples them all at once)`);
    const eng: Engine = engine;
    const kl: KlController = P.adaptiveKl ? new AdaptiveKLController(P.klCoef, P.adaptiveKl.target, P.adaptiveKl.horizon) : new FixedKLController(P.klCoef);
    const perRollout = microBatchesPerRollout(P.rolloutBatch, cfg.batchSize, P.epochs);

    // ---- one rollout: stages 1-5 (2-4 on this rank's share of the prompts, 5 on all of them)
    const makeRollout = async (r: number): Promise<Rollout> => {
      const picked = rolloutPrompts(r, P.rolloutBatch, prompts.length, cfg.seed).map((i) => prompts[i]!);
      const { lo, hi } = rolloutShare(picked.length, rank, worldSize);
      const share = picked.slice(lo, hi);
      const headWeight = Float32Array.from(vh.weight.toArray() as Float32Array);
      const scored = share.map(() => tokenScorer(P.temperature, headWeight));
      const t0 = performance.now();
      const outs = await Promise.all(share.map((p, j) => eng.complete(p.ids, {
        maxTokens: P.maxNewTokens, temperature: P.temperature, topK: P.topK, topP: P.topP, seed: responseSeed(cfg.seed, r, lo + j), onToken: scored[j]!.onToken,
        ignoreEos: P.stopAtEos === false,
      })));
      const secs = (performance.now() - t0) / 1000;
      const gen = outs.map((o) => Int32Array.from(o.tokens));
      const { lengths: shareLengths, hasEos: shareEos } = truncateAtEos(gen, P.stopAtEos === false ? null : setup.tokenizer.eosId);
      const shareResponses = gen.map((g, b) => g.subarray(0, shareLengths[b]!));
      let raw: Float64Array;
      if (rewardFn) {
        const eos = setup.tokenizer.eosId;
        const texts = shareResponses.map((resp) => setup.tokenizer.decode(Array.from(resp).filter((t) => t !== eos)));
        raw = await scoreAll(rewardFn, share.map((p) => p.text), texts);
      } else {
        const rm = rewardModel!;
        raw = share.length === 0 ? new Float64Array(0)
          : noGrad(() => scope(() => Float64Array.from(rm.scores(packSequences(share.map((p, b) => Int32Array.from([...p.ids, ...shareResponses[b]!])))).toArray() as Float32Array)));
      }
      const shareRef = share.length === 0 ? new Float32Array(0) : await refLogprobs(share.map((p, b) => ({ prompt: p.ids, response: shareResponses[b]! })));
      let at0 = 0;
      const mine: SampledRow[] = share.map((_, b) => ({
        response: shareResponses[b]!, hasEos: shareEos[b]!, score: raw[b]!, generated: outs[b]!.tokens.length,
        logprobs: scored[b]!.logprobs.slice(0, shareLengths[b]!), values: scored[b]!.values.slice(0, shareLengths[b]!), refLogprobs: shareRef.subarray(at0, (at0 += shareLengths[b]!)),
      }));
      // every rank: the whole rollout, in global order (one rank: its own rows)
      const all = exchangeRollout(dp, mine, secs, rank, worldSize);
      const lengths = Int32Array.from(all.rows, (w) => w.response.length);
      const hasEos = Uint8Array.from(all.rows, (w) => w.hasEos);
      const responses = all.rows.map((w) => w.response);
      const scores = penalizeMissingEos(Float64Array.from(all.rows, (w) => w.score), hasEos, P.missingEosPenalty);
      const ref = Float32Array.from(all.rows.flatMap((w) => Array.from(w.refLogprobs)));
      // the rollout policy's log-probs and values, taken at generation (stage 4), in the order of the rows
      const cur = {
        logprobs: Float32Array.from(all.rows.flatMap((w) => Array.from(w.logprobs))),
        values: Float32Array.from(all.rows.flatMap((w) => Array.from(w.values))),
      };
      // to (B, T) row-major for the math
      const B = picked.length, T = P.maxNewTokens;
      const grid = (flat: Float32Array): Float64Array => {
        const g = new Float64Array(B * T);
        let k = 0;
        for (let b = 0; b < B; b++) for (let t = 0; t < lengths[b]!; t++) g[b * T + t] = flat[k++]!;
        return g;
      };
      const coef = kl.value;
      const m = advantagesAndReturns(
        { shape: { rows: B, width: T, lengths }, logprobs: grid(cur.logprobs), refLogprobs: grid(ref), values: grid(cur.values), scores },
        { klCoef: coef, klEstimator: P.klEstimator, gamma: P.gamma, lam: P.lam, whitenRewards: P.whitenRewards },
      );
      kl.update(m.meanKl, B);
      const row = (a: Float64Array, b: number): Float32Array => Float32Array.from(a.subarray(b * T, b * T + lengths[b]!));
      let at = 0;
      const rows: RolloutRow[] = picked.map((p, b) => ({
        prompt: p.ids, response: Int32Array.from(responses[b]!), oldLogprobs: cur.logprobs.slice(at, (at += lengths[b]!)), oldValues: row(m.values, b),
        advantages: row(m.advantages, b), returns: row(m.returns, b),
      }));
      let sum = 0, sq = 0, len = 0, eos = 0;
      for (let b = 0; b < B; b++) {
        sum += scores[b]!;
        sq += scores[b]! ** 2;
        len += lengths[b]!;
        eos += hasEos[b]!;
      }
      const mean = sum / B;
      const genTokens = all.rows.reduce((a, w) => a + w.generated, 0);
      return {
        index: r, rows,
        stats: {
          reward: mean, rewardStd: Math.sqrt(Math.max(0, sq / B - mean * mean)), kl: m.meanKl, klCoef: coef, rlhfReward: mean - coef * m.meanKl,
          responseLength: len / B, eosRate: eos / B, rolloutTokensPerSec: genTokens / Math.max(all.secs, 1e-9),
        },
      };
    };

    // ---- the rollout buffer and its position (what a checkpoint holds)
    let current: Rollout | null = null;
    let consumed = 0; // micro-batches of `current` this rank took (N ranks: micro-batch k of the rollout is rank k mod N's)
    let nextRollout = 0;
    const perRank = perRollout / worldSize;
    const nextBatch = async (): Promise<PpoBatch> => {
      if (!current || consumed >= perRank) {
        current = await makeRollout(nextRollout++);
        consumed = 0;
      }
      const c: Rollout = current;
      const k = consumed++ * worldSize + rank;
      const picked = microBatchRows(c.index, k, { rows: c.rows.length, batchSize: cfg.batchSize, epochs: P.epochs, seed: cfg.seed });
      const rows = picked.map((i) => c.rows[i]!);
      const packed = packRollout(rows);
      const dropoutRows = ppoDropoutRows(
        { rollout: c.index, micro: k, perRollout, stepMicro, rolloutBatch: P.rolloutBatch, seqLen: cfg.seqLen },
        picked.map((i) => ({ index: i, length: c.rows[i]!.prompt.length + c.rows[i]!.response.length })),
      );
      return { rows, packed, stats: c.stats, tokens: packed.tokens, targetCount: packed.ids.length, dropoutRows };
    };

    // ---- stage 6: the minibatch loss. N ranks: the loop sums the metrics' sums and counts over the
    // ranks, so metrics.jsonl has the means over all of the step's micro-batches, as one rank would
    // (the rows' global places key the LoRA dropout masks: the same on any rank count)
    const loss = (batch: PpoBatch): TaskLoss => withDropoutRows(batch.dropoutRows, () => minibatchLoss(batch));
    const minibatchLoss = (batch: PpoBatch): TaskLoss => {
      const packed = batch.packed;
      const { logits, logprobs: lp, values } = policyOutputs(pol, packed, P.temperature, vh);
      const cat = (k: 'oldLogprobs' | 'oldValues' | 'advantages' | 'returns'): Float32Array => {
        const out = new Float32Array(packed.rows.length);
        let o = 0;
        for (const w of batch.rows) {
          out.set(w[k], o);
          o += w[k].length;
        }
        return out;
      };
      const out = ppoLoss(
        { logprobs: lp, oldLogprobs: cat('oldLogprobs'), advantages: cat('advantages'), values: values!, oldValues: cat('oldValues'), returns: cat('returns') },
        { cliprange: P.cliprange, cliprangeValue: P.cliprangeValue, vfCoef: P.vfCoef },
      );
      const s = batch.stats;
      const entropy = meanEntropy(logits);
      const rollout = {
        reward: s.reward, rewardStd: s.rewardStd, kl: s.kl, klCoef: s.klCoef, rlhfReward: s.rlhfReward, responseLength: s.responseLength, eosRate: s.eosRate,
        rolloutTokensPerSec: s.rolloutTokensPerSec,
      };
      const minibatch = {
        entropy, policyLoss: out.pgLoss, valueLoss: out.vfLoss, clipFraction: out.clipFraction, valueClipFraction: out.valueClipFraction, approxKl: out.approxKl, ratio: out.ratioMean,
      };
      return { loss: out.loss, metrics: { ...rollout, ...minibatch } };
    };

    const valueFile = 'value_head.safetensors';
    const base = modelTaskPart(pol, cfg, setup);
    const readInto = (file: string, pairs: [string, Tensor][]): Promise<void> => readTensorsInto(file, pairs);
    const task: TrainTask<PpoBatch> = {
      parameters: () => params,
      checkpointFiles: () => [
        ...(cfg.lora ? peftCheckpointFiles(trainable, adapterConfig) : base.checkpointFiles()),
        { name: valueFile, content: (sink: { write(c: Uint8Array): Promise<void> }) => safetensorsContent([['score.weight', vh.weight] as const]).write(sink) },
      ],
      restoreCheckpoint: async (ck) => {
        if (cfg.lora) await readInto(path.join(ck.dir, ADAPTER_WEIGHTS_FILE), trainable.map(([n, t]) => [PEFT_PREFIX + n, t]));
        else await loadWeights(pol, ck.dir);
        await readInto(path.join(ck.dir, valueFile), [['score.weight', vh.weight]]);
      },
      initialize: async () => {}, // init weights are loaded above (the reference and LoRA need them first)
      nextBatch,
      loss,
      // LoRA dropout masks are a function of each adapter's draw count: kept, so a resume draws the same masks
      // the micro-batches of the rollout consumed by all ranks: restated for another number of ranks on resume
      dataPosition: () => ({
        nextRollout, consumed: consumed * worldSize, klCoef: kl.value, current: current && consumed < perRank ? rolloutToJson(current) : null,
        ...(cfg.lora ? { loraDropout: loraLayers(pol).map(([, l]) => l.adapter.dropoutOffset) } : {}),
      }),
      restoreDataPosition: (p) => {
        const d = p as { nextRollout: number; consumed: number; klCoef: number; current: unknown; loraDropout?: number[] };
        if (d.loraDropout) loraLayers(pol).forEach(([, l], i) => (l.adapter.dropoutOffset = d.loraDropout![i] ?? 0));
        if (!Number.isSafeInteger(d.consumed / worldSize))
          throw new PatentGPTError('E_CHECKPOINT', `ppo: the checkpoint stopped after ${d.consumed} micro-batches of rollout ${d.nextRollout - 1}, not a whole number per rank on ${worldSize} ranks; resume on a number of ranks that divides it`);
        nextRollout = d.nextRollout;
        consumed = d.consumed / worldSize;
        (kl as { value: number }).value = d.klCoef;
        current = d.current ? rolloutFromJson(d.current) : null;
      },
    };
    const { peak, fpt } = await recordStage(cfg, setup, {
      data: { prompts: prompts.length, skipped, renderer: renderer.name, reward: rewardModel ? { model: (cfg.reward as { model: string }).model } : cfg.reward },
      ppo: { microBatchesPerRollout: perRollout, stepsPerRollout: perRollout / stepMicro },
      ...(loraSummary ? { lora: loraSummary } : {}),
    });
    const result = await runStage(task, cfg, setup, opts, {
      rng: {
        seed: cfg.seed,
        sampling: 'response i of rollout r is sampled with seed f(seed, r, i); prompt and minibatch orders are permutations of (seed, r, epoch); the rollout count is data.nextRollout',
      },
      flopsPerToken: fpt,
      peakFlops: peak.peakFlops,
    });
    if (loraSummary && result.status === 'completed' && rank === 0) {
      // as sft and dpo: final/ is the base model folder and final/adapter/ the trained adapter (PEFT's
      // format), written by rank 0 alone (two ranks writing final.tmp at once race on its rename)
      loraSummary.final = await writeLoraFinal(pol, setup);
      log(`final: ${loraSummary.final.model} (base), adapter ${loraSummary.final.adapter}`);
    }
    return { ...result, runDir, model: modelConfig, prompts: { used: prompts.length, skipped }, rollouts: nextRollout, ...(loraSummary ? { lora: loraSummary } : {}) };
  } finally {
    engine?.close();
    head?.dispose();
    refScorer?.close();
    reference?.dispose();
    policy?.dispose();
    rewardModel?.dispose();
  }
}
