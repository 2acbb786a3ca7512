// A standalone SVG report of a run (no browser, no libraries): training and validation loss
// against step, the learning rate against step, and for a mixture of experts the per-layer
// expert load (max / mean tokens per expert, 1 = balanced), drawn from the metrics records.
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { METRICS_FILE, readMetrics, type MetricRecord } from './metrics.js';

export const REPORT_FILE = 'report.svg';

interface Series {
  label: string;
  color: string;
  points: [number, number][];
  /** Draw dots at the points (sparse series such as validation). */
  dots?: boolean;
}

const W = 860;
const PANEL_H = 250;
const M = { left: 74, right: 24, top: 44, bottom: 40 };

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  // A range lost in the rounding of its values (a loss flat to 1e-15) has one tick: stepping
  // through it would take ~1e15 steps of a size its values cannot resolve.
  if (!(hi - lo > Math.max(Math.abs(lo), Math.abs(hi)) * 1e-9)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9 && out.length <= 2 * count + 2; k++) out.push(k === 0 ? 0 : Number((k * step).toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-2) return v.toExponential(1).replace('e+', 'e');
  return Number(v.toPrecision(3)).toString();
}

function panel(title: string, series: Series[], top: number): string {
  const x0 = M.left;
  const x1 = W - M.right;
  const y0 = top + M.top;
  const y1 = top + PANEL_H - M.bottom;
  const all = series.flatMap((s) => s.points);
  const parts: string[] = [`<text x="${x0}" y="${top + 26}" class="title">${escapeXml(title)}</text>`];
  parts.push(`<rect x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" class="frame"/>`);
  if (all.length === 0) {
    parts.push(`<text x="${(x0 + x1) / 2}" y="${(y0 + y1) / 2}" class="empty" text-anchor="middle">no data yet</text>`);
    return parts.join('\n');
  }
  let xmin = Math.min(...all.map((p) => p[0]));
  let xmax = Math.max(...all.map((p) => p[0]));
  let ymin = Math.min(...all.map((p) => p[1]));
  let ymax = Math.max(...all.map((p) => p[1]));
  if (xmax === xmin) xmax = xmin + 1;
  if (!(ymax - ymin > Math.max(Math.abs(ymin), Math.abs(ymax)) * 1e-9)) {
    const pad = Math.abs(ymin) * 0.05 || 1;
    ymin -= pad;
    ymax += pad;
  } else {
    const pad = (ymax - ymin) * 0.05;
    ymin -= pad;
    ymax += pad;
  }
  xmin = Math.min(xmin, 0);
  const sx = (x: number): number => x0 + ((x - xmin) / (xmax - xmin)) * (x1 - x0);
  const sy = (y: number): number => y1 - ((y - ymin) / (ymax - ymin)) * (y1 - y0);
  for (const t of niceTicks(ymin, ymax)) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${x0}" x2="${x1}" y1="${y}" y2="${y}" class="grid"/><text x="${x0 - 6}" y="${y}" class="tick" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(xmin, xmax, 8)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${y0}" y2="${y1}" class="grid"/><text x="${x}" y="${y1 + 16}" class="tick" text-anchor="middle">${fmt(t)}</text>`);
  }
  parts.push(`<text x="${(x0 + x1) / 2}" y="${y1 + 32}" class="axis" text-anchor="middle">step</text>`);
  let lx = x1 - 8;
  for (const s of [...series].reverse()) {
    if (s.points.length === 0) continue;
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"/>`);
    if (s.dots) for (const p of s.points) parts.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.6" fill="${s.color}"/>`);
    const w = 12 + 7 * s.label.length;
    lx -= w;
    parts.push(`<rect x="${lx}" y="${top + 17}" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="${top + 26}" class="legend">${escapeXml(s.label)}</text>`);
    lx -= 12;
  }
  return parts.join('\n');
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** The metric the SMoE layer reports per layer (src/nn/moe.ts), grouped by layer in metrics.jsonl. */
const EXPERT_LOAD = 'expert_load_max_over_mean';
const LAYER_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

/**
 * The expert-load series: one per layer while they fit a legend, else the max and the mean over
 * layers at each step. Empty for a dense run (no record has the per-layer metric).
 */
function expertLoadSeries(records: readonly MetricRecord[]): Series[] {
  const rows: [number, [string, number][]][] = [];
  for (const r of records) {
    const v = r[EXPERT_LOAD];
    if (v === null || typeof v !== 'object') continue;
    const byLayer = Object.entries(v).filter((e): e is [string, number] => finite(e[1]));
    if (byLayer.length) rows.push([r.step, byLayer]);
  }
  const layers = [...new Set(rows.flatMap(([, l]) => l.map(([k]) => k)))].sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  if (layers.length <= LAYER_COLORS.length)
    return layers.map((layer, i) => ({
      label: `layer ${layer}`, color: LAYER_COLORS[i]!,
      points: rows.flatMap(([step, l]) => l.filter(([k]) => k === layer).map(([, y]): [number, number] => [step, y])),
    }));
  const over = (f: (ys: number[]) => number): [number, number][] => rows.map(([step, l]) => [step, f(l.map(([, y]) => y))]);
  return [
    { label: `max over ${layers.length} layers`, color: '#d62728', points: over((ys) => Math.max(...ys)) },
    { label: 'mean over layers', color: '#1f77b4', points: over((ys) => ys.reduce((a, b) => a + b, 0) / ys.length) },
  ];
}

