// ModelConfig: the typed description of a LLaMA-2 decoder (dense, or Mixtral-style SMoE), its
// validation at the edge, conversion to and from Hugging Face config.json, the RoPE settings a
// config implies (stage-2 context extension is a config change), and the arithmetic a trainer
// needs: parameter count and FLOPs per token.
import { PatentGPTError } from '../errors.js';

/**
 * How RoPE positions are stretched past the pretraining context.
 * - linear: position interpolation (Chen et al. 2023): positions are divided by `factor`
 *   (Hugging Face rope_type 'linear').
 * - ntk: static "NTK-aware" base raise: the base becomes ropeTheta * factor^(D / (D - 2)) for
 *   head size D, on every sequence. Hugging Face has no static type for it, so config.json
 *   carries the raised base as rope_theta (the same function, no scaling entry).
 * - dynamic-base: Hugging Face rope_type 'dynamic': while a batch's longest position L + 1
 *   stays within maxSeqLen the base is ropeTheta; past it the base is
 *   ropeTheta * (factor * L / maxSeqLen - (factor - 1))^(D / (D - 2)).
 * Raising the base outright (as Code Llama does) needs no scaling entry: set ropeTheta.
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'ntk' | 'dynamic-base'; factor: number }
  | null;

export interface ModelConfig {
  vocabSize: number;
  /** Model width (hidden_size). */
  dim: number;
  nLayers: number;
  nHeads: number;
  /** Key/value heads (grouped-query attention); nHeads divides by it. */
  nKvHeads: number;
  /** Hidden size of the SwiGLU feed-forward (intermediate_size). */
  ffnDim: number;
  /** RoPE base frequency (10000 in LLaMA-2). */
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Context length the model is meant for (max_position_embeddings). */
  maxSeqLen: number;
  /** RMSNorm epsilon (1e-5 in LLaMA-2). */
  normEps: number;
  /** The output layer shares the token-embedding table. */
  tieEmbeddings: boolean;
  /** Feed-forward experts; 1 is the dense model, more a Mixtral-style sparse mixture of experts. */
  numExperts: number;
  /** Experts per token (SMoE); 1 for the dense model. */
  topK: number;
  /**
   * SMoE only (absent on dense configs, so their JSON and hashes stay as they were): experts
   * every token goes through besides its top-k (each a SwiGLU MLP of ffnDim). Default 0.
   */
  numSharedExperts?: number;
  /**
   * SMoE only: weight of the load-balancing loss (Switch/Mixtral form), averaged over layers as
   * transformers' load_balancing_loss_func averages its counts over layers. Default 0.02 (Mixtral's).
   */
  routerAuxLossCoef?: number;
  /** SMoE only: weight of the router z-loss (ST-MoE: mean squared logsumexp of the router logits), averaged over layers. Default 0. */
  routerZLossCoef?: number;
  /** SMoE only: in training, the router's input is scaled by uniform(1 - j, 1 + j) noise (Mixtral's router_jitter_noise). Default 0. */
  routerJitter?: number;
}

/** The SMoE fields' defaults (filled in only when numExperts > 1). */
export const MOE_DEFAULTS = {
  numSharedExperts: 0,
  routerAuxLossCoef: 0.02,
  routerZLossCoef: 0,
  routerJitter: 0,
} as const;

/** Whether cfg is a sparse mixture of experts. */
export function isMoE(cfg: ModelConfig): boolean {
  return cfg.numExperts > 1;
}

/** The fields a caller may leave out, with their defaults. */
export const CONFIG_DEFAULTS = {
  ropeTheta: 10000,
  ropeScaling: null,
  maxSeqLen: 4096,
  normEps: 1e-5,
  tieEmbeddings: false,
  numExperts: 1,
  topK: 1,
} as const satisfies Partial<ModelConfig>;

const FIELDS: readonly (keyof ModelConfig)[] = [
  'vocabSize', 'dim', 'nLayers', 'nHeads', 'nKvHeads', 'ffnDim', 'ropeTheta', 'ropeScaling', 'maxSeqLen', 'normEps',
  'tieEmbeddings', 'numExperts', 'topK', 'numSharedExperts', 'routerAuxLossCoef', 'routerZLossCoef', 'routerJitter',
];

