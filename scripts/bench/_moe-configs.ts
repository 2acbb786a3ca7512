// The shapes and settings of `npm run bench -- moe` (scripts/bench/moe.ts), kept apart from the
// timing code so a test can check them without running a benchmark:
// - the three scaled models of the paper's cost claim: a sparse MoE, a dense model with its
//   ACTIVE parameters (same attention, one SwiGLU of topK x the expert hidden size) and a dense
//   model with its TOTAL parameters (grown as a dense LLaMA grows: wider, same head size and
//   query/key-value head ratio, the feed-forward solved for the parameter count);
// - the command line (full defaults sized for ~10-12 minutes on 2 cores, --quick for a smoke run);
// - what part 3's numbers show, in plain sentences and a verdict on the claim, whichever way it goes;
// - a markdown table printer.
import { PatentGPTError } from '../../src/errors.js';
import { headDim, parameterCount, validateConfig, type ModelConfig } from '../../src/models/index.js';
import { BYTE_VOCAB_SIZE } from '../../src/tokenizer/byte.js';

/** A scaled Mixtral-style model: the knobs the bench exposes. */
export interface MoeShape {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Hidden size of each expert. */
  expertHidden: number;
  numExperts: number;
  topK: number;
  vocabSize: number;
  maxSeqLen: number;
}

/** The sparse MoE model of a shape (Mixtral's router defaults). */
export function moeConfig(s: MoeShape): ModelConfig {
  if (s.numExperts < 2) throw new PatentGPTError('E_CONFIG', `moe bench: --experts must be >= 2 for a mixture of experts, got ${s.numExperts}`);
  return validateConfig({
    vocabSize: s.vocabSize, dim: s.dim, nLayers: s.nLayers, nHeads: s.nHeads, nKvHeads: s.nKvHeads, ffnDim: s.expertHidden,
    maxSeqLen: s.maxSeqLen, numExperts: s.numExperts, topK: s.topK,
  }, 'moe bench shape');
}

/** Dense config of `moe`'s attention with a feed-forward of `ffnDim`. */
function dense(moe: ModelConfig, over: Partial<ModelConfig>): ModelConfig {
  const { numSharedExperts: _s, routerAuxLossCoef: _a, routerZLossCoef: _z, routerJitter: _j, ...base } = moe;
  return validateConfig({ ...base, numExperts: 1, topK: 1, ...over }, 'moe bench dense config');
}

/**
 * The dense model with the MoE's active parameters: the same attention, one SwiGLU of hidden
 * size (topK + shared) x the expert's (the router's C x E weights are the only difference).
 */
export function denseActiveConfig(moe: ModelConfig): ModelConfig {
  return dense(moe, { ffnDim: (moe.topK + (moe.numSharedExperts ?? 0)) * moe.ffnDim });
}

/**
 * The dense model with the MoE's total parameters, grown as dense LLaMAs grow: the same depth,
 * head size and query/key-value head ratio, a width that is a multiple of head size x ratio,
 * and the feed-forward size (a multiple of 16) that makes the total closest. Of the widths whose
 * total lands within 1%, the one whose ffnDim / dim is nearest LLaMA's 8/3 wins.
 */
export function denseTotalConfig(moe: ModelConfig): ModelConfig {
  const target = parameterCount(moe).total;
  const D = headDim(moe);
  const ratio = moe.nHeads / moe.nKvHeads;
  const step = D * ratio;
  let best: { cfg: ModelConfig; score: number } | null = null;
  for (let dim = step; dim <= 8 * moe.dim; dim += step) {
    const nHeads = dim / D;
    const probe = dense(moe, { dim, nHeads, nKvHeads: nHeads / ratio, ffnDim: 16 });
    const rest = parameterCount(probe).total - 3 * moe.nLayers * dim * 16; // all but the feed-forward
    const ffnDim = Math.round((target - rest) / (3 * moe.nLayers * dim) / 16) * 16;
    if (ffnDim < 16) break; // wider leaves no room for a feed-forward
    const cfg = dense(moe, { dim, nHeads, nKvHeads: nHeads / ratio, ffnDim });
    if (Math.abs(parameterCount(cfg).total - target) > 0.01 * target) continue;
    const score = Math.abs(Math.log(ffnDim / dim / (8 / 3)));
    if (!best || score < best.score) best = { cfg, score };
  }
  if (!best) throw new PatentGPTError('E_CONFIG', `moe bench: no dense width matches the MoE's ${target} parameters within 1%; change --dim or --expert-hidden`);
  return best.cfg;
}

