// Sampling of the next token from a row of logits, per request, in vLLM's order:
//   penalties (repetition over prompt + output; frequency and presence over output)
//   -> temperature (0 = greedy argmax) -> top-k -> top-p -> min-p -> draw with the request's RNG.
// Log-probs are those of the model's raw distribution (log-softmax of the logits before any
// penalty or temperature), as vLLM reports by default.
import { PatentGPTError } from '../errors.js';

export interface SamplingOptions {
  /** 0 (default) is greedy decoding; must be >= 0. */
  temperature?: number;
  /** Keep the k most likely tokens (0 or absent: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP, in (0, 1]. */
  topP?: number;
  /** Drop tokens whose probability is below minP times the top token's, in [0, 1]. */
  minP?: number;
  /** > 1 discourages tokens already in the prompt or output (HF/vLLM rule: divide positive logits, multiply negative). */
  repetitionPenalty?: number;
  /** Subtracted from a token's logit once per time it occurs in the output. */
  frequencyPenalty?: number;
  /** Subtracted from a token's logit once if it occurs in the output. */
  presencePenalty?: number;
  /** Seed of this request's random draws (default: drawn from Math.random). */
  seed?: number;
}

function bad(field: string, message: string): never {
  throw new PatentGPTError('E_ARGUMENT', `generate: ${field} ${message}`);
}

/** Checks sampling options; errors name the field. */
export function validateSampling(o: SamplingOptions): Required<Omit<SamplingOptions, 'seed'>> & { seed: number } {
  const num = (v: unknown, field: string): void => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v))) bad(field, `must be a finite number, got ${String(v)}`);
  };
  for (const f of ['temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'frequencyPenalty', 'presencePenalty', 'seed'] as const) num(o[f], f);
  const temperature = o.temperature ?? 0;
  if (temperature < 0) bad('temperature', `must be >= 0 (0 is greedy), got ${temperature}`);
  const topK = o.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0) bad('topK', `must be an integer >= 0 (0 keeps all), got ${topK}`);
  const topP = o.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) bad('topP', `must be in (0, 1], got ${topP}`);
  const minP = o.minP ?? 0;
  if (!(minP >= 0 && minP <= 1)) bad('minP', `must be in [0, 1], got ${minP}`);
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  if (!(repetitionPenalty > 0)) bad('repetitionPenalty', `must be > 0 (1 is none), got ${repetitionPenalty}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isInteger(seed)) bad('seed', `must be an integer, got ${seed}`);
  return { temperature, topK, topP, minP, repetitionPenalty, frequencyPenalty: o.frequencyPenalty ?? 0, presencePenalty: o.presencePenalty ?? 0, seed };
}

export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The top-n tokens of the raw distribution, most likely first (when asked for). */
  top?: { token: number; logprob: number }[];
}

/** The sampling state of one request: its options, RNG and token counts. */
export class Sampler {
  readonly opts: ReturnType<typeof validateSampling>;
  #state: number;
  /** Occurrences of each token in the output (frequency/presence penalties). */
  readonly #outCounts = new Map<number, number>();
  /** Tokens in the prompt or output (repetition penalty). */
  readonly #seen = new Set<number>();

  constructor(opts: SamplingOptions, prompt: ArrayLike<number>) {
    this.opts = validateSampling(opts);
    this.#state = this.opts.seed >>> 0;
    for (let i = 0; i < prompt.length; i++) this.#seen.add(prompt[i]!);
  }

  /** Records a token appended to the output. */
  accept(token: number): void {
    this.#outCounts.set(token, (this.#outCounts.get(token) ?? 0) + 1);
    this.#seen.add(token);
  }

  /** mulberry32: a small, fast, seedable uniform draw in [0, 1). */
  #uniform(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** The next token from raw logits (V); `logits` is not modified. */
  sample(raw: Float32Array): number {
    const o = this.opts;
    let logits = raw;
    if (o.repetitionPenalty !== 1 || o.frequencyPenalty !== 0 || o.presencePenalty !== 0) {
      logits = Float32Array.from(raw);
      if (o.repetitionPenalty !== 1)
        for (const t of this.#seen) logits[t] = logits[t]! > 0 ? logits[t]! / o.repetitionPenalty : logits[t]! * o.repetitionPenalty;
      for (const [t, c] of this.#outCounts) logits[t] = logits[t]! - o.frequencyPenalty * c - o.presencePenalty;
    }
    if (o.temperature === 0) return argmax(logits);
    // Candidates sorted by logit, most likely first; probabilities at this temperature.
    const V = logits.length;
    let idx: number[];
    if (o.topK > 0 && o.topK < V) idx = topIndices(logits, o.topK);
    else {
      idx = Array.from({ length: V }, (_, i) => i);
      if (o.topP < 1 || o.minP > 0) idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
    }
    let m = -Infinity;
    for (const i of idx) m = Math.max(m, logits[i]!);
    const p = idx.map((i) => Math.exp((logits[i]! - m) / o.temperature));
    let z = p.reduce((a, b) => a + b, 0);
    let n = p.length;
    if (o.topP < 1) {
      let acc = 0;
      for (let j = 0; j < p.length; j++) {
        acc += p[j]! / z;
        if (acc >= o.topP) {
          n = j + 1;
          break;
        }
      }
    }
    if (o.minP > 0) {
      const floor = o.minP * (p[0]! / z); // p[0] is the top token (idx sorted)
      let keep = 0;
      while (keep < n && p[keep]! / z >= floor) keep++;
      n = Math.max(1, keep);
    }
    z = 0;
    for (let j = 0; j < n; j++) z += p[j]!;
    let u = this.#uniform() * z;
    for (let j = 0; j < n; j++) {
      u -= p[j]!;
      if (u < 0) return idx[j]!;
    }
    return idx[n - 1]!;
  }
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topIndices(x: ArrayLike<number>, k: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    let j: number;
    if (out.length < k) j = out.push(i) - 1;
    else if (v > x[out[k - 1]!]!) out[(j = k - 1)] = i;
    else continue;
    // Insertion step: move i up past smaller values (strict: earlier indices win ties).
    while (j > 0 && x[out[j - 1]!]! < v) {
      out[j] = out[j - 1]!;
      out[--j] = i;
    }
  }
  return out;
}

/** Log-prob of `token` and of the top-n tokens under log-softmax(logits). */
export function logprobsOf(logits: Float32Array, token: number, topN: number): TokenLogprob {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]!);
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i]! - m);
  const lse = m + Math.log(z);
  const r: TokenLogprob = { token, logprob: logits[token]! - lse };
  if (topN > 0) r.top = topIndices(logits, topN).map((t) => ({ token: t, logprob: logits[t]! - lse }));
  return r;
}
