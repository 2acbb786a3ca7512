// Reports of an evaluation run: plain-text tables for the screen (one per kind of task), a
// markdown report and the JSON record (metrics, per-category metrics, per-document results,
// skipped rows).
import type { GenMetrics, GenTaskResult } from './gen.js';
import type { McTaskResult, Metrics } from './mc.js';
import type { PplMetrics, PplTaskResult } from './perplexity.js';
import type { PhraseMetrics, PhraseTaskResult } from './phrase.js';
import type { SkippedRow } from './tasks.js';

type Extra = { skipped: SkippedRow[]; files: string[]; warnings?: string[]; /** Wall time of the task, loading excluded. */ seconds?: number };
export type TaskResult = (McTaskResult & Extra) | (GenTaskResult & Extra) | (PplTaskResult & Extra) | (PhraseTaskResult & Extra);

export interface EvalRun {
  model: string;
  tasks: TaskResult[];
  options: { shots: number; seed: number; limit: number | null; style: string; partialCredit: number };
  seconds: number;
  /** Peak resident memory of the process (getrusage maxrss) and the model's parameter bytes. */
  memory?: { peakRssBytes: number; weightBytes: number };
}

const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(2) : '-');
const num = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

interface Section<M> {
  head: string[];
  line: (m: M) => string[];
  note: string;
}

const MC: Section<Metrics> = {
  head: ['task / category', 'n', 'acc %', 'acc_norm %', 'score %'],
  line: (m) => [String(m.n), `${pct(m.acc)} ± ${pct(m.acc_stderr)}`, `${pct(m.acc_norm)} ± ${pct(m.acc_norm_stderr)}`, pct(m.score)],
  note: 'acc: the highest log-likelihood candidate is the gold answer (multi-answer: the exact set). acc_norm: the same with log-likelihoods divided by the candidate length in characters. score: acc with the partial-credit rule on multi-answer questions. ± is the standard error.',
};
const GEN: Section<GenMetrics> = {
  head: ['task / category', 'n', 'exact match %', 'F1 %', 'ROUGE-L %', 'BLEU'],
  line: (m) => [String(m.n), pct(m.exact_match), pct(m.f1), pct(m.rouge_l), num(m.bleu, 2)],
  note: 'Greedy completions. exact match and F1: SQuAD normalisation (CJK characters are tokens). ROUGE-L: rouge-score F1, mean over documents. BLEU: sacrebleu corpus BLEU (13a, or zh for Chinese references).',
};
const PPL: Section<PplMetrics> = {
  head: ['task / category', 'docs', 'tokens', 'perplexity', 'bits/byte'],
  line: (m) => [String(m.n), String(m.tokens), num(m.perplexity, 3), num(m.bits_per_byte, 4)],
  note: 'Perplexity: exp(-log-likelihood / tokens) over all tokens of the category (rolling windows of the model context, lm-eval loglikelihood_rolling). bits/byte: -log2-likelihood / UTF-8 bytes.',
};
const PHRASE: Section<PhraseMetrics> = {
  head: ['task / category', 'pairs', 'pearson r'],
  line: (m) => [String(m.n), num(m.pearson, 4)],
  note: 'Pearson r between the gold similarity and the model score: PMI of the target given the anchor, per target token, in the pair\'s CPC class.',
};

function sectionOf(t: TaskResult): Section<never> {
  const kind = 'kind' in t ? t.kind : 'mc';
  return (kind === 'generate' ? GEN : kind === 'perplexity' ? PPL : kind === 'phrase-matching' ? PHRASE : MC) as Section<never>;
}

/** The tasks grouped by kind, in first-seen order, with their table rows. */
function groups(run: EvalRun): { section: Section<never>; rows: string[][] }[] {
  const out: { section: Section<never>; rows: string[][] }[] = [];
  for (const t of run.tasks) {
    const section = sectionOf(t);
    let g = out.find((x) => x.section === section);
    if (!g) out.push((g = { section, rows: [] }));
    g.rows.push([t.task, ...section.line(t.metrics as never)]);
    const cats = Object.entries(t.byCategory);
    if (cats.length === 1 && cats[0]![0] === t.task) continue; // one category named as the task: the task row says it all
    for (const [c, m] of cats) g.rows.push([`  ${c}`, ...section.line(m as never)]);
  }
  return out;
}

/** Display width: CJK and other wide characters count 2 columns. */
function width(s: string): number {
  let w = 0;
  for (const ch of s) w += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(ch) ? 2 : 1;
  return w;
}

export function formatTable(run: EvalRun): string {
  return groups(run)
    .map(({ section, rows }) => {
      const all = [section.head, ...rows];
      const w = section.head.map((_, j) => Math.max(...all.map((r) => width(r[j]!))));
      const fmt = (r: string[]): string => r.map((c, j) => (j === 0 ? c + ' '.repeat(w[j]! - width(c)) : ' '.repeat(w[j]! - width(c)) + c)).join('  ');
      return [fmt(section.head), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map(fmt)].join('\n');
    })
    .join('\n\n');
}

export function formatMarkdown(run: EvalRun): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [
    `# Evaluation of ${esc(run.model)}`,
    '',
    `shots ${run.options.shots} · seed ${run.options.seed} · limit ${run.options.limit ?? 'none'} · prompt ${run.options.style} · partial credit ${run.options.partialCredit} · ${run.seconds.toFixed(1)} s`,
  ];
  if (run.memory) {
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;
    lines.push('', `Peak RSS ${mib(run.memory.peakRssBytes)}, ${(run.memory.peakRssBytes / run.memory.weightBytes).toFixed(2)}x the weights' ${mib(run.memory.weightBytes)}.`);
  }
  for (const { section, rows } of groups(run)) {
    lines.push(
      '',
      `| ${section.head.join(' | ')} |`,
      `|${section.head.map((_, j) => (j === 0 ? '---' : '---:')).join('|')}|`,
      ...rows.map((r) => `| ${r.map((c, j) => (j === 0 && c.startsWith('  ') ? `&nbsp;&nbsp;${esc(c.trim())}` : esc(c))).join(' | ')} |`),
      '',
      section.note,
    );
  }
  for (const t of run.tasks) {
    lines.push('', `## ${esc(t.task)}`, '', `Files: ${t.files.map((f) => `\`${f}\``).join(', ')}`, '', `Documents scored: ${t.metrics.n}; rows skipped: ${t.skipped.length}.`);
    for (const w of t.warnings ?? []) lines.push('', `Warning: ${esc(w)}`);
    if (t.skipped.length > 0) {
      lines.push('', '| file | row | reason | detail |', '|---|---:|---|---|');
      for (const s of t.skipped) lines.push(`| \`${s.file}\` | ${s.row} | ${s.reason} | ${esc(s.detail)} |`);
    }
  }
  return lines.join('\n') + '\n';
}