/** The three models of part 3, by name. */
export function claimModels(s: MoeShape): { name: string; cfg: ModelConfig }[] {
  const moe = moeConfig(s);
  return [
    { name: 'moe', cfg: moe },
    { name: 'dense-total', cfg: denseTotalConfig(moe) },
    { name: 'dense-active', cfg: denseActiveConfig(moe) },
  ];
}

/** One-line description of a config for the bench's header. */
export function describeConfig(cfg: ModelConfig): string {
  const p = parameterCount(cfg);
  const ff = cfg.numExperts > 1 ? `E=${cfg.numExperts} k=${cfg.topK} expert hidden ${cfg.ffnDim}` : `ffn ${cfg.ffnDim}`;
  return `dim ${cfg.dim}, ${cfg.nLayers} layers, ${cfg.nHeads}/${cfg.nKvHeads} heads, ${ff}, vocab ${cfg.vocabSize}; ` +
    `${(p.total / 1e6).toFixed(2)}M total, ${(p.active / 1e6).toFixed(2)}M active`;
}

/** A MoE layer shape of part 1: N tokens through a layer of width C. */
export interface LayerShape {
  tokens: number;
  dim: number;
  expertHidden: number;
  numExperts: number;
  topK: number;
}

export interface MoeBenchOptions {
  quick: boolean;
  /** Which parts run (1..4). */
  parts: number[];
  threads: number;
  /** Warm-up and timed steps of parts 1 and 2. */
  warmup: number;
  steps: number;
  /** Pause between the two sides' turns in part 2 (torch's spinning OpenMP threads go idle). */
  gapMs: number;
  layers: LayerShape[];
  /** Part 2: the tiny Mixtral and its batch. */
  train: { shape: MoeShape; batch: number; seq: number };
  /** Part 3: the models' shape, the contexts, the training budget. */
  claim: {
    shape: MoeShape;
    contexts: number[];
    /** Decode steps timed at each context. */
    decodeTokens: number;
    trainSteps: number;
    trainBatch: number;
    trainSeq: number;
    lr: number;
    evalBatches: number;
  };
  /** Part 4: decode after a short prompt, best of interleaved rounds. */
  gguf: { shape: MoeShape; newTokens: number; rounds: number };
  /** transformers' attention in part 2: sdpa (its default) or eager. */
  torchAttn: 'sdpa' | 'eager';
  /** Text for part 3's training (default ../shared/data/patentsview-abstracts). */
  data: string | null;
}

export const MOE_BENCH_USAGE = `npm run bench -- moe [--quick] [--parts 1,2,3,4] [--threads 2] [--steps N] [--warmup N] [--gap-ms N]
  [--layer-shapes NxCxFxExK,...]          part 1: tokens x dim x expert hidden x experts x top-k
  [--train-batch B] [--train-seq T]        part 2: the tiny Mixtral's batch
  [--dim C] [--layers L] [--heads H] [--kv-heads H] [--expert-hidden F] [--experts E] [--topk K]
                                           parts 2-4: the MoE shape (the dense models follow it)
  [--contexts 2048,8192,16384] [--decode-tokens N] [--claim-steps N] [--claim-batch B] [--claim-seq T] [--lr X] [--eval-batches N]
                                           part 3: contexts, and the training budget (same tokens for every model)
  [--gguf-new N] [--rounds N]              part 4
  [--torch-attn sdpa|eager] [--data PATH]
--quick: a 1-2 minute smoke run (smaller shapes, contexts 512 and 2048, 30 training steps); any flag still overrides it.
Full defaults take about 10-12 minutes on 2 idle cores; a busy machine takes longer (each part's seconds are in the JSON).`;