const MOE_FIELDS = ['numSharedExperts', 'routerAuxLossCoef', 'routerZLossCoef', 'routerJitter'] as const;

function fail(source: string, message: string): never {
  throw new PatentGPTError('E_CONFIG', `${source}: ${message}`);
}

function positiveInt(source: string, o: Record<string, unknown>, field: string, fallback?: number): number {
  const v = o[field] ?? fallback;
  if (v === undefined) fail(source, `field "${field}" is missing (a positive integer)`);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    fail(source, `field "${field}" must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function positiveNumber(source: string, o: Record<string, unknown>, field: string, fallback: number): number {
  const v = o[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    fail(source, `field "${field}" must be a positive finite number, got ${JSON.stringify(v)}`);
  return v;
}

function nonNegativeNumber(source: string, o: Record<string, unknown>, field: string, fallback: number, below = Infinity): number {
  const v = o[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v >= below)
    fail(source, `field "${field}" must be a finite number >= 0${below === Infinity ? '' : ` and < ${below}`}, got ${JSON.stringify(v)}`);
  return v;
}

function parseRopeScaling(source: string, v: unknown): RopeScaling {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || Array.isArray(v)) fail(source, `field "ropeScaling" must be null or {type, factor}, got ${JSON.stringify(v)}`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (k !== 'type' && k !== 'factor') fail(source, `field "ropeScaling.${k}" is not a known field (type, factor)`);
  const type = o.type;
  if (type !== 'linear' && type !== 'ntk' && type !== 'dynamic-base')
    fail(source, `field "ropeScaling.type" must be 'linear', 'ntk' or 'dynamic-base', got ${JSON.stringify(type)}`);
  const factor = o.factor;
  if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1)
    fail(source, `field "ropeScaling.factor" must be a finite number >= 1, got ${JSON.stringify(factor)}`);
  return { type, factor };
}

/**
 * Checks a plain object (parsed JSON, a CLI flag set, ...) and returns a complete ModelConfig.
 * Optional fields take CONFIG_DEFAULTS; unknown fields are refused (a typo must not pass
 * silently). Errors name the field and `source` (a file name or "preset llama2-7b").
 */
export function validateConfig(value: unknown, source = 'model config'): ModelConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(source, `expected an object, got ${JSON.stringify(value)}`);
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!(FIELDS as readonly string[]).includes(k)) fail(source, `field "${k}" is not a model config field (${FIELDS.join(', ')})`);
  const nHeads = positiveInt(source, o, 'nHeads');
  const cfg: ModelConfig = {
    vocabSize: positiveInt(source, o, 'vocabSize'),
    dim: positiveInt(source, o, 'dim'),
    nLayers: positiveInt(source, o, 'nLayers'),
    nHeads,
    nKvHeads: positiveInt(source, o, 'nKvHeads', nHeads),
    ffnDim: positiveInt(source, o, 'ffnDim'),
    ropeTheta: positiveNumber(source, o, 'ropeTheta', CONFIG_DEFAULTS.ropeTheta),
    ropeScaling: parseRopeScaling(source, o.ropeScaling),
    maxSeqLen: positiveInt(source, o, 'maxSeqLen', CONFIG_DEFAULTS.maxSeqLen),
    normEps: positiveNumber(source, o, 'normEps', CONFIG_DEFAULTS.normEps),
    tieEmbeddings: (() => {
      const v = o.tieEmbeddings ?? CONFIG_DEFAULTS.tieEmbeddings;
      if (typeof v !== 'boolean') fail(source, `field "tieEmbeddings" must be true or false, got ${JSON.stringify(v)}`);
      return v;
    })(),
    numExperts: positiveInt(source, o, 'numExperts', CONFIG_DEFAULTS.numExperts),
    topK: positiveInt(source, o, 'topK', CONFIG_DEFAULTS.topK),
  };
  if (cfg.dim % cfg.nHeads !== 0) fail(source, `field "dim" (${cfg.dim}) must be a multiple of "nHeads" (${cfg.nHeads})`);
  if (cfg.nHeads % cfg.nKvHeads !== 0)
    fail(source, `field "nKvHeads" (${cfg.nKvHeads}) must divide "nHeads" (${cfg.nHeads}) for grouped-query attention`);
  if ((cfg.dim / cfg.nHeads) % 2 !== 0) fail(source, `head size dim / nHeads = ${cfg.dim / cfg.nHeads} must be even for RoPE`);
  if (cfg.vocabSize > 2 ** 31 - 1) fail(source, `field "vocabSize" (${cfg.vocabSize}) must fit int32 token ids`);
  if (cfg.topK > cfg.numExperts) fail(source, `field "topK" (${cfg.topK}) cannot exceed "numExperts" (${cfg.numExperts})`);
  if (cfg.numExperts === 1) {
    // dense: the SMoE fields mean nothing; a non-default one is a mistake, not something to drop silently
    for (const f of MOE_FIELDS)
      if (o[f] !== undefined && o[f] !== MOE_DEFAULTS[f])
        fail(source, `field "${f}" (${JSON.stringify(o[f])}) applies to a mixture of experts only; set "numExperts" > 1 or leave it out`);
    return cfg;
  }
  const shared = o.numSharedExperts ?? MOE_DEFAULTS.numSharedExperts;
  if (typeof shared !== 'number' || !Number.isSafeInteger(shared) || shared < 0)
    fail(source, `field "numSharedExperts" must be an integer >= 0, got ${JSON.stringify(shared)}`);
  cfg.numSharedExperts = shared;
  cfg.routerAuxLossCoef = nonNegativeNumber(source, o, 'routerAuxLossCoef', MOE_DEFAULTS.routerAuxLossCoef);
  cfg.routerZLossCoef = nonNegativeNumber(source, o, 'routerZLossCoef', MOE_DEFAULTS.routerZLossCoef);
  cfg.routerJitter = nonNegativeNumber(source, o, 'routerJitter', MOE_DEFAULTS.routerJitter, 1);
  return cfg;
}

/** Head size D = dim / nHeads. */
export function headDim(cfg: ModelConfig): number {
  return cfg.dim / cfg.nHeads;
}

// ---------------------------------------------------------------------------------------------
// RoPE

export interface RopeParams {
  /** Base frequency to use. */
  theta: number;
  /** Positions are divided by this. */
  posScale: number;
}

/** The rope() settings for a batch whose largest position is maxPosition (0-based). */
export function ropeParams(cfg: ModelConfig, maxPosition = 0): RopeParams {
  const s = cfg.ropeScaling;
  const D = headDim(cfg);
  if (s === null) return { theta: cfg.ropeTheta, posScale: 1 };
  switch (s.type) {
    case 'linear':
      return { theta: cfg.ropeTheta, posScale: s.factor };
    case 'ntk':
      return { theta: cfg.ropeTheta * s.factor ** (D / (D - 2)), posScale: 1 };
    case 'dynamic-base': {
      const L = maxPosition + 1;
      if (L <= cfg.maxSeqLen) return { theta: cfg.ropeTheta, posScale: 1 };
      return { theta: cfg.ropeTheta * (s.factor * L / cfg.maxSeqLen - (s.factor - 1)) ** (D / (D - 2)), posScale: 1 };
    }
  }
}

export type ContextExtension =
  | { method: 'base'; maxSeqLen: number; ropeTheta: number }
  | { method: 'linear' | 'ntk' | 'dynamic-base'; maxSeqLen: number };

/**
 * Stage-2 context extension as a config change: 'base' raises ropeTheta to the given value;
 * 'linear', 'ntk' and 'dynamic-base' set ropeScaling with factor maxSeqLen / cfg.maxSeqLen
 * ('dynamic-base' keeps maxSeqLen, as its formula reads it). Weights are untouched.
 */
export function extendContext(cfg: ModelConfig, ext: ContextExtension): ModelConfig {
  const source = 'extendContext';
  if (!Number.isSafeInteger(ext.maxSeqLen) || ext.maxSeqLen < cfg.maxSeqLen)
    fail(source, `field "maxSeqLen" (${ext.maxSeqLen}) must be an integer >= the current ${cfg.maxSeqLen}`);
  if (cfg.ropeScaling !== null) fail(source, `the config already has ropeScaling ${JSON.stringify(cfg.ropeScaling)}; extend from an unscaled config`);
  if (ext.method === 'base') {
    if (!(ext.ropeTheta >= cfg.ropeTheta)) fail(source, `field "ropeTheta" (${ext.ropeTheta}) must be >= the current ${cfg.ropeTheta}`);
    return validateConfig({ ...cfg, ropeTheta: ext.ropeTheta, maxSeqLen: ext.maxSeqLen }, source);
  }
  const factor = ext.maxSeqLen / cfg.maxSeqLen;
  if (ext.method === 'dynamic-base') return validateConfig({ ...cfg, ropeScaling: { type: ext.method, factor } }, source);
  return validateConfig({ ...cfg, ropeScaling: { type: ext.method, factor }, maxSeqLen: ext.maxSeqLen }, source);
}

// ---------------------------------------------------------------------------------------------
// Hugging Face config.json

/** The LlamaConfig fields we read and write (plus what transformers adds). */
export interface HFLlamaConfig {
  architectures?: string[];
  model_type?: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  hidden_act?: string;
  rope_theta?: number;
  rope_scaling?: { type?: string; rope_type?: string; factor?: number } | null;
  rope_parameters?: { rope_type?: string; rope_theta?: number; factor?: number } | null;
  max_position_embeddings?: number;
  rms_norm_eps?: number;
  tie_word_embeddings?: boolean;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  torch_dtype?: string;
  dtype?: string;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
  /** MixtralConfig. */
  num_local_experts?: number;
  num_experts_per_tok?: number;
  router_aux_loss_coef?: number;
  router_jitter_noise?: number;
  /** Ours, not MixtralConfig's (it keeps unknown fields as attributes): routerZLossCoef. */
  router_z_loss_coef?: number;
  output_router_logits?: boolean;
  sliding_window?: number | null;
  [key: string]: unknown;
}

const HF_DTYPES = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' } as const;

/**
 * The special token ids a model folder carries (config.json and generation_config.json), so
 * transformers' generate() stops at the model's EOS.
 */
export interface SpecialTokenIds {
  bos: number;
  eos: number;
  /**
   * The tokenizer's own padding id, or null (config.json pad_token_id). transformers makes it
   * the embedding's padding_idx, whose row it never trains: only a true pad token belongs here.
   */
  pad: number | null;
  /** What generate() pads finished sequences with (generation_config.json): `pad`, else <unk>; never EOS. */
  generationPad: number | null;
}

/** LLaMA-2's ids: <s> 1, </s> 2, no pad token; generation pads with <unk> 0 as Meta's folders do. */
export const LLAMA2_SPECIAL_IDS: SpecialTokenIds = Object.freeze({ bos: 1, eos: 2, pad: null, generationPad: 0 });

/** Checks special ids against a vocabulary; `source` names the tokenizer or file in errors. */
export function validateSpecialIds(ids: SpecialTokenIds, vocabSize: number, source: string): SpecialTokenIds {
  for (const k of ['bos', 'eos', 'pad', 'generationPad'] as const) {
    const v = ids[k];
    if (v === null && (k === 'pad' || k === 'generationPad')) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= vocabSize)
      throw new PatentGPTError('E_CONFIG', `${source}: ${k} token id ${JSON.stringify(v)} is not an id of the model's ${vocabSize}-token vocabulary`);
  }
  return ids;
}

