// patentgpt eval: benchmarks over a model folder: multiple choice by log-likelihood, generation
// through the inference engine, perplexity, phrase matching.
//
// stdout holds the results (the tables, then where the files went); progress and warnings go to
// stderr: a bar on a terminal, JSON lines otherwise (--progress picks). A task's progress clock
// starts when the task starts, so its `done` event's elapsedSec is the task's whole time (the
// same figure as its `seconds` in results.json), not the time since its first batch finished.
// The report ends with the process's peak resident memory beside the weights' bytes.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import {
  evaluateGenerate, evaluateMc, evaluatePerplexity, evaluatePhraseMatching, formatMarkdown, formatTable, resolveTask, Scorer,
  type EvalRun, type PromptStyle, type TaskResult,
} from '../eval/index.js';
import { Engine } from '../infer/index.js';
import { loadPretrained } from '../models/index.js';
import { Progress, type ProgressStream } from '../train/progress.js';
import { intArg } from './args.js';
import { tokenizerFromSpec } from './tokenizer-spec.js';

/** `\n`, `\t` and `\\` in a template typed on a command line. */
export function unescapeArg(s: string): string {
  return s.replace(/\\([nt\\])/g, (_m, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
}

export type ProgressMode = 'auto' | 'json' | 'bar' | 'none';

/** A progress reporter on stderr (or `stream`) whose clock started at `t0` (the task's start), or null for --progress none. */
export function progressFor(mode: ProgressMode, label: string, total: number, t0: number, stream: ProgressStream = process.stderr): Progress | null {
  if (mode === 'none') return null;
  let first = true;
  // The bar is made at the first progress report (its total is known then); its clock's first
  // reading, the start, is the task's.
  const now = (): number => (first ? ((first = false), t0) : performance.now());
  return new Progress({ total, label, stream, tty: mode === 'auto' ? stream.isTTY === true : mode === 'bar', now });
}

const gb = (b: number): string => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`);

export function evalCommand(): Command {
  return new Command('eval')
    .description('evaluate a model: multiple choice by log-likelihood (lm-evaluation-harness semantics), generation (exact match, F1, ROUGE-L, BLEU), perplexity, phrase matching; per category')
    .requiredOption('--model <dir>', 'model folder (config.json + safetensors)')
    .requiredOption('--tasks <list>', 'comma-separated: built-in tasks (pae, pae-single, pae-multi, claim-to-abstract, ip-qa, phrase-matching, ppl-abstracts), *.task.json definitions, lm-evaluation-harness *.yaml tasks over local json/csv data, or multiple-choice .csv/.json/.jsonl files or folders')
    .option('--tokenizer <spec>', "tokenizer.model path, 'llama2' or 'byte' (default: <model>/tokenizer.model)")
    .option('--limit <n>', 'score only the first N documents of each task', intArg('--limit', 1))
    .option('--max-tokens <n>', 'most tokens generated per prompt (default: the task\'s)', intArg('--max-tokens', 1))
    .option('--shots <k>', 'few-shot examples per question', intArg('--shots', 0), 0)
    .option('--seed <s>', 'seed of the few-shot sampling', intArg('--seed', 0), 1234)
    .option('--style <style>', "prompt: 'letters' (options listed, letters scored) or 'cloze' (option texts scored); default: the task's, else letters", (v: string) => {
      if (v !== 'letters' && v !== 'cloze') throw new InvalidArgumentError("expected 'letters' or 'cloze'");
      return v;
    })
    .option('--template <text>', "multiple choice: the question's prompt with {question}, {options} (the \"A. text\" lines), {A}..{Z}, {category}, {id}; \\n is a newline (e.g. '问题：{question}\\n{options}\\n答案：')", unescapeArg)
    .option('--target-delimiter <text>', 'multiple choice: text between the prompt and each candidate (lm-eval target_delimiter; default " ")', unescapeArg)
    .option('--progress <mode>', "progress on stderr: 'auto' (a bar on a terminal, JSON lines otherwise), 'json', 'bar' or 'none'", (v: string) => {
      if (!['auto', 'json', 'bar', 'none'].includes(v)) throw new InvalidArgumentError("expected 'auto', 'json', 'bar' or 'none'");
      return v;
    }, 'auto')
    .option('--partial-credit <x>', 'credit for a correct proper subset on multi-answer questions (exam rule; 0 = all-or-nothing)', (v: string) => {
      const x = Number(v);
      if (!(x >= 0 && x <= 1)) throw new InvalidArgumentError('expected a number in [0, 1]');
      return x;
    }, 0)
    .option('--description <text>', 'text before the examples ({category} is replaced)')
    .option('--no-add-bos', 'no BOS in front of the contexts (lm-eval add_bos_token=False; default: BOS, as lm-eval with a LLaMA tokenizer)')
    .option('--batch-tokens <n>', "most tokens per forward (default: what a quarter of the weights' bytes of activations allow, 64 to 1024)", intArg('--batch-tokens', 1))
    .option('--out <dir>', 'where to write results.json and report.md', 'eval-out')
    .action(async (o: {
      model: string; tasks: string; tokenizer?: string; limit?: number; maxTokens?: number; shots: number; seed: number; style?: PromptStyle;
      template?: string; targetDelimiter?: string; progress: ProgressMode;
      partialCredit: number; description?: string; addBos: boolean; batchTokens?: number; out: string;
    }) => {
      const t0 = performance.now();
      const tasks = o.tasks.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => resolveTask(s));
      for (const t of tasks) for (const w of ('warnings' in t ? t.warnings : undefined) ?? []) process.stderr.write(`warning: ${w}\n`);
      const tok = tokenizerFromSpec(o.tokenizer, o.model);
      const model = await loadPretrained(o.model);
      const weightBytes = model.parameters().reduce((s, t) => s + t.byteLength, 0);
      const scorer = new Scorer(model, tok, { maxBatchTokens: o.batchTokens, addBos: o.addBos });
      const run: EvalRun = {
        model: o.model, tasks: [], seconds: 0,
        options: { shots: o.shots, seed: o.seed, limit: o.limit ?? null, style: o.style ?? 'task default', partialCredit: o.partialCredit },
      };
      let engine: Engine | null = null;
      for (const task of tasks) {
        const taskStart = performance.now();
        let bar: Progress | null = null;
        const onProgress = (done: number, total: number): void => {
          bar ??= progressFor(o.progress, task.name, total, taskStart);
          bar?.update(done);
        };
        let res: TaskResult;
        if (!('kind' in task)) {
          res = {
            ...evaluateMc(scorer, task, {
              shots: o.shots, seed: o.seed, style: o.style, partialCredit: o.partialCredit, description: o.description, limit: o.limit, onProgress,
              template: o.template, targetDelimiter: o.targetDelimiter,
            }),
            skipped: task.skipped, files: task.files, warnings: task.warnings ?? [],
          };
        } else if (task.kind === 'generate') {
          engine ??= new Engine(model, { tokenizer: tok, addBos: o.addBos });
          res = { ...(await evaluateGenerate(engine, tok, task, { limit: o.limit, maxTokens: o.maxTokens, addBos: o.addBos, onProgress })), skipped: task.skipped, files: task.files };
        } else if (task.kind === 'perplexity') {
          res = { ...evaluatePerplexity(scorer, task, { limit: o.limit, onProgress }), skipped: task.skipped, files: task.files };
        } else {
          res = { ...evaluatePhraseMatching(scorer, task, { limit: o.limit, onProgress }), skipped: task.skipped, files: task.files };
        }
        res.seconds = (performance.now() - taskStart) / 1000;
        (bar as Progress | null)?.done();
        run.tasks.push(res);
      }
      (engine as Engine | null)?.close();
      scorer.close();
      model.dispose();
      run.seconds = (performance.now() - t0) / 1000;
      run.memory = { peakRssBytes: process.resourceUsage().maxRSS * 1024, weightBytes };
      mkdirSync(o.out, { recursive: true });
      writeFileSync(join(o.out, 'results.json'), JSON.stringify(run, null, 2) + '\n');
      writeFileSync(join(o.out, 'report.md'), formatMarkdown(run));
      console.log(formatTable(run));
      console.log(`peak RSS ${gb(run.memory.peakRssBytes)} (${(run.memory.peakRssBytes / weightBytes).toFixed(1)}x the weights' ${gb(weightBytes)})`);
      const skipped = run.tasks.reduce((s, t) => s + t.skipped.length, 0);
      if (skipped > 0) console.log(`${skipped} malformed row(s) skipped (listed in ${join(o.out, 'report.md')})`);
      console.log(`wrote ${join(o.out, 'results.json')} and ${join(o.out, 'report.md')}`);
    });
}
