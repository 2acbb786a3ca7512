// A decoder with a scalar head: transformers' LlamaForSequenceClassification (and
// MixtralForSequenceClassification) with num_labels 1, the reward model of RLHF and the value
// model of PPO.
//
//   model.*        the decoder, as in LlamaForCausalLM (same names, same forward)
//   score.weight   (1, C), no bias: the head applied to the final hidden state (after the norm)
//
// scores(batch): one scalar per sequence, read at the LAST TOKEN OF EACH SEQUENCE. Sequences
// come packed (tokens + cuSeqlens, as training batches are): the boundaries say where each
// sequence ends, so a score never lands on padding, whatever the pad id. transformers instead
// reads the score at the rightmost token that is not config.pad_token_id (lastNonPadIndex): the
// same place for right-padded rows whose last real token is not the pad id, and one token early
// when a sequence ends with an EOS that doubles as the pad id (TRL's default for LLaMA tokenizers,
// a known cause of rewards read at the wrong token). unpadRows turns padded rows into sequences
// by either rule. values(batch) applies the head at every token: PPO's per-token value estimates
// (TRL reads its value model the same way).
//
// Folders: saveRewardModel writes what AutoModelForSequenceClassification loads (config.json
// with architectures [LlamaForSequenceClassification], id2label of one label, pad_token_id;
// model.safetensors with model.* and score.weight); loadRewardModel reads it back, and
// rewardModelFromCausalLM starts a reward model from a causal LM folder (SFT or pretrain
// output): the decoder's weights loaded, lm_head dropped, score.weight drawn from
// normal(0, initializer_range) as transformers' _init_weights draws a new head.
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { Linear, Module, type ForwardContext, type ParamInit } from '../nn/index.js';
import { Tensor, add, gatherRows, logsigmoid, mean, mul, neg, noGrad, scale, scope, sub, type Device } from '../tensor/index.js';
import { fromHFConfig, hfConfigJson, toHFConfig, validateConfig, type HFLlamaConfig, type ModelConfig, type SpecialTokenIds } from './config.js';
import { LlamaForCausalLM, type LlamaModel, type LlamaOptions, type PackedBatch } from './llama.js';
import { CONFIG_FILE, folderFiles, loadWeights, specialIdsOf, type FolderTokenizer } from './pretrained.js';
import { exists, syncDir, tempPath, writeFileAtomic, writeSafetensors, type WriteDType } from './safetensors.js';

/** The architectures a reward folder's config.json names, by decoder family. */
export const SEQUENCE_CLASSIFICATION_ARCHITECTURES = { llama: 'LlamaForSequenceClassification', mixtral: 'MixtralForSequenceClassification' } as const;

/** transformers' initializer_range default: the std of a new score head. */
export const SCORE_INIT_STD = 0.02;

/** Sequences to score, packed: tokens (N) and boundaries cuSeqlens (B + 1), each sequence non-empty. */
export type ScoreBatch = Pick<PackedBatch, 'tokens' | 'cuSeqlens' | 'positions'>;

export interface ScoreHeadOptions extends Pick<LlamaOptions, 'seed' | 'initStd' | 'init' | 'feedForward' | 'feedForwardName'> {
  /** Std of the score head's normal init (default 0.02, transformers' initializer_range). */
  scoreInitStd?: number;
  /**
   * The id config.json records as pad_token_id (transformers finds the scored token with it);
   * default null. Our own scoring never reads it: sequences carry their lengths.
   */
  padTokenId?: number | null;
}

/**
 * LlamaForSequenceClassification with one label: the decoder, its final norm, and a (1, C) head.
 * Parameter names are transformers' (model.*, score.weight).
 */
export class ScoreHeadModel extends Module {
  #config: ModelConfig;
  /** The decoder's forward (hidden states after the final norm): LlamaForCausalLM's, built tied so it has no output layer. */
  readonly #decoder: LlamaForCausalLM;
  readonly model: LlamaModel;
  readonly score: Linear;
  /** What config.json records as pad_token_id (null: none). */
  padTokenId: number | null;