/** generation_config.json of a folder: the special ids transformers' generate() reads (it stops at eos_token_id). */
export function toHFGenerationConfig(ids: SpecialTokenIds): { bos_token_id: number; eos_token_id: number; pad_token_id: number | null } {
  return { bos_token_id: ids.bos, eos_token_id: ids.eos, pad_token_id: ids.generationPad };
}

/**
 * The special ids of a folder's config.json object (and its generation_config.json object when
 * given), or null when they name no BOS/EOS (a folder from an older writer).
 */
export function specialIdsFromHF(config: unknown, generation?: unknown): SpecialTokenIds | null {
  const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  const c = obj(config);
  const g = obj(generation);
  // transformers allows a list of EOS ids; the first is the one a sequence is ended with
  const id = (v: unknown): number | null => {
    const x = Array.isArray(v) ? v[0] : v;
    return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : null;
  };
  const bos = id(c.bos_token_id) ?? id(g.bos_token_id);
  const eos = id(c.eos_token_id) ?? id(g.eos_token_id);
  if (bos === null || eos === null) return null;
  const pad = id(c.pad_token_id);
  return { bos, eos, pad, generationPad: 'pad_token_id' in g ? id(g.pad_token_id) : pad };
}

/**
 * A transformers-loadable config.json object for cfg, weights stored in `dtype`, with the
 * tokenizer's special ids (default LLaMA-2's, which transformers would assume anyway).
 */
