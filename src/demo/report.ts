// report.html of the demo: one self-contained page (no server, no script, no external file) with
// what each step did. The curves are the run folders' own report.svg files, inlined as they are
// (loss and validation loss, LR, expert load, PPO reward and KL, DPO rewards); the tables come from
// the steps' markers and the runs' metrics.jsonl. Every panel carries data-panel="..." so a test
// (or a reader's script) can find it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import type { DemoBudget } from './budget.js';
import { MC_TASKS, PPL_TASK, type ChatTurn, type StageEval } from './evaluate.js';

const esc = (s: unknown): string => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (x: unknown, d = 3): string => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '–');
const pct = (x: unknown): string => (typeof x === 'number' && Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '–');

/** The run's train and validation loss at its end (train: mean of the last 10 logged steps). */
export function runLosses(runDir: string): { trainLoss: number | null; valLoss: number | null; steps: number } {
  let lines: string[] = [];
  try {
    lines = fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l);
  } catch {
    return { trainLoss: null, valLoss: null, steps: 0 };
  }
  const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const train = recs.filter((r) => typeof r.loss === 'number').map((r) => r.loss as number).slice(-10);
  const val = recs.filter((r) => typeof r.valLoss === 'number');
  const steps = recs.reduce((m, r) => Math.max(m, typeof r.step === 'number' ? r.step : 0), 0);
  return { trainLoss: train.length ? train.reduce((a, b) => a + b, 0) / train.length : null, valLoss: val.length ? (val[val.length - 1]!.valLoss as number) : null, steps };
}

/** A run folder's report.svg without its XML declaration, to sit inside HTML. */
function inlineSvg(runDir: string): string | null {
  try {
    return fs.readFileSync(path.join(runDir, 'report.svg'), 'utf8').replace(/^<\?xml[^>]*>\s*/, '');
  } catch {
    return null;
  }
}

const STAGE_TEXT: Record<string, string> = {
  stage1: 'Stage 1 pretraining: the prepared corpus (patents, Title 35) at a short context.',
  moe: 'The SMoE variant of stage 1: each layer\'s feed-forward split into 4 experts, top-2 routing; the expert-load panel shows how evenly the router spreads tokens (1 = balanced).',
  stage2: 'Stage 2 pretraining: from stage 1, the context extended 4x with a larger RoPE base.',
  sft: 'Supervised fine-tuning on the bundled instructions; the loss is on the answers only.',
  reward: 'Reward model: real abstracts preferred over scrambled or off-topic ones (Bradley-Terry); accuracy on held-out pairs.',
  ppo: 'PPO: rollouts of the SFT policy scored by the reward model, KL to the frozen SFT model.',
  dpo: 'DPO: the SFT model trained directly on the preference pairs against its frozen self.',
};

export interface ReportInput {
  steps: string[];
  results: Record<string, Record<string, unknown>>;
  budget: DemoBudget;
  align: 'ppo' | 'dpo';
}

