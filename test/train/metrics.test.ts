// Metrics log (JSON lines, torn last line skipped, cut back on resume), the SVG report, and the
// progress reporter (bar on a terminal, JSON lines when piped).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetricsLog, Throughput, mfu, perplexity, readMetrics } from '../../src/train/metrics.js';
import { niceTicks, renderReportSvg, writeReport } from '../../src/train/plot.js';
import { Progress, formatDuration } from '../../src/train/progress.js';

let run: string;
beforeEach(() => {
  run = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-metrics-'));
});
afterEach(() => fs.rmSync(run, { recursive: true, force: true }));

describe('MetricsLog', () => {
  it('appends one JSON object per line and reads them back', () => {
    const log = MetricsLog.open(run);
    for (let s = 1; s <= 5; s++) log.append({ step: s, loss: 5 - s * 0.5, lr: 1e-3, gradNorm: 1, tokensPerSec: 1000, mfu: 0.3 });
    log.append({ step: 5, valLoss: 2.5, valPerplexity: perplexity(2.5) });
    log.append({ step: 6, loss: Number.NaN });
    log.close();
    const lines = fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(lines.length).toBe(7);
    const recs = readMetrics(path.join(run, 'metrics.jsonl'));
    expect(recs[4]).toEqual({ step: 5, loss: 2.5, lr: 1e-3, gradNorm: 1, tokensPerSec: 1000, mfu: 0.3 });
    expect(recs[5]!.valPerplexity).toBeCloseTo(Math.exp(2.5), 12);
    expect(recs[6]!.loss).toBeNull();
  });

  it('skips a torn last line and cuts back to the resume step', () => {
    const file = path.join(run, 'metrics.jsonl');
    let log = MetricsLog.open(run);
    for (let s = 1; s <= 8; s++) log.append({ step: s, loss: s });
    log.close();
    fs.appendFileSync(file, '{"step": 9, "lo'); // killed mid-write
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    log = MetricsLog.open(run, { resumeStep: 6 });
    log.append({ step: 7, loss: 70 });
    log.close();
    expect(readMetrics(file).map((r) => [r.step, r.loss])).toEqual([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6], [7, 70]]);
    // a fresh run replaces the log; another rank writes nothing
    MetricsLog.open(run).close();
    expect(readMetrics(file)).toEqual([]);
    const r1 = MetricsLog.open(run, { rank: 1 });
    r1.append({ step: 1 });
    r1.close();
    expect(readMetrics(file)).toEqual([]);
  });

  it('refuses a corrupt line in the middle', () => {
    const file = path.join(run, 'metrics.jsonl');
    fs.writeFileSync(file, '{"step":1}\nnot json\n{"step":2}\n');
    expect(() => readMetrics(file)).toThrow(/line 2/);
  });

  it('computes MFU and throughput', () => {
    expect(mfu(6e9, 100, 1.2e12)).toBeCloseTo(0.5, 12);
    let t = 0;
    const tp = new Throughput(2, () => t);
    expect(tp.mark(0)).toBeNaN();
    t = 1000;
    expect(tp.mark(500)).toBe(500);
    t = 2000;
    expect(tp.mark(1500)).toBe(750);
    t = 3000;
    expect(tp.mark(2000)).toBe(750); // window of 2 steps: (2000 - 500) / 2 s
  });
});

describe('report.svg', () => {
  it('draws train and validation loss and the LR as a standalone SVG', async () => {
    const log = MetricsLog.open(run);
    for (let s = 1; s <= 50; s++) {
      log.append({ step: s, loss: 6 * Math.exp(-s / 15) + 1, lr: 1e-3 * Math.min(1, s / 5) });
      if (s % 10 === 0) log.append({ step: s, valLoss: 6 * Math.exp(-s / 15) + 1.2 });
    }
    log.close();
    const file = await writeReport(run, { title: 'tiny <stage 1>' });
    const svg = fs.readFileSync(file, 'utf8');
    expect(svg.startsWith('<?xml')).toBe(true);
    expect(svg).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(svg).toContain('tiny &lt;stage 1&gt;');
    expect(svg.match(/<path /g)!.length).toBe(3); // train loss, val loss, lr
    expect(svg.match(/<circle /g)!.length).toBe(5); // val points
    expect(svg).toContain('val loss');
    expect(svg).toContain('learning rate');
    expect(svg).not.toMatch(/NaN|undefined/);
    // balanced tags (well-formed enough for a browser or an image viewer)
    const open = (svg.match(/<(svg|g|text|style)[\s>]/g) ?? []).length;
    const close = (svg.match(/<\/(svg|g|text|style)>/g) ?? []).length;
    expect(open).toBe(close);
  });

  it('renders an empty or single-point run without NaN', () => {
    for (const recs of [[], [{ step: 0, loss: 3, lr: 0.1 }]]) {
      const svg = renderReportSvg(recs);
      expect(svg).not.toMatch(/NaN|Infinity/);
    }
    expect(renderReportSvg([])).toContain('no data yet');
  });

  it('picks round ticks', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(0.13, 0.87, 4)).toEqual([0.2, 0.4, 0.6, 0.8]);
  });

  it('draws a series flat to the last bits of its values (a report of a tiny run used to throw RangeError)', () => {
    expect(niceTicks(5.131196, 5.131196 + 1e-15)).toEqual([5.131196]);
    const svg = renderReportSvg([{ step: 1, valLoss: 5.131196498870850 }, { step: 2, valLoss: 5.131196498870851 }]);
    expect(svg).toContain('<svg');
  });
});

describe('Progress', () => {
  const sink = (isTTY: boolean): { out: string[]; write(s: string): boolean; isTTY: boolean; columns: number } => {
    const out: string[] = [];
    return { out, write: (s: string) => (out.push(s), true), isTTY, columns: 120 };
  };

  it('prints JSON lines when piped', () => {
    const s = sink(false);
    let t = 0;
    const p = new Progress({ total: 10, label: 'stage1', stream: s, now: () => t });
    for (let k = 1; k <= 3; k++) {
      t += 1000;
      p.update(k, { loss: 3.2, lr: 1e-4 });
    }
    p.log('checkpoint saved', { step: 3 });
    p.done({ step: 3 });
    const recs = s.out.join('').trim().split('\n').map((l) => JSON.parse(l));
    expect(recs[0]).toMatchObject({ event: 'progress', label: 'stage1', step: 1, total: 10, loss: 3.2 });
    expect(recs[2].etaSec).toBe(7);
    expect(recs[3]).toEqual({ event: 'log', message: 'checkpoint saved', step: 3 });
    expect(recs[4]).toMatchObject({ event: 'done', step: 3 });
  });

  it('draws a bar in place on a terminal, throttled, and keeps log lines', () => {
    const s = sink(true);
    let t = 0;
    const p = new Progress({ total: 4, stream: s, now: () => t, minIntervalMs: 100 });
    p.update(1, { loss: 2.5 });
    t += 10;
    p.update(2, { loss: 2.4 }); // throttled
    t += 200;
    p.update(2, { loss: 2.4 });
    p.log('eval', { valLoss: 2.3 });
    t += 10;
    p.update(4, { loss: 2.0 }); // the last step always draws
    p.done();
    const text = s.out.join('');
    expect(s.out.filter((c) => c.startsWith('\r\x1b[2K[')).length).toBe(3);
    expect(text).toContain('[###############---------------]  50% 2/4 · loss 2.400');
    expect(text).toContain('100% 4/4');
    expect(text).toContain('eval · valLoss 2.300\n');
    expect(text.endsWith('\n')).toBe(true);
    expect(formatDuration(3725)).toBe('1h02m');
  });
});