export function toHFConfig(cfg: ModelConfig, dtype: 'f32' | 'bf16' | 'f16' = 'f32', ids: SpecialTokenIds = LLAMA2_SPECIAL_IDS): HFLlamaConfig {
  if ((cfg.numSharedExperts ?? 0) > 0)
    throw new PatentGPTError('E_UNSUPPORTED', `toHFConfig: numSharedExperts ${cfg.numSharedExperts}: MixtralForCausalLM has no shared experts; a folder transformers loads needs numSharedExperts 0`);
  const rope = cfg.ropeScaling;
  // 'ntk' has no Hugging Face type: the raised base carries the same function.
  const theta = rope?.type === 'ntk' ? ropeParams(cfg).theta : cfg.ropeTheta;
  const hfType = rope === null || rope.type === 'ntk' ? null : rope.type === 'linear' ? 'linear' : 'dynamic';
  const scaling = hfType === null ? null : { rope_type: hfType, type: hfType, factor: rope!.factor };
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.dim,
    intermediate_size: cfg.ffnDim,
    num_hidden_layers: cfg.nLayers,
    num_attention_heads: cfg.nHeads,
    num_key_value_heads: cfg.nKvHeads,
    head_dim: headDim(cfg),
    hidden_act: 'silu',
    max_position_embeddings: cfg.maxSeqLen,
    rms_norm_eps: cfg.normEps,
    rope_theta: theta,
    rope_scaling: scaling,
    tie_word_embeddings: cfg.tieEmbeddings,
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: HF_DTYPES[dtype],
    bos_token_id: ids.bos,
    eos_token_id: ids.eos,
    pad_token_id: ids.pad,
    ...(isMoE(cfg) ? mixtralFields(cfg) : {}),
  };
}

