// Training metrics as JSON lines: runs/<name>/metrics.jsonl, one object per logged step.
// Each record is one write() of one whole line to a file opened for append, so a crash leaves
// at most a partial last line, which readers skip. On resume the log is cut back to the
// checkpoint's step (atomically), so a resumed run's log reads like an uninterrupted one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { writeFileAtomicSync } from '../util/atomic.js';

export interface MetricRecord {
  /** Optimizer updates done when the record was taken. */
  step: number;
  /** Training loss (mean over the step's target tokens). */
  loss?: number;
  lr?: number;
  /** Global gradient norm before clipping. */
  gradNorm?: number;
  /** Tokens trained per second (all ranks) over the logging window. */
  tokensPerSec?: number;
  /** Model FLOPs utilisation: achieved / peak FLOP/s. */
  mfu?: number;
  /** Tokens trained so far. */
  tokens?: number;
  valLoss?: number;
  valPerplexity?: number;
  /** Seconds since the run (or resumed run) started. */
  elapsedSec?: number;
  /** Anything else the loop logs: numbers, short strings, or a task's per-layer records. */
  [key: string]: number | string | Readonly<Record<string, number>> | undefined;
}

/** A metric a task reports: a number, or a record of numbers (per layer, per expert). */
export type MetricValue = number | Readonly<Record<string, number>>;
/** What a task's loss reports for one micro-batch, by name. */
export type StepMetrics = Readonly<Record<string, MetricValue>>;

interface Mean {
  sum: number;
  n: number;
}

/**
 * Means of reported metrics over the micro-batches (or evaluation batches) that reported each
 * name (and each key of a record). clear() keeps the accumulators, so a step that reports the
 * same names as the last allocates nothing.
 */
export class MetricMeans {
  readonly #scalars = new Map<string, Mean>();
  readonly #records = new Map<string, Map<string, Mean>>();

  add(metrics: StepMetrics): void {
    for (const name in metrics) {
      const v = metrics[name]!;
      if (typeof v === 'number') {
        let m = this.#scalars.get(name);
        if (!m) this.#scalars.set(name, (m = { sum: 0, n: 0 }));
        m.sum += v;
        m.n++;
      } else {
        let r = this.#records.get(name);
        if (!r) this.#records.set(name, (r = new Map()));
        for (const k in v) {
          let m = r.get(k);
          if (!m) r.set(k, (m = { sum: 0, n: 0 }));
          m.sum += v[k]!;
          m.n++;
        }
      }
    }
  }