function positive(name: string, v: string): number {
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0) throw new PatentGPTError('E_ARGUMENT', `moe bench: --${name} must be a positive number, got "${v}"\n${MOE_BENCH_USAGE}`);
  return x;
}

function list(name: string, v: string): number[] {
  return v.split(',').map((s) => positive(name, s.trim()));
}

/** Parses "NxCxFxExK" (part 1's layer shapes). */
function layerShape(v: string): LayerShape {
  const xs = v.split('x').map((s) => positive('layer-shapes', s));
  if (xs.length !== 5) throw new PatentGPTError('E_ARGUMENT', `moe bench: --layer-shapes wants NxCxFxExK (tokens x dim x expert hidden x experts x top-k), got "${v}"`);
  const [tokens, dim, expertHidden, numExperts, topK] = xs as [number, number, number, number, number];
  if (topK > numExperts || numExperts < 2) throw new PatentGPTError('E_ARGUMENT', `moe bench: layer shape "${v}": need 2 <= experts and top-k <= experts`);
  return { tokens, dim, expertHidden, numExperts, topK };
}

/**
 * The bench's settings from argv. Full defaults take about 10-12 minutes on 2 cores; --quick
 * about 2 minutes (smaller shapes, contexts and budget: a smoke run, not the claim).
 */
