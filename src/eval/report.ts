// Reports of an evaluation run: a plain-text table for the screen, a markdown report and the
// JSON record (metrics, per-category metrics, per-question log-likelihoods, skipped rows).
import type { McTaskResult, Metrics } from './mc.js';
import type { SkippedRow } from './tasks.js';

export interface EvalRun {
  model: string;
  tasks: (McTaskResult & { skipped: SkippedRow[]; files: string[] })[];
  options: { shots: number; seed: number; limit: number | null; style: string; partialCredit: number };
  seconds: number;
}

const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(2) : '-');
const se = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(2) : '-');

function rows(run: EvalRun): string[][] {
  const out: string[][] = [];
  for (const t of run.tasks) {
    const line = (name: string, m: Metrics): string[] => [name, String(m.n), `${pct(m.acc)} ± ${se(m.acc_stderr)}`, `${pct(m.acc_norm)} ± ${se(m.acc_norm_stderr)}`, pct(m.score)];
    out.push(line(t.task, t.metrics));
    for (const [c, m] of Object.entries(t.byCategory)) out.push(line(`  ${c}`, m));
  }
  return out;
}

const HEAD = ['task / category', 'n', 'acc %', 'acc_norm %', 'score %'];

/** Display width: CJK and other wide characters count 2 columns. */
function width(s: string): number {
  let w = 0;
  for (const ch of s) w += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(ch) ? 2 : 1;
  return w;
}

export function formatTable(run: EvalRun): string {
  const all = [HEAD, ...rows(run)];
  const w = HEAD.map((_, j) => Math.max(...all.map((r) => width(r[j]!))));
  const fmt = (r: string[]): string => r.map((c, j) => (j === 0 ? c + ' '.repeat(w[j]! - width(c)) : ' '.repeat(w[j]! - width(c)) + c)).join('  ');
  return [fmt(HEAD), w.map((x) => '-'.repeat(x)).join('  '), ...rows(run).map(fmt)].join('\n');
}

export function formatMarkdown(run: EvalRun): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [
    `# Evaluation of ${esc(run.model)}`,
    '',
    `shots ${run.options.shots} · seed ${run.options.seed} · limit ${run.options.limit ?? 'none'} · prompt ${run.options.style} · partial credit ${run.options.partialCredit} · ${run.seconds.toFixed(1)} s`,
    '',
    `| ${HEAD.join(' | ')} |`,
    `|${HEAD.map((_, j) => (j === 0 ? '---' : '---:')).join('|')}|`,
    ...rows(run).map((r) => `| ${r.map((c, j) => (j === 0 && c.startsWith('  ') ? `&nbsp;&nbsp;${esc(c.trim())}` : esc(c))).join(' | ')} |`),
    '',
    'acc: the highest log-likelihood candidate is the gold answer (multi-answer: the exact set). acc_norm: the same with log-likelihoods divided by the candidate length in characters. score: acc with the partial-credit rule on multi-answer questions. ± is the standard error.',
  ];
  for (const t of run.tasks) {
    lines.push('', `## ${esc(t.task)}`, '', `Files: ${t.files.map((f) => `\`${f}\``).join(', ')}`, '', `Questions scored: ${t.metrics.n}; rows skipped: ${t.skipped.length}.`);
    if (t.skipped.length > 0) {
      lines.push('', '| file | row | reason | detail |', '|---|---:|---|---|');
      for (const s of t.skipped) lines.push(`| \`${s.file}\` | ${s.row} | ${s.reason} | ${esc(s.detail)} |`);
    }
  }
  return lines.join('\n') + '\n';
}