/**
 * The alignment stages' panels, drawn when their metrics are in the records: [title, [metric,
 * label, color]] (validation series as dots). PPO (src/train/stages/ppo.ts), DPO (TRL's names,
 * src/train/stages/dpo.ts) and the reward model (src/train/stages/reward.ts).
 */
const ALIGNMENT_PANELS: [string, [string, string, string][]][] = [
  ['Reward and KL to the reference (PPO)', [['reward', 'reward', '#2ca02c'], ['kl', 'KL', '#9467bd'], ['rlhfReward', 'reward - coef x KL', '#1f77b4']]],
  ['Implicit rewards (DPO)', [
    ['rewards/chosen', 'chosen', '#2ca02c'], ['rewards/rejected', 'rejected', '#d62728'], ['rewards/margins', 'margin', '#1f77b4'],
    ['val.rewards/margins', 'val margin', '#9467bd'],
  ]],
  ['Preference accuracy', [
    ['rewards/accuracies', 'train (DPO)', '#1f77b4'], ['val.rewards/accuracies', 'val (DPO)', '#d62728'],
    ['accuracy', 'train (reward model)', '#2ca02c'], ['val.accuracy', 'val (reward model)', '#ff7f0e'],
  ]],
];

/** The report as an SVG document: loss (train, validation), learning rate and, when their metrics are there, expert load (SMoE) and the alignment stages' rewards, KL and accuracy against step. */
export function renderReportSvg(records: readonly MetricRecord[], opts: { title?: string } = {}): string {
  const pick = (key: string): [number, number][] => records.filter((r) => finite(r[key])).map((r) => [r.step, r[key] as number]);
  const loss: Series[] = [
    { label: 'train loss', color: '#1f77b4', points: pick('loss') },
    { label: 'val loss', color: '#d62728', points: pick('valLoss'), dots: true },
  ];
  const lr: Series[] = [{ label: 'learning rate', color: '#2ca02c', points: pick('lr') }];
  const last = records.length ? records[records.length - 1]! : undefined;
  const subtitle = last
    ? `step ${last.step}` + (finite(last.loss) ? ` · loss ${fmt(last.loss)}` : '') + (finite(last.tokensPerSec) ? ` · ${fmt(last.tokensPerSec)} tok/s` : '')
    : 'no records';
  const panels = [panel('Loss', loss, 0), panel('Learning rate', lr, PANEL_H)];
  const optional: [string, Series[]][] = [
    ['Expert load (max / mean tokens per expert, 1 = balanced)', expertLoadSeries(records)],
    ...ALIGNMENT_PANELS.map(([title, keys]): [string, Series[]] => [title, keys.map(([key, label, color]) => ({
      label, color, points: pick(key), dots: key.startsWith('val.'),
    }))]),
  ];
  for (const [title, series] of optional)
    if (series.some((x) => x.points.length)) panels.push(panel(title, series.filter((x) => x.points.length), panels.length * PANEL_H));
  const H = panels.length * PANEL_H + 40;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
    `<style>.title{font-size:15px;font-weight:bold}.tick{font-size:11px;fill:#555}.axis{font-size:12px;fill:#333}.legend{font-size:12px}.grid{stroke:#e6e6e6}.frame{fill:none;stroke:#999}.empty{font-size:13px;fill:#888}.sub{font-size:12px;fill:#555}</style>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${M.left}" y="22" class="title">${escapeXml(opts.title ?? 'training report')}</text>`,
    `<text x="${W - M.right}" y="22" class="sub" text-anchor="end">${escapeXml(subtitle)}</text>`,
    `<g transform="translate(0, 20)">`,
    ...panels,
    `</g>`,
    `</svg>`,
    '',
  ].join('\n');
}

/** Reads runs/<name>/metrics.jsonl and writes runs/<name>/report.svg atomically; returns its path. */
export async function writeReport(runDir: string, opts: { title?: string; records?: readonly MetricRecord[] } = {}): Promise<string> {
  const records = opts.records ?? readMetrics(path.join(runDir, METRICS_FILE));
  const file = path.join(runDir, REPORT_FILE);
  await writeFileAtomic(file, renderReportSvg(records, { title: opts.title ?? path.basename(runDir) }));
  return file;
}