/** What MixtralConfig adds to (and changes in) LlamaConfig. */
function mixtralFields(cfg: ModelConfig): Partial<HFLlamaConfig> {
  return {
    architectures: ['MixtralForCausalLM'],
    model_type: 'mixtral',
    num_local_experts: cfg.numExperts,
    num_experts_per_tok: cfg.topK,
    // floats for transformers 5 (a strict dataclass): write the file with hfConfigJson, which
    // writes 0 as 0.0 where JSON.stringify would write an int it refuses
    router_aux_loss_coef: cfg.routerAuxLossCoef ?? MOE_DEFAULTS.routerAuxLossCoef,
    ...(cfg.routerJitter ? { router_jitter_noise: cfg.routerJitter } : {}),
    router_z_loss_coef: cfg.routerZLossCoef ?? MOE_DEFAULTS.routerZLossCoef,
    // transformers adds the aux loss to its loss only when asked; inference folders leave it off (as Mixtral's do)
    output_router_logits: false,
    sliding_window: null,
  };
}

/** The fields of config.json that transformers' MixtralConfig types as float (it refuses an int there). */
const HF_FLOAT_FIELDS = ['router_aux_loss_coef', 'router_jitter_noise', 'router_z_loss_coef'] as const;

/**
 * config.json's text for toHFConfig's object: JSON with 2-space indents, the float fields written
 * as floats (0 -> 0.0, 1 -> 1.0), as Python's json.dump writes them and transformers expects.
 */
