// Where a training forward's tokens sit in the global batch, so that dropout masks are a function
// of the data and not of the call: a stage wraps each micro-batch's forward in withDropoutRows,
// naming the optimizer step and, run by run, the global row (the stream's global sample index)
// and position of its tokens. A dropout site (a LoRA adapter) then draws element c of token t of
// global row g at stream position (g * stride + t) * cols + c of a seed mixed from its own seed
// and the step. A row thus gets the same mask on whatever rank or micro-batch it lands, whatever
// the number of ranks, and a resumed run (same step, same rows) draws the same masks again, with
// no generator state to save. Forwards outside such a scope (evaluation, unit use, stages that do
// not say where their rows are) keep the site's own sequential stream. A layer that computes some
// of the tokens alone (the last layer past attention, for the rows a loss reads) names them with
// withDropoutRowSubset, so a site that sees those rows keys them as the tokens they are.
import { PatentGPTError } from '../errors.js';
import type { DropoutOptions, DropoutSegment, Tensor } from '../tensor/index.js';

/** Consecutive tokens of the forward that belong to one global row. */
export interface DropoutRowRun {
  /** The global row (sample) index: the same for the row on any rank or micro-batch. */
  row: number;
  /** Tokens of the run. */
  length: number;
  /** Position in its row of the run's first token (default 0). */
  first?: number;
}

/** The forward's tokens, in order, as runs of global rows. */
export interface DropoutRows {
  /** The optimizer step (0-based) the forward belongs to. */
  step: number;
  /** Positions per row in the key space (the run's seqLen): a run must end at or before it. */
  stride: number;
  /** Runs covering the forward's tokens in order. */
  runs: readonly DropoutRowRun[];
}

interface Scope {
  rows: DropoutRows;
  tokens: number;
  /** withDropoutRowSubset's token indices (i32) and, once a site asked, their runs. */
  subset?: { select: Tensor | Int32Array; rows?: DropoutRows };
}

const active: Scope[] = [];

/** Runs `fn` (synchronous: a model forward) with `rows` describing its tokens. */
export function withDropoutRows<T>(rows: DropoutRows, fn: () => T): T {
  const bad = (why: string): never => {
    throw new PatentGPTError('E_ARGUMENT', `withDropoutRows: ${why}`);
  };
  if (!Number.isSafeInteger(rows.step) || rows.step < 0) bad(`step must be an integer >= 0, got ${rows.step}`);
  if (!Number.isSafeInteger(rows.stride) || rows.stride < 1) bad(`stride must be an integer >= 1, got ${rows.stride}`);
  let tokens = 0;
  for (const r of rows.runs) {
    const first = r.first ?? 0;
    if (!Number.isSafeInteger(r.row) || r.row < 0 || !Number.isSafeInteger(r.length) || r.length < 0 || !Number.isSafeInteger(first) || first < 0)
      bad(`a run needs integers row, length, first >= 0, got ${JSON.stringify(r)}`);
    if (first + r.length > rows.stride) bad(`row ${r.row}: tokens ${first}..${first + r.length - 1} pass the stride ${rows.stride} (the rows' longest length)`);
    tokens += r.length;
  }
  active.push({ rows, tokens });
  try {
    return fn();
  } finally {
    active.pop();
  }
}

/**
 * Runs `fn` (synchronous) with `select` (i32, R indices into the `of` rows a site would see now:
 * by default the scope's tokens) known as the rows of any site input of R rows: a layer that
 * computes those tokens alone, an MoE expert its row group. Outside a withDropoutRows scope, or
 * when the `of` rows are not known, it only runs `fn`.
 */
export function withDropoutRowSubset<T>(select: Tensor | Int32Array, fn: () => T, of?: number): T {
  const outer = active[active.length - 1];
  const base = outer ? (of === undefined ? outer.rows : dropoutRowsFor(of)) : null;
  if (!outer || !base) return fn();
  active.push({ rows: base, tokens: of ?? outer.tokens, subset: { select } });
  try {
    return fn();
  } finally {
    active.pop();
  }
}