export function parseMoeBenchArgs(argv: readonly string[]): MoeBenchOptions {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const known = new Set([
    'quick', 'parts', 'threads', 'steps', 'warmup', 'gap-ms', 'layer-shapes', 'train-batch', 'train-seq', 'dim', 'layers', 'heads',
    'kv-heads', 'expert-hidden', 'experts', 'topk', 'contexts', 'decode-tokens', 'claim-steps', 'claim-batch', 'claim-seq', 'lr',
    'eval-batches', 'gguf-new', 'rounds', 'torch-attn', 'data',
  ]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new PatentGPTError('E_ARGUMENT', `moe bench: unexpected argument "${a}"\n${MOE_BENCH_USAGE}`);
    const name = a.slice(2);
    if (!known.has(name)) throw new PatentGPTError('E_ARGUMENT', `moe bench: unknown flag --${name}\n${MOE_BENCH_USAGE}`);
    if (name === 'quick') flags.add(name);
    else {
      const v = argv[++i];
      if (v === undefined) throw new PatentGPTError('E_ARGUMENT', `moe bench: --${name} needs a value\n${MOE_BENCH_USAGE}`);
      values.set(name, v);
    }
  }
  const quick = flags.has('quick');
  const get = (name: string, full: string, q: string): string => values.get(name) ?? (quick ? q : full);
  const num = (name: string, full: number, q: number): number => positive(name, get(name, String(full), String(q)));
  const parts = list('parts', get('parts', '1,2,3,4', '1,2,3,4'));
  for (const p of parts) if (![1, 2, 3, 4].includes(p)) throw new PatentGPTError('E_ARGUMENT', `moe bench: --parts takes 1, 2, 3 and 4, got ${p}`);
  const contexts = list('contexts', get('contexts', '2048,8192,16384', '512,2048'));
  const decodeTokens = num('decode-tokens', 32, 16);
  const shape = (vocabSize: number, maxSeqLen: number): MoeShape => ({
    dim: num('dim', 128, 64),
    nLayers: num('layers', 4, 2),
    nHeads: num('heads', 4, 4),
    nKvHeads: num('kv-heads', 2, 2),
    expertHidden: num('expert-hidden', 256, 128),
    numExperts: num('experts', 8, 4),
    topK: num('topk', 2, 2),
    vocabSize,
    maxSeqLen,
  });
  const trainSeq = num('train-seq', 256, 128);
  const claimSeq = num('claim-seq', 256, 128);
  const torchAttn = get('torch-attn', 'sdpa', 'sdpa');
  if (torchAttn !== 'sdpa' && torchAttn !== 'eager') throw new PatentGPTError('E_ARGUMENT', `moe bench: --torch-attn is sdpa or eager, got "${torchAttn}"`);
  const opts: MoeBenchOptions = {
    quick,
    parts,
    threads: num('threads', 2, 2),
    warmup: num('warmup', 2, 1),
    steps: num('steps', 5, 3),
    gapMs: Number(get('gap-ms', '200', '100')),
    layers: get('layer-shapes', '4096x256x512x8x2,2048x512x1024x8x2', '1024x128x256x8x2').split(',').map(layerShape),
    train: { shape: shape(512, Math.max(1024, trainSeq)), batch: num('train-batch', 8, 4), seq: trainSeq },
    claim: {
      // every context plus the decoded tokens fits; training runs at claimSeq
      shape: shape(BYTE_VOCAB_SIZE, Math.max(...contexts, claimSeq) + decodeTokens + 16),
      contexts,
      decodeTokens,
      trainSteps: num('claim-steps', 120, 30),
      trainBatch: num('claim-batch', 16, 8),
      trainSeq: claimSeq,
      lr: num('lr', 3e-3, 3e-3),
      evalBatches: num('eval-batches', 16, 4),
    },
    // the GGUF carries LLaMA-2's tokenizer, so the model has its 32,000 ids
    gguf: { shape: shape(32000, 256), newTokens: num('gguf-new', 64, 16), rounds: num('rounds', 3, 2) },
    torchAttn,
    data: values.get('data') ?? null,
  };
  for (const n of [...opts.layers.map((l) => l.tokens), opts.claim.trainSteps, opts.steps, opts.warmup, opts.threads, ...contexts])
    if (!Number.isInteger(n)) throw new PatentGPTError('E_ARGUMENT', `moe bench: counts must be integers, got ${n}`);
  moeConfig(opts.claim.shape); // a bad shape fails here, before any part runs
  return opts;
}

/** A markdown table: header row, alignment row (text left, numbers right), rows. */
export function markdownTable(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const numeric = header.map((_, j) => rows.length > 0 && rows.every((r) => typeof r[j] === 'number' || /^[-+]?[\d.]+(x|%)?$/.test(String(r[j]))));
  const lines = [`| ${header.join(' | ')} |`, `|${numeric.map((n) => (n ? '---:' : '---')).join('|')}|`];
  for (const r of rows) lines.push(`| ${r.map(String).join(' | ')} |`);
  return lines.join('\n');
}

/** Part 3, one model at one context. */
export interface ClaimContextRow {
  context: number;
  prefillTokPerSec: number;
  decodeTokPerSec: number;
  /** Peak native bytes of the request over what was live before the model was built. */
  peakBytes: number;
}

/** Part 3, one model. */
export interface ClaimModelRow {
  name: string;
  config: ModelConfig;
  params: { total: number; active: number };
  kvBytesPerToken: number;
  /** After the same training tokens; tokPerSec is the median of the stage's step records. Null: not trained (no data). */
  train: { tokens: number; tokPerSec: number; valLoss: number | null; status: string } | null;
  contexts: ClaimContextRow[];
}

const x2 = (x: number): string => x.toFixed(2);
/** "1.50x faster" / "1.50x slower": a / b, said the way it goes. */
const rel = (a: number, b: number, more: string, less: string): string => (a >= b ? `${x2(a / b)}x ${more}` : `${x2(b / a)}x ${less}`);