export function hfConfigJson(config: HFLlamaConfig): string {
  let text = JSON.stringify(config, null, 2);
  // top-level fields only (two spaces of indent); an integral value has no '.', 'e' or 'E'
  for (const f of HF_FLOAT_FIELDS) text = text.replace(new RegExp(`^(  "${f}": -?\\d+)(,?)$`, 'm'), '$1.0$2');
  return text + '\n';
}

/**
 * A ModelConfig from a Hugging Face LlamaConfig object (config.json), transformers 4 style
 * (rope_theta, rope_scaling) or 5 style (rope_parameters). Refuses what our decoder does not
 * compute (biases, another activation, a head_dim other than hidden_size / heads, other RoPE types).
 */
export function fromHFConfig(value: unknown, source = 'config.json'): ModelConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(source, `expected a JSON object`);
  const hf = value as HFLlamaConfig;
  const arch = hf.architectures;
  // a reward folder (transformers' *ForSequenceClassification) holds the same decoder under a score head
  const names = (family: string): string[] => [`${family}ForCausalLM`, `${family}ForSequenceClassification`];
  const isFamily = (family: string): boolean => Array.isArray(arch) && names(family).some((a) => arch.includes(a));
  const mixtral = hf.model_type === 'mixtral' || isFamily('Mixtral');
  if (arch !== undefined && !(isFamily('Llama') || isFamily('Mixtral')))
    fail(source, `field "architectures" is ${JSON.stringify(arch)}; only ${[...names('Llama'), ...names('Mixtral')].join(', ')} are supported`);
  if (hf.model_type !== undefined && hf.model_type !== (mixtral ? 'mixtral' : 'llama'))
    fail(source, `field "model_type" is ${JSON.stringify(hf.model_type)}, expected "${mixtral ? 'mixtral' : 'llama'}" for ${JSON.stringify(arch)}`);
  if (mixtral && hf.sliding_window !== undefined && hf.sliding_window !== null)
    fail(source, `field "sliding_window" is ${JSON.stringify(hf.sliding_window)}; only full causal attention (null) is supported`);
  if (!mixtral) for (const f of ['num_local_experts', 'num_experts_per_tok'])
    if (hf[f] !== undefined && hf[f] !== 1) fail(source, `field "${f}" is set on a LlamaForCausalLM config; a mixture of experts is model_type "mixtral"`);
  if (hf.hidden_act !== undefined && hf.hidden_act !== 'silu') fail(source, `field "hidden_act" is ${JSON.stringify(hf.hidden_act)}; LLaMA uses "silu"`);
  if (hf.attention_bias === true) fail(source, 'field "attention_bias" is true; LLaMA projections have no bias');
  if (hf.mlp_bias === true) fail(source, 'field "mlp_bias" is true; LLaMA projections have no bias');
  const rp = hf.rope_parameters ?? null;
  const rs = rp ?? hf.rope_scaling ?? null;
  const ropeTheta = rp?.rope_theta ?? hf.rope_theta ?? (mixtral ? 1e6 : CONFIG_DEFAULTS.ropeTheta); // MixtralConfig's default base is 1e6
  const ropeType = rs === null ? 'default' : (rs as { rope_type?: string }).rope_type ?? (rs as { type?: string }).type ?? 'default';
  let ropeScaling: RopeScaling = null;
  if (ropeType === 'linear' || ropeType === 'dynamic') {
    ropeScaling = { type: ropeType === 'linear' ? 'linear' : 'dynamic-base', factor: (rs as { factor?: number }).factor as number };
  } else if (ropeType !== 'default') {
    fail(source, `field "rope_scaling" type ${JSON.stringify(ropeType)} is not supported (default, linear, dynamic)`);
  }
  const cfg = validateConfig(
    {
      vocabSize: hf.vocab_size,
      dim: hf.hidden_size,
      nLayers: hf.num_hidden_layers,
      nHeads: hf.num_attention_heads,
      nKvHeads: hf.num_key_value_heads ?? hf.num_attention_heads,
      ffnDim: hf.intermediate_size,
      ropeTheta,
      ropeScaling,
      maxSeqLen: hf.max_position_embeddings ?? CONFIG_DEFAULTS.maxSeqLen,
      normEps: hf.rms_norm_eps ?? (mixtral ? 1e-5 : 1e-6), // LlamaConfig's / MixtralConfig's default
      tieEmbeddings: hf.tie_word_embeddings ?? false,
      // MixtralConfig's defaults for what a mixtral config.json leaves out
      ...(mixtral ? { numExperts: hf.num_local_experts ?? 8, topK: hf.num_experts_per_tok ?? 2 } : {}),
      ...(mixtral && (hf.num_local_experts ?? 8) !== 1
        ? {
          routerAuxLossCoef: hf.router_aux_loss_coef ?? 0.001,
          routerJitter: hf.router_jitter_noise ?? 0,
          routerZLossCoef: hf.router_z_loss_coef ?? MOE_DEFAULTS.routerZLossCoef,
        } : {}),
    },
    source,
  );
  if (hf.head_dim !== undefined && hf.head_dim !== null && hf.head_dim !== headDim(cfg))
    fail(source, `field "head_dim" (${String(hf.head_dim)}) must equal hidden_size / num_attention_heads (${headDim(cfg)})`);
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// Size and cost