export function renderReport(input: ReportInput): string {
  const { results: r, steps } = input;
  const parts: string[] = [];
  const panel = (id: string, title: string, body: string): void => {
    parts.push(`<section data-panel="${esc(id)}"><h2>${esc(title)}</h2>${body}</section>`);
  };

  // Data
  const pt = r['prep-text'];
  if (pt) {
    const d = pt.documents as { in: number; kept: number; dropped: Record<string, number> };
    const dup = pt.duplicates as { exact: number; near: number; clusters: number };
    const fq = (pt.filterQuality ?? {}) as Record<string, { junk: { in: number; kept: number } }>;
    const junkRows = Object.entries(fq).map(([c, q]) => `<tr><td>${esc(c)}</td><td>${q.junk.in}</td><td>${q.junk.in - q.junk.kept}</td></tr>`).join('');
    const p = r.prep;
    panel('data', 'Data preparation', `<p>Bundled public-domain patents and sections of 35 U.S.C., the package's sample corpus and generated junk, through <code>data prep</code>: quality filters, exact and MinHash near-duplicate removal. ${p ? `${p.heldOut} held-out patents survived the dedup against everything else; they are never trained on and give the perplexity task.` : ''}</p>
<table data-table="prep"><tr><th>documents in</th><th>kept</th><th>exact duplicates</th><th>near duplicates</th></tr><tr><td>${d.in}</td><td>${d.kept}</td><td>${dup.exact}</td><td>${dup.near} (${dup.clusters} clusters)</td></tr></table>
<table data-table="dropped"><tr><th>dropped because</th><th>documents</th></tr>${Object.entries(d.dropped).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v}</td></tr>`).join('')}</table>
${junkRows ? `<table data-table="junk"><tr><th>junk category</th><th>junk in</th><th>dropped</th></tr>${junkRows}</table>` : ''}
${p ? `<table data-table="shards"><tr><th>shard set</th><th>tokens (merged tokenizer)</th></tr>${Object.entries(p.stages as Record<string, number>).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v}</td></tr>`).join('')}</table>` : ''}`);
  }

  // Tokenizer
  const tk = r.tokenizer as { vocab: Record<string, number>; charsPerToken: Record<string, number>; heldOutLines: number } | undefined;
  if (tk) {
    panel('tokenizer', 'Tokenizer: characters per token before and after the merge', `<p>A general BPE vocabulary (trained on all the cleaned text, standing in for LLaMA-2's) extended with pieces of a vocabulary trained on the patents alone, as the paper extends LLaMA-2's 32,000 pieces to 55,296. Measured on ${tk.heldOutLines} held-out lines of patent text (1 in 10, in neither training).</p>
<table data-table="tokenizer"><tr><th>tokenizer</th><th>vocabulary</th><th>characters per token</th></tr>
<tr><td>bytes (before any tokenizer)</td><td>259</td><td>${fmt(tk.charsPerToken.byte)}</td></tr>
<tr><td>general (before the merge)</td><td>${tk.vocab.base}</td><td>${fmt(tk.charsPerToken.base)}</td></tr>
<tr><td>merged (general + ${tk.vocab.added} domain pieces)</td><td>${tk.vocab.merged}</td><td>${fmt(tk.charsPerToken.merged)}</td></tr></table>`);
  }

  // Training stages: their own report.svg, and train vs validation loss at the end.
  const lossRows: string[] = [];
  for (const st of ['stage1', 'moe', 'stage2', 'sft', 'reward', input.align]) {
    const res = r[st];
    if (!res || !steps.includes(st) || typeof res.runDir !== 'string') continue;
    const dir = res.runDir as string;
    const l = runLosses(dir);
    lossRows.push(`<tr><td>${esc(st)}</td><td>${l.steps}</td><td>${fmt(l.trainLoss)}</td><td>${fmt(l.valLoss)}</td><td>${l.trainLoss !== null && l.valLoss !== null ? fmt(l.valLoss - l.trainLoss) : '–'}</td></tr>`);
    const svg = inlineSvg(dir);
    panel(`run-${st}`, `${st}: curves`, `<p>${esc(STAGE_TEXT[st] ?? '')} Run folder: <code>${esc(path.basename(dir))}</code>.</p>${svg ? `<figure data-figure="${esc(st)}">${svg}</figure>` : '<p class="missing">report.svg missing</p>'}`);
  }
  if (lossRows.length)
    panel('losses', 'Training against validation loss', `<p>Validation text is held out by document (after the dedup, every document appears once), so a gap that grows means memorising.</p><table data-table="losses"><tr><th>stage</th><th>steps</th><th>train loss (last 10 steps)</th><th>validation loss</th><th>gap</th></tr>${lossRows.join('')}</table>`);

  // Evaluation per stage
  const evals = steps.filter((s) => s.startsWith('eval-') && Array.isArray(r[s]?.tasks)).map((s) => r[s] as unknown as StageEval);
  if (evals.length) {
    const head = `<tr><th>after</th>${MC_TASKS.map((t) => `<th>${esc(t.name)} acc</th><th>acc_norm</th>`).join('')}<th>${PPL_TASK} perplexity</th><th>bits/byte</th></tr>`;
    const chanceRow = `<tr class="chance"><td>chance</td>${MC_TASKS.map((t) => {
      const c = evals[0]!.tasks.find((x) => x.task === t.name)?.chance;
      return `<td>${pct(c)}</td><td>${pct(c)}</td>`;
    }).join('')}<td>–</td><td>–</td></tr>`;
    const rows = evals.map((e) => {
      const cell = (name: string): string => {
        const t = e.tasks.find((x) => x.task === name);
        return t ? `<td>${pct(t.acc)}</td><td>${pct(t.accNorm)}</td>` : '<td>–</td><td>–</td>';
      };
      const ppl = e.tasks.find((x) => x.task === PPL_TASK);
      return `<tr data-stage="${esc(e.stage)}"><td>${esc(e.stage)}</td>${MC_TASKS.map((t) => cell(t.name)).join('')}<td>${fmt(ppl?.perplexity, 2)}</td><td>${fmt(ppl?.bitsPerByte)}</td></tr>`;
    });
    const n = evals[0]!.tasks.map((t) => `${t.task}: ${t.n}`).join(', ');
    panel('eval', 'Evaluation before and after each stage', `<p>Multiple choice scored by the log-likelihood of each option (lm-evaluation-harness's cloze), with the chance level; perplexity on the held-out patents. ${MC_TASKS.map((t) => `<b>${esc(t.name)}</b>: ${esc(t.what)}.`).join(' ')} Questions/documents: ${esc(n)}. With a few dozen questions, a difference of less than ~15 points is noise.</p><table data-table="eval">${head}${chanceRow}${rows.join('')}</table>`);
  }

  // Chat
  const chat = r.chat as { model: string; turns: ChatTurn[]; before?: { model: string; turns: ChatTurn[] } } | undefined;
  if (chat) {
    const answer = (t: ChatTurn | undefined): string => (!t ? '' : t.assistant ? `<pre class="assistant">${esc(t.assistant)}</pre><p class="meta">${t.tokens} tokens, ${esc(t.finishReason)}</p>` : `<p class="meta">(no text: the model ended the answer at once, ${t.tokens} token${t.tokens === 1 ? '' : 's'})</p>`);
    const rel = (m: string): string => path.relative(path.dirname(path.dirname(path.dirname(m))), m);
    panel('chat', 'Chat with the final model', `<p>Answers of the final model (<code>${esc(rel(chat.model))}</code>)${chat.before ? ` beside the SFT model it was aligned from (<code>${esc(rel(chat.before.model))}</code>)` : ''}, sampled at temperature 0.7 (top-p 0.9, seed 1, so the same every run), each prompt a fresh conversation (LLaMA-2 chat format). A model of this size on this little text writes IP-shaped fragments, not correct answers; PPO against a small reward model also tends to shorten them.</p>${chat.turns.map((t, i) => `<div class="turn"><p class="user"><b>user</b> ${esc(t.user)}</p><div class="answers"><div><b>${esc(input.align.toUpperCase())}</b>${answer(t)}</div>${chat.before ? `<div><b>SFT</b>${answer(chat.before.turns[i])}</div>` : ''}</div></div>`).join('')}`);
  }

  const timing = steps.filter((s) => r[s] && s !== 'report').length;
  const b = input.budget;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>patentgpt demo report</title>
<style>
body{font-family:Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
tr.chance td{color:#777;font-style:italic}figure{margin:0;overflow-x:auto}svg{max-width:100%;height:auto}
div.answers{display:grid;grid-template-columns:1fr 1fr;gap:1em}pre.assistant{white-space:pre-wrap;background:#f7f7f7;padding:.6em;border-left:3px solid #1f77b4}p.meta{color:#777;font-size:.85em}code{background:#f4f4f4;padding:0 .2em}
</style></head><body>
<h1>patentgpt demo: the PatentGPT pipeline at toy scale</h1>
<p>Every step of the paper's path on the bundled data (${timing} of ${steps.length - 1} steps finished; budget ${b.smoke ? 'smoke test' : `${b.minutes} minutes`}; model dim ${b.model.dim}, ${b.model.nLayers} layers; alignment by ${input.align.toUpperCase()}). The numbers show the machinery working, not a useful model.</p>
${parts.join('\n')}
</body></html>
`;
}

export async function writeReport(out: string, input: ReportInput): Promise<string> {
  const file = path.join(out, 'report.html');
  await writeFileAtomic(file, renderReport(input));
  return file;
}