  clear(): void {
    for (const m of this.#scalars.values()) m.sum = m.n = 0;
    for (const r of this.#records.values()) for (const m of r.values()) m.sum = m.n = 0;
  }

  /** The accumulators that reported this round (n > 0), in an order that depends only on their names. */
  #reported(): { key: string; mean: Mean }[] {
    const out: { key: string; mean: Mean }[] = [];
    for (const [name, m] of this.#scalars) if (m.n > 0) out.push({ key: `s:${name}`, mean: m });
    for (const [name, r] of this.#records) for (const [k, m] of r) if (m.n > 0) out.push({ key: `r:${name}\u0000${k}`, mean: m });
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * Data parallel, step 1 of 2: numbers whose sums over the ranks tell (sameNamesOnAllRanks)
   * whether every rank reported the same names; the rank's count of reported entries is among
   * them, so ranks that agree call sum() on arrays of one length (step 2: totals()).
   */
  nameSignature(): number[] {
    const keys = this.#reported().map((e) => e.key);
    let h = 0x811c9dc5; // FNV-1a over the sorted names
    for (const key of keys)
      for (let i = 0; i <= key.length; i++) {
        h ^= i < key.length ? key.charCodeAt(i) : 0x1f;
        h = Math.imul(h, 0x01000193) >>> 0;
      }
    const hi = h >>> 16, lo = h & 0xffff, n = keys.length;
    return [hi, hi * hi, lo, lo * lo, n, n * n];
  }

  /**
   * Whether every one of `worldSize` ranks holds this rank's signature, from the sums of the ranks'
   * nameSignature(): a value x equals on all ranks exactly when sum(x) = N x and sum(x^2) = N x^2
   * (then the spread is 0), so every rank reaches the same verdict. Exact in float64 below 2^21 ranks.
   */
  static sameNamesOnAllRanks(own: readonly number[], sums: readonly number[], worldSize: number): boolean {
    return own.length === sums.length && own.every((x, i) => sums[i] === worldSize * x);
  }

  /** Step 2: each reported entry's sum and count, [sum0, n0, sum1, n1, ...] in the signature's order. */
  totals(): number[] {
    return this.#reported().flatMap((e) => [e.mean.sum, e.mean.n]);
  }

  /** Replaces each reported entry's sum and count by `totals` (the sums over the ranks of totals()). */
  setTotals(totals: readonly number[]): void {
    const entries = this.#reported();
    if (totals.length !== 2 * entries.length)
      throw new PatentGPTError('E_INTERNAL', `metrics: ${totals.length} totals for ${entries.length} reported metrics`);
    entries.forEach((e, i) => {
      e.mean.sum = totals[2 * i]!;
      e.mean.n = totals[2 * i + 1]!;
    });
  }

  /**
   * Writes each mean into rec under prefix + name; a name the record already holds (loss, lr,
   * step, ...) is refused: the task's metric would hide the loop's.
   */
  writeTo(rec: MetricRecord, prefix = ''): void {
    const put = (name: string, v: MetricValue): void => {
      const key = prefix + name;
      if (key in rec)
        throw new PatentGPTError('E_ARGUMENT', `metrics: the task reports "${name}", which the training loop writes itself (${Object.keys(rec).join(', ')}); give the metric another name`);
      rec[key] = v;
    };
    for (const [name, m] of this.#scalars) if (m.n > 0) put(name, m.sum / m.n);
    for (const [name, r] of this.#records) {
      let out: Record<string, number> | null = null;
      for (const [k, m] of r) if (m.n > 0) (out ??= {})[k] = m.sum / m.n;
      if (out) put(name, out);
    }
  }
}

export const METRICS_FILE = 'metrics.jsonl';

/** exp(loss), the perplexity of a mean token cross-entropy in nats. */
export function perplexity(loss: number): number {
  return Math.exp(loss);
}

/**
 * Model FLOPs utilisation: (flops per token x tokens per second) / peak FLOP/s. flopsPerToken is
 * the training cost (about 6 x parameters + attention, from the model's FLOPs count).
 */
export function mfu(flopsPerToken: number, tokensPerSec: number, peakFlopsPerSec: number): number {
  if (!(peakFlopsPerSec > 0)) return Number.NaN;
  return (flopsPerToken * tokensPerSec) / peakFlopsPerSec;
}

/** Reads a metrics file: every complete, parseable line (a torn last line is skipped). */
export function readMetrics(file: string): MetricRecord[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const out: MetricRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      const r = JSON.parse(line) as MetricRecord;
      if (typeof r === 'object' && r !== null && typeof r.step === 'number') out.push(r);
    } catch (err) {
      if (i === lines.length - 1) return; // torn final line from a crash
      throw new PatentGPTError('E_IO', `${file}: line ${i + 1} is not JSON (${(err as Error).message})`);
    }
  });
  return out;
}

export interface MetricsLogOptions {
  /**
   * Resuming from a checkpoint at this step: records after it (written by the run that was
   * interrupted) are dropped. Undefined: a fresh run, any existing log is replaced.
   */
  resumeStep?: number;
  /** Only rank 0 writes; other ranks get a log that drops records. Default 0. */
  rank?: number;
}

export class MetricsLog {
  readonly file: string;
  private fd: number | null;

  private constructor(file: string, fd: number | null) {
    this.file = file;
    this.fd = fd;
  }

  /** Opens runs/<name>/metrics.jsonl (pass the run folder or the file). */
  static open(runDirOrFile: string, opts: MetricsLogOptions = {}): MetricsLog {
    const file = runDirOrFile.endsWith('.jsonl') ? runDirOrFile : path.join(runDirOrFile, METRICS_FILE);
    if ((opts.rank ?? 0) !== 0) return new MetricsLog(file, null);
    const kept = opts.resumeStep === undefined ? [] : readMetrics(file).filter((r) => r.step <= opts.resumeStep!);
    writeFileAtomicSync(file, kept.map((r) => JSON.stringify(r) + '\n').join(''));
    return new MetricsLog(file, fs.openSync(file, 'a'));
  }

  /** Appends one record as one line (non-finite numbers are written as null). */
  append(record: MetricRecord): void {
    if (this.fd === null) return;
    const line = Buffer.from(JSON.stringify(record) + '\n', 'utf8');
    let done = 0;
    try {
      while (done < line.byteLength) done += fs.writeSync(this.fd, line, done, line.byteLength - done);
    } catch (err) {
      throw this.ioError(err, `cannot append the record of step ${record.step}`);
    }
  }

  /** fsync: the records so far survive a power cut (call at checkpoints). */
  sync(): void {
    if (this.fd === null) return;
    try {
      fs.fsyncSync(this.fd);
    } catch (err) {
      throw this.ioError(err, 'cannot flush the log to disk');
    }
  }

  close(): void {
    const fd = this.fd;
    this.fd = null;
    if (fd === null) return;
    try {
      fs.fsyncSync(fd);
    } catch (err) {
      throw this.ioError(err, 'cannot flush the log to disk');
    } finally {
      fs.closeSync(fd);
    }
  }

  /** A write error (ENOSPC, EFBIG, EIO ...) as E_IO naming the log. */
  private ioError(err: unknown, what: string): PatentGPTError {
    const e = err as NodeJS.ErrnoException;
    return new PatentGPTError('E_IO',
      `${this.file}: ${what} (${e.code ?? 'error'}: ${e.message}); free space (or fix the file system) and run the same command again to resume from the last checkpoint`);
  }

  /** Every record written so far (reads the file). */
  records(): MetricRecord[] {
    return readMetrics(this.file);
  }
}

/** Tokens per second over a sliding window of recent steps. */
export class Throughput {
  private readonly window: number;
  private marks: { t: number; tokens: number }[] = [];

  constructor(window = 10, private readonly now: () => number = () => performance.now()) {
    this.window = window;
  }

  /** Call once at the start and after each step with the running token count; returns tokens/s (NaN until two marks). */
  mark(totalTokens: number): number {
    this.marks.push({ t: this.now(), tokens: totalTokens });
    if (this.marks.length > this.window + 1) this.marks.shift();
    if (this.marks.length < 2) return Number.NaN;
    const a = this.marks[0]!;
    const b = this.marks[this.marks.length - 1]!;
    return b.t > a.t ? ((b.tokens - a.tokens) * 1000) / (b.t - a.t) : Number.NaN;
  }
}