export interface ParameterCount {
  /** Every parameter (the tied table once). */
  total: number;
  /** Token-embedding table. */
  embedding: number;
  /** Output layer (0 when tied). */
  lmHead: number;
  /** Attention projections, all layers. */
  attention: number;
  /** Feed-forward, all layers. */
  feedForward: number;
  /** RMSNorm weights, all layers and the final norm. */
  norms: number;
  /** total - embedding - lmHead: what scaling-law papers call N. */
  nonEmbedding: number;
  /**
   * Parameters one token goes through: total less the experts it is not routed to (its top-k and
   * the shared experts count, the router too). Equals total for a dense model. Mixtral 8x7B: 12.9B.
   */
  active: number;
}

export function parameterCount(cfg: ModelConfig): ParameterCount {
  const D = headDim(cfg);
  const C = cfg.dim;
  const embedding = cfg.vocabSize * C;
  const lmHead = cfg.tieEmbeddings ? 0 : cfg.vocabSize * C;
  const attention = cfg.nLayers * (C * cfg.nHeads * D + 2 * C * cfg.nKvHeads * D + cfg.nHeads * D * C);
  const router = isMoE(cfg) ? C * cfg.numExperts : 0;
  const expert = 3 * C * cfg.ffnDim;
  const shared = cfg.numSharedExperts ?? 0;
  const feedForward = cfg.nLayers * (expert * (cfg.numExperts + shared) + router);
  const norms = (2 * cfg.nLayers + 1) * C;
  const total = embedding + lmHead + attention + feedForward + norms;
  const active = total - cfg.nLayers * expert * (cfg.numExperts - cfg.topK);
  return { total, embedding, lmHead, attention, feedForward, norms, nonEmbedding: total - embedding - lmHead, active };
}

export interface FlopsPerToken {
  /** Sequence length the attention term was computed for. */
  seqLen: number;
  /** Parameters that multiply activations: projections, feed-forward (active experts) and the output layer (tied or not). */
  matmulParams: number;
  /** Forward: 2 * matmulParams + 4 * nLayers * seqLen * dim. */
  forward: number;
  /** Training (forward + backward): 6 * matmulParams + 12 * nLayers * seqLen * dim. */
  training: number;
}

/**
 * FLOPs per token, PaLM's convention (Chowdhery et al. 2022, appendix B): 6N + 12 L T d for
 * training, where N counts the weights that multiply activations (the embedding lookup and the
 * norms excluded, the output layer included) and 12 L T d is the attention scores and weighted
 * sum over a full T x T matrix per layer (no causal halving). Use it for MFU.
 */
export function flopsPerToken(cfg: ModelConfig, seqLen = cfg.maxSeqLen): FlopsPerToken {
  const c = parameterCount(cfg);
  const activeFfn = c.feedForward - (c.total - c.active); // the router, the top-k and the shared experts
  const matmulParams = c.attention + activeFfn + cfg.vocabSize * cfg.dim;
  const attn = cfg.nLayers * seqLen * cfg.nHeads * headDim(cfg);
  return { seqLen, matmulParams, forward: 2 * matmulParams + 4 * attn, training: 6 * matmulParams + 12 * attn };
}