/**
 * What part 3 shows, in plain sentences: the MoE against each dense model (rows: moe,
 * dense-total, dense-active, as claimModels orders them) at every context, then the verdict on
 * the paper's claim at the longest context. The claim (a better cost-performance ratio than
 * dense models on long texts) is read as two tests: at equal capacity (total parameters) the MoE
 * is cheaper, prefill and decode both faster; at equal compute per token (active parameters) it
 * reaches a lower validation loss after the same tokens. Both: it holds; one: in part; neither:
 * it does not, on these models and this budget.
 */
export function claimFindings(rows: readonly ClaimModelRow[]): string[] {
  const by = (name: string): ClaimModelRow => {
    const r = rows.find((x) => x.name === name);
    if (!r) throw new PatentGPTError('E_ARGUMENT', `claimFindings: no "${name}" row (have ${rows.map((x) => x.name).join(', ')})`);
    return r;
  };
  const moe = by('moe');
  const total = by('dense-total');
  const active = by('dense-active');
  const out: string[] = [];
  const loss = (d: ClaimModelRow): number | null => (moe.train?.valLoss != null && d.train?.valLoss != null ? moe.train.valLoss - d.train.valLoss : null);
  for (const [d, label] of [[total, 'equal total parameters'], [active, 'equal active parameters']] as const) {
    const kv = moe.kvBytesPerToken === d.kvBytesPerToken ? 'the same KV cache per token' : `a KV cache ${rel(moe.kvBytesPerToken, d.kvBytesPerToken, 'larger', 'smaller')} per token`;
    const perCtx = moe.contexts.map((m, i) => {
      const x = d.contexts[i]!;
      return `${m.context}: prefill ${rel(m.prefillTokPerSec, x.prefillTokPerSec, 'faster', 'slower')}, decode ${rel(m.decodeTokPerSec, x.decodeTokPerSec, 'faster', 'slower')}, ` +
        `peak memory ${rel(m.peakBytes, x.peakBytes, 'higher', 'lower')}`;
    });
    const dl = loss(d);
    const lossText = dl === null ? '' : `; validation loss after the same ${moe.train!.tokens} tokens ${moe.train!.valLoss!.toFixed(4)} vs ${d.train!.valLoss!.toFixed(4)} ` +
      `(${dl <= 0 ? `${(-dl).toFixed(4)} lower: better` : `${dl.toFixed(4)} higher: worse`})`;
    out.push(`MoE vs the dense model of ${label}: ${kv}; at context ${perCtx.join('; at ')}${lossText}.`);
  }
  const i = moe.contexts.length - 1;
  if (i < 0) return out;
  const [m, t] = [moe.contexts[i]!, total.contexts[i]!];
  const cheaper = m.decodeTokPerSec > t.decodeTokPerSec && m.prefillTokPerSec > t.prefillTokPerSec;
  const costText = `at ${m.context} tokens of context the MoE is ${cheaper ? 'cheaper' : 'not cheaper'} than the dense model of equal total parameters ` +
    `(prefill ${x2(m.prefillTokPerSec / t.prefillTokPerSec)}x, decode ${x2(m.decodeTokPerSec / t.decodeTokPerSec)}x its speed)`;
  const dl = loss(active);
  if (dl === null) {
    out.push(`Verdict: ${costText}; the quality half of the claim was not measured (no training data).`);
    return out;
  }
  const better = dl < 0;
  const qualityText = `its validation loss is ${better ? 'lower' : 'not lower'} than the dense model of equal active parameters' ` +
    `(${moe.train!.valLoss!.toFixed(4)} vs ${active.train!.valLoss!.toFixed(4)} after ${moe.train!.tokens} tokens)`;
  const verdict = cheaper && better ? 'the claim holds on these scaled models'
    : cheaper || better ? 'the claim holds only in part on these scaled models' : 'the claim does not hold on these scaled models';
  out.push(`Verdict: ${verdict}: ${costText}, and ${qualityText}.`);
  return out;
}
