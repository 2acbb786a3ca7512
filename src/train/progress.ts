// Progress of a long job: a bar redrawn in place on a terminal, JSON lines when the output is
// piped or logged (so a supervisor can parse it). The choice follows stream.isTTY unless forced.

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Steps to reach (the bar's 100%). */
  total: number;
  label?: string;
  /** Default process.stderr when it is a terminal, else process.stdout. */
  stream?: ProgressStream;
  /** Force bar (true) or JSON lines (false); default stream.isTTY. */
  tty?: boolean;
  /** Least time between two bar redraws; default 100 ms (JSON lines are never throttled). */
  minIntervalMs?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export type ProgressFields = Record<string, number | string | undefined>;

function formatValue(key: string, v: number | string): string {
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  if (key === 'lr' || (Math.abs(v) < 1e-3 && v !== 0)) return v.toExponential(2);
  if (Math.abs(v) >= 1e4) return `${(v / 1000).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 1 : 3);
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Progress {
  readonly total: number;
  readonly label: string;
  readonly tty: boolean;
  private readonly stream: ProgressStream;
  private readonly minInterval: number;
  private readonly now: () => number;
  private readonly start: number;
  private startStep: number | null = null;
  private lastDraw = -Infinity;
  private line = '';

  constructor(opts: ProgressOptions) {
    this.total = Math.max(0, opts.total);
    this.label = opts.label ?? '';
    this.stream = opts.stream ?? (process.stderr.isTTY ? process.stderr : process.stdout);
    this.tty = opts.tty ?? this.stream.isTTY === true;
    this.minInterval = opts.minIntervalMs ?? 100;
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
  }

  /** Reports that `step` of total is done, with fields to show (loss, lr, tok/s, ...). */
  update(step: number, fields: ProgressFields = {}): void {
    this.startStep ??= step > 0 ? step - 1 : 0;
    const t = this.now();
    const done = step - this.startStep;
    const rate = done > 0 ? done / ((t - this.start) / 1000) : Number.NaN;
    const eta = rate > 0 ? (this.total - step) / rate : Number.NaN;
    if (!this.tty) {
      const rec: Record<string, unknown> = { event: 'progress', label: this.label || undefined, step, total: this.total };
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) rec[k] = v;
      if (Number.isFinite(eta)) rec.etaSec = Math.round(eta);
      this.stream.write(JSON.stringify(rec) + '\n');
      return;
    }
    if (t - this.lastDraw < this.minInterval && step < this.total) return;
    this.lastDraw = t;
    const frac = this.total > 0 ? Math.min(1, step / this.total) : 1;
    const cols = this.stream.columns ?? 100;
    const info = Object.entries(fields)
      .filter((e): e is [string, number | string] => e[1] !== undefined)
      .map(([k, v]) => `${k} ${formatValue(k, v)}`)
      .join(' · ');
    const tail = ` ${String(Math.floor(frac * 100)).padStart(3)}% ${step}/${this.total}${info ? ' · ' + info : ''} · eta ${formatDuration(eta)}`;
    const head = this.label ? `${this.label} ` : '';
    const width = Math.max(10, Math.min(30, cols - head.length - tail.length - 2));
    const filled = Math.round(frac * width);
    this.line = `${head}[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]${tail}`.slice(0, Math.max(20, cols - 1));
    this.stream.write(`\r\x1b[2K${this.line}`);
  }

  /** A message that must not be overwritten by the bar (eval results, checkpoint saved, ...). */
  log(message: string, fields: ProgressFields = {}): void {
    if (!this.tty) {
      const rec: Record<string, unknown> = { event: 'log', message };
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) rec[k] = v;
      this.stream.write(JSON.stringify(rec) + '\n');
      return;
    }
    const extra = Object.entries(fields)
      .filter((e): e is [string, number | string] => e[1] !== undefined)
      .map(([k, v]) => `${k} ${formatValue(k, v)}`)
      .join(' · ');
    this.stream.write(`\r\x1b[2K${message}${extra ? ' · ' + extra : ''}\n`);
    if (this.line) this.stream.write(this.line);
  }

  /** Ends the bar (newline on a terminal; a final JSON line otherwise). */
  done(fields: ProgressFields = {}): void {
    const elapsedSec = (this.now() - this.start) / 1000;
    if (!this.tty) {
      const rec: Record<string, unknown> = { event: 'done', label: this.label || undefined, elapsedSec: Number(elapsedSec.toFixed(3)) };
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) rec[k] = v;
      this.stream.write(JSON.stringify(rec) + '\n');
      return;
    }
    this.stream.write(`${this.line ? '\n' : ''}done in ${formatDuration(elapsedSec)}\n`);
    this.line = '';
  }
}