  constructor(config: ModelConfig, opts: ScoreHeadOptions = {}) {
    super();
    this.#config = validateConfig(config);
    // Same draw order as LlamaForCausalLM(seed) up to its output layer: the same seed gives the same decoder.
    this.#decoder = new LlamaForCausalLM({ ...this.#config, tieEmbeddings: true }, {
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}), ...(opts.initStd !== undefined ? { initStd: opts.initStd } : {}),
      ...(opts.init ? { init: opts.init } : {}), ...(opts.feedForward ? { feedForward: opts.feedForward } : {}),
      ...(opts.feedForwardName ? { feedForwardName: opts.feedForwardName } : {}),
    });
    this.model = this.registerModule('model', this.#decoder.model);
    const std = opts.scoreInitStd ?? SCORE_INIT_STD;
    const seed = scoreHeadSeed(opts.seed ?? 0); // its own stream: the decoder's draws stay LlamaForCausalLM's
    const init: ParamInit = opts.init === 'zeros' ? (shape) => Tensor.zeros(shape) : (shape) => Tensor.randn(shape, { seed, std });
    this.score = this.registerModule('score', new Linear(this.#config.dim, 1, init));
    this.padTokenId = opts.padTokenId ?? null;
  }

  get config(): ModelConfig {
    return this.#config;
  }

  get device(): Device {
    return this.model.embed_tokens.weight.device;
  }

  /** Final hidden states after the norm, (N, C) (or `rows` alone, see LlamaForCausalLM.hidden); what the feed-forward reports goes to ctx. */
  hidden(batch: ScoreBatch, ctx?: ForwardContext, rows?: Tensor): Tensor {
    return this.#decoder.hidden(batch, ctx, rows);
  }

  /** The head at every token: (N) values (PPO's per-token value estimates). */
  values(batch: ScoreBatch, ctx?: ForwardContext): Tensor {
    return scope(() => {
      const v = this.score.forward(this.hidden(batch, ctx)); // (N, 1)
      return v.reshape([v.shape[0]!]);
    });
  }

  /** One score per sequence, (B), read at each sequence's last token. Recorded for autograd. */
  scores(batch: ScoreBatch, ctx?: ForwardContext): Tensor {
    const N = batch.tokens instanceof Tensor ? batch.tokens.size : batch.tokens.length;
    const last = lastTokenRows(batch.cuSeqlens, N);
    return scope(() => {
      const ids = Tensor.from(last, [last.length], { dtype: 'i32', device: this.device });
      // A trunk of plain MLPs computes its last layer past attention for the B read rows alone;
      // any other runs it whole, so what it reports (a load-balancing loss) still sees every token.
      const rows = this.#decoder.plainFeedForward ? this.hidden(batch, ctx, ids) : gatherRows(this.hidden(batch, ctx), ids); // (B, C)
      const s = this.score.forward(rows); // (B, 1)
      return s.reshape([last.length]);
    });
  }

  /** config.json's object for this model (see rewardHFConfig). */
  hfConfig(opts: { dtype?: WriteDType; ids?: SpecialTokenIds } = {}): HFLlamaConfig {
    return rewardHFConfig(this.config, { ...opts, padTokenId: this.padTokenId });
  }
}

/** The seed of the score head's draw for a model seed (a stream apart from the decoder's). */
function scoreHeadSeed(seed: number): number {
  return (Math.imul(seed >>> 0, 2654435761) + 0x5c0e) >>> 0;
}

/** The name transformers gives this model (one label). */
export const LlamaForSequenceClassification = ScoreHeadModel;
export type LlamaForSequenceClassification = ScoreHeadModel;

/** Row of each sequence's last token in a packed batch of N tokens; every sequence must be non-empty. */
export function lastTokenRows(cuSeqlens: ScoreBatch['cuSeqlens'], N: number): Int32Array {
  if (cuSeqlens === undefined) return Int32Array.of(N - 1);
  const cu = cuSeqlens instanceof Tensor ? (cuSeqlens.toArray() as Int32Array) : Int32Array.from(cuSeqlens);
  if (cu.length < 2 || cu[0] !== 0 || cu[cu.length - 1] !== N)
    throw new PatentGPTError('E_ARGUMENT', `scores: cuSeqlens must run from 0 to N = ${N} (one entry more than sequences), got [${Array.from(cu.slice(0, 8)).join(', ')}${cu.length > 8 ? ', ...' : ''}]`);
  const out = new Int32Array(cu.length - 1);
  for (let b = 0; b < out.length; b++) {
    if (cu[b + 1]! <= cu[b]!) throw new PatentGPTError('E_ARGUMENT', `scores: sequence ${b} is empty (cuSeqlens[${b}] = ${cu[b]}, cuSeqlens[${b + 1}] = ${cu[b + 1]}); a score needs a token to read`);
    out[b] = cu[b + 1]! - 1;
  }
  return out;
}

/** Sequences packed for scores()/values(): tokens concatenated, cuSeqlens at their boundaries. */
export function packSequences(seqs: readonly ArrayLike<number>[]): { tokens: Int32Array; cuSeqlens: Int32Array } {
  const cuSeqlens = new Int32Array(seqs.length + 1);
  seqs.forEach((s, i) => (cuSeqlens[i + 1] = cuSeqlens[i]! + s.length));
  const tokens = new Int32Array(cuSeqlens[seqs.length]!);
  seqs.forEach((s, i) => tokens.set(s, cuSeqlens[i]!));
  return { tokens, cuSeqlens };
}

/**
 * transformers' scored position in a padded row: the rightmost token that is not padId (0 when
 * every token is padding), as GenericForSequenceClassification computes it.
 */
export function lastNonPadIndex(row: ArrayLike<number>, padId: number): number {
  for (let i = row.length - 1; i >= 0; i--) if (row[i] !== padId) return i;
  return 0;
}

/**
 * Right-padded rows as sequences: cut after the last token the attention mask keeps (`mask`,
 * the true lengths), or, with `padId` alone, after transformers' lastNonPadIndex (its rule,
 * for parity with a model that has only input ids).
 */
export function unpadRows(rows: readonly ArrayLike<number>[], by: { mask: readonly ArrayLike<number>[] } | { padId: number }): Int32Array[] {
  return rows.map((r, i) => {
    let n: number;
    if ('mask' in by) {
      const m = by.mask[i];
      if (!m || m.length !== r.length) throw new PatentGPTError('E_SHAPE', `unpadRows: mask row ${i} has ${m?.length ?? 0} entries, the row ${r.length}`);
      n = 0;
      for (let j = 0; j < m.length; j++) if (m[j]) n = j + 1;
    } else n = lastNonPadIndex(r, by.padId) + 1;
    return Int32Array.from(Array.prototype.slice.call(r, 0, n) as number[]);
  });
}

export interface PairLossOptions {
  /** Per-pair margins (B) subtracted inside the sigmoid (Llama 2's margin loss); absent: none. */
  margin?: Float32Array | readonly number[] | null;
  /** coef * mean((r_c + r_r)^2), TRL's center_rewards_coefficient (Eisenstein et al.); 0 or absent: off. */
  centerCoef?: number;
}

/**
 * Bradley-Terry loss of a batch of pairs: mean over pairs of -log sigmoid(r_c - r_r - margin),
 * plus the optional centering term, as TRL's RewardTrainer.compute_loss. chosen and rejected are
 * (B) scores; the result is a scalar recorded for backward.
 */
export function bradleyTerryLoss(chosen: Tensor, rejected: Tensor, opts: PairLossOptions = {}): Tensor {
  if (chosen.shape.length !== 1 || rejected.shape.length !== 1 || chosen.size !== rejected.size)
    throw new PatentGPTError('E_SHAPE', `bradleyTerryLoss: chosen ${chosen.describe()} and rejected ${rejected.describe()} must be vectors of one score per pair`);
  const B = chosen.size;
  return scope(() => {
    let d = sub(chosen, rejected);
    if (opts.margin) {
      if (opts.margin.length !== B) throw new PatentGPTError('E_SHAPE', `bradleyTerryLoss: ${opts.margin.length} margins for ${B} pairs`);
      d = sub(d, Tensor.from(Float32Array.from(opts.margin), [B], { device: d.device }));
    }
    let loss = neg(mean(logsigmoid(d)));
    if (opts.centerCoef) {
      const s = add(chosen, rejected);
      loss = add(loss, scale(mean(mul(s, s)), opts.centerCoef));
    }
    return loss;
  });
}

/** Accuracy (share of pairs with r_c > r_r, ties count as wrong, as TRL) and mean margin r_c - r_r. */
export function pairStats(chosen: ArrayLike<number>, rejected: ArrayLike<number>): { accuracy: number; margin: number } {
  let right = 0, m = 0;
  for (let i = 0; i < chosen.length; i++) {
    if (chosen[i]! > rejected[i]!) right++;
    m += chosen[i]! - rejected[i]!;
  }
  const n = Math.max(1, chosen.length);
  return { accuracy: right / n, margin: m / n };
}

// ---------------------------------------------------------------------------------------------
// Folders

/**
 * config.json of a reward folder: the causal LM's fields with the sequence-classification
 * architecture, one label (id2label / label2id as save_pretrained writes them) and pad_token_id
 * (`padTokenId`, else the tokenizer's pad, else none).
 */
export function rewardHFConfig(cfg: ModelConfig, opts: { dtype?: WriteDType; ids?: SpecialTokenIds; padTokenId?: number | null } = {}): HFLlamaConfig {
  const hf = toHFConfig(cfg, opts.dtype ?? 'f32', opts.ids);
  const family = hf.model_type === 'mixtral' ? 'mixtral' : 'llama';
  return {
    ...hf,
    architectures: [SEQUENCE_CLASSIFICATION_ARCHITECTURES[family]],
    id2label: { 0: 'LABEL_0' },
    label2id: { LABEL_0: 0 },
    pad_token_id: opts.padTokenId !== undefined && opts.padTokenId !== null ? opts.padTokenId : hf.pad_token_id ?? null,
    initializer_range: SCORE_INIT_STD,
  };
}

export interface SaveRewardOptions {
  dtype?: WriteDType;
  /** Its ids go into the configs and it is recorded beside the weights (tokenizer.model / tokenizer_spec.json). */
  tokenizer?: FolderTokenizer;
}

/** The files of a reward folder other than the weights (config.json, generation config, tokenizer record). */
export function rewardFolderFiles(model: ScoreHeadModel, opts: SaveRewardOptions = {}): { name: string; content: string | Uint8Array }[] {
  const base = folderFiles(model.config, { ...(opts.dtype ? { dtype: opts.dtype } : {}), ...(opts.tokenizer ? { tokenizer: opts.tokenizer } : {}) });
  const ids = opts.tokenizer ? specialIdsOf(opts.tokenizer) : undefined;
  const pad = model.padTokenId ?? ids?.pad ?? null;
  return base.map((f) => (f.name === CONFIG_FILE
    ? { name: f.name, content: hfConfigJson(rewardHFConfig(model.config, { ...(opts.dtype ? { dtype: opts.dtype } : {}), ...(ids ? { ids } : {}), padTokenId: pad })) }
    : f));
}

/**
 * Writes a folder AutoModelForSequenceClassification loads: config.json, generation_config.json,
 * the tokenizer record and model.safetensors (model.*, score.weight). Built beside the target and
 * renamed into place (an existing folder is replaced).
 */
export async function saveRewardModel(model: ScoreHeadModel, dir: string, opts: SaveRewardOptions = {}): Promise<void> {
  const tmp = tempPath(dir);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    for (const f of rewardFolderFiles(model, opts)) await writeFileAtomic(join(tmp, f.name), f.content);
    await writeSafetensors(join(tmp, 'model.safetensors'), model.namedParameters(), { ...(opts.dtype ? { dtype: opts.dtype } : {}) });
    if (await exists(dir)) await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    await syncDir(join(dir, '..'));
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** What a folder's config.json says about a reward model. */
export interface RewardFolderConfig {
  config: ModelConfig;
  /** Whether config.json names a sequence-classification architecture (else: a causal LM folder). */
  sequenceClassification: boolean;
  numLabels: number;
  padTokenId: number | null;
}

/** Reads config.json of a reward folder or a causal LM folder (the architecture mapped to the decoder's). */
export async function readRewardConfig(dir: string): Promise<RewardFolderConfig> {
  const file = join(dir, CONFIG_FILE);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${file}: cannot read the model config (${(err as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new PatentGPTError('E_CONFIG', `${file}: expected a JSON object`);
  const arch = Array.isArray(json.architectures) ? (json.architectures as unknown[]) : [];
  const seqCls = arch.some((a) => typeof a === 'string' && a.endsWith('ForSequenceClassification'));
  if (seqCls) {
    const known = Object.values(SEQUENCE_CLASSIFICATION_ARCHITECTURES) as string[];
    const a = arch.find((x) => typeof x === 'string' && x.endsWith('ForSequenceClassification')) as string;
    if (!known.includes(a)) throw new PatentGPTError('E_CONFIG', `${file}: field "architectures" names ${a}; reward folders are ${known.join(' or ')}`);
  }
  const id2label = json.id2label;
  const numLabels = typeof json.num_labels === 'number' ? json.num_labels
    : id2label && typeof id2label === 'object' ? Object.keys(id2label).length : seqCls ? 2 : 1; // transformers' default is 2 labels
  if (seqCls && numLabels !== 1)
    throw new PatentGPTError('E_CONFIG', `${file}: the classifier has ${numLabels} labels; a reward model has one (id2label with one entry, num_labels 1)`);
  const pad = json.pad_token_id;
  return {
    config: fromHFConfig(json, file), sequenceClassification: seqCls, numLabels,
    padTokenId: typeof pad === 'number' && Number.isSafeInteger(pad) && pad >= 0 ? pad : null,
  };
}

/** loadWeights over a parameter list (it reads only namedParameters and config). */
function loadInto(params: [string, Tensor][], cfg: ModelConfig, dir: string, strict: boolean): Promise<void> {
  return loadWeights({ namedParameters: () => params, config: cfg }, dir, { strict });
}

/** A reward folder (saveRewardModel's, or transformers' LlamaForSequenceClassification with one label) as a ScoreHeadModel. */
export async function loadRewardModel(dir: string, opts: Pick<ScoreHeadOptions, 'feedForward' | 'feedForwardName'> = {}): Promise<ScoreHeadModel> {
  const r = await readRewardConfig(dir);
  if (!r.sequenceClassification)
    throw new PatentGPTError('E_CONFIG', `${join(dir, CONFIG_FILE)}: a causal LM folder, not a reward model (no score head); start one with rewardModelFromCausalLM`);
  const model = new ScoreHeadModel(r.config, { ...opts, init: 'zeros', padTokenId: r.padTokenId });
  try {
    await loadInto(model.namedParameters(), { ...r.config, tieEmbeddings: false }, dir, true);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/**
 * A reward model started from a causal LM folder (SFT or pretraining output): the decoder's
 * weights loaded (lm_head left out), the score head new, normal(0, scoreInitStd) from `seed`.
 */
export async function rewardModelFromCausalLM(dir: string, opts: Omit<ScoreHeadOptions, 'init' | 'initStd'> = {}): Promise<ScoreHeadModel> {
  const r = await readRewardConfig(dir);
  const model = new ScoreHeadModel(r.config, { ...opts, init: 'zeros' });
  try {
    await initScoreHeadModel(model, dir, opts);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/**
 * Loads a folder into an existing model: a reward folder replaces every weight; a causal LM
 * folder replaces the decoder's and draws a new score head (normal(0, scoreInitStd) from seed).
 * Returns which it was.
 */
export async function initScoreHeadModel(model: ScoreHeadModel, dir: string, opts: Pick<ScoreHeadOptions, 'seed' | 'scoreInitStd'> = {}): Promise<'reward' | 'causal-lm'> {
  const r = await readRewardConfig(dir);
  const cfg = { ...r.config, tieEmbeddings: false };
  if (r.sequenceClassification) {
    await loadInto(model.namedParameters(), cfg, dir, true);
    if (r.padTokenId !== null) model.padTokenId = r.padTokenId;
    return 'reward';
  }
  // strict off: the causal LM's lm_head.weight has no place here
  await loadInto(model.namedParameters().filter(([n]) => n.startsWith('model.')), cfg, dir, false);
  const w = Tensor.randn(model.score.weight.shape, { seed: scoreHeadSeed(opts.seed ?? 0), std: opts.scoreInitStd ?? SCORE_INIT_STD });
  noGrad(() => model.score.weight.write(w.toArray() as Float32Array));
  w.dispose();
  return 'causal-lm';
}