/** Whether a withDropoutRows scope is open (a forward whose tokens are keyed). */
export function inDropoutRows(): boolean {
  return active.length > 0;
}

/**
 * The rows of a site input of `n` rows in the innermost scope: the subset's when n is its size,
 * the scope's tokens when n is their count, else null (the input's rows are not said).
 */
export function dropoutRowsFor(n: number): DropoutRows | null {
  const s = active[active.length - 1];
  if (!s) return null;
  const sub = s.subset;
  if (sub && n === (sub.select instanceof Int32Array ? sub.select.length : sub.select.size))
    return (sub.rows ??= subsetRows(s.rows, s.tokens, sub.select instanceof Int32Array ? sub.select : (sub.select.toArray() as Int32Array)));
  return n === s.tokens ? s.rows : null;
}

/** The runs of the tokens `select` picks from `rows`' `tokens`, consecutive positions of one row merged. */
function subsetRows(rows: DropoutRows, tokens: number, select: Int32Array): DropoutRows {
  const rowOf = new Float64Array(tokens), posOf = new Float64Array(tokens);
  let t = 0;
  for (const r of rows.runs)
    for (let i = 0; i < r.length; i++, t++) {
      rowOf[t] = r.row;
      posOf[t] = (r.first ?? 0) + i;
    }
  const runs: { row: number; length: number; first: number }[] = [];
  for (const i of select) {
    if (!(i >= 0 && i < tokens)) throw new PatentGPTError('E_ARGUMENT', `withDropoutRowSubset: token ${i} is not one of the forward's ${tokens}`);
    const last = runs[runs.length - 1];
    if (last && last.row === rowOf[i] && last.first + last.length === posOf[i]) last.length++;
    else runs.push({ row: rowOf[i]!, length: 1, first: posOf[i]! });
  }
  return { step: rows.step, stride: rows.stride, runs };
}

const M64 = (1n << 64n) - 1n;

/** SplitMix64's output `k` for `seed` (as native/cpu/dropout.cpp). */
function splitmix64(seed: bigint, k: bigint): bigint {
  let z = (seed + (k + 1n) * 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

/** splitmix64 reduced below 2^53, for the dropout op's seed. */
const mixBelow53 = (seed: bigint, k: bigint): number => Number(splitmix64(seed, k) >> 11n);

/**
 * One 64-bit seed per token of `rows`, from the site's seed, the step and the token's global
 * position (row * stride + position): for a site that draws per token on the host (an MoE
 * router's jitter), so its noise is keyed as the dropout masks are.
 */
export function tokenSeeds(seed: bigint | number, rows: DropoutRows): BigUint64Array {
  const stepSeed = splitmix64(BigInt.asUintN(64, BigInt(seed)), BigInt(rows.step));
  const out = new BigUint64Array(rows.runs.reduce((n, r) => n + r.length, 0));
  let t = 0;
  for (const r of rows.runs)
    for (let i = 0; i < r.length; i++) out[t++] = splitmix64(stepSeed, BigInt(r.row * rows.stride + (r.first ?? 0) + i));
  return out;
}

/**
 * The dropout options of a site seeded `seed` for x (tokens, cols) under `rows`: the seed mixed
 * with the step, and one segment per run at stream position (row * stride + first) * cols.
 */
export function rowDropoutOptions(seed: number, rows: DropoutRows, cols: number): DropoutOptions & { segments: DropoutSegment[] } {
  const segments: DropoutSegment[] = [];
  let start = 0;
  for (const r of rows.runs) {
    const offset = (r.row * rows.stride + (r.first ?? 0)) * cols;
    if (!Number.isSafeInteger((r.row + 1) * rows.stride * cols))
      throw new PatentGPTError('E_ARGUMENT', `dropout rows: row ${r.row} x stride ${rows.stride} x ${cols} columns passes 2^53 stream positions`);
    segments.push({ start, length: r.length * cols, offset });
    start += r.length * cols;
  }
  return { seed: mixBelow53(BigInt(seed), BigInt(rows.step)), segments };
}
