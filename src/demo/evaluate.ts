// The demo's evaluation after each stage: the bundled IP multiple-choice tasks scored by
// log-likelihood of each option (cloze, as lm-evaluation-harness), with their chance level, and
// perplexity on the held-out patents; and the chat transcript of the final model.
import * as path from 'node:path';
import { evaluateMc, evaluatePerplexity, loadTask, Scorer, type PplTask } from '../eval/index.js';
import { Engine, chatPromptIds } from '../infer/index.js';
import { loadFolderTokenizer } from '../infer/folder-tokenizer.js';
import { loadPretrained } from '../models/index.js';
import { PatentGPTError } from '../errors.js';

export interface EvalRow {
  task: string;
  kind: 'multiple-choice' | 'perplexity';
  n: number;
  /** Multiple choice: accuracy, length-normalised accuracy, and chance (mean of 1 / options). */
  acc?: number;
  accNorm?: number;
  chance?: number;
  perplexity?: number;
  bitsPerByte?: number;
}

export interface StageEval {
  stage: string;
  model: string;
  tasks: EvalRow[];
  seconds: number;
}

export const MC_TASKS = [
  { name: 'patent-title', file: 'eval/patent-title.jsonl', what: 'which title belongs to a held-out patent\'s abstract' },
  { name: 'title35-heading', file: 'eval/title35-heading.jsonl', what: 'which heading belongs to a section of 35 U.S.C. (seen in pretraining)' },
];
export const PPL_TASK = 'heldout-perplexity';

function tokenizerOf(dir: string) {
  const tok = loadFolderTokenizer(dir);
  if (!tok) throw new PatentGPTError('E_CONFIG', `${dir}: the model folder records no tokenizer; the demo's stages write one`);
  return tok;
}

export async function evaluateStage(stage: string, modelDir: string, data: string, heldOut: PplTask['docs'], opts: { limit: number | null; onProgress?: (done: number, total: number) => void }): Promise<StageEval> {
  const t0 = performance.now();
  const model = await loadPretrained(modelDir);
  const tok = tokenizerOf(modelDir);
  const scorer = new Scorer(model, tok, { maxBatchTokens: 4096 });
  const rows: EvalRow[] = [];
  const limit = opts.limit ?? undefined;
  const total = MC_TASKS.length + 1;
  try {
    for (const [i, t] of MC_TASKS.entries()) {
      const task = loadTask(t.name, [path.join(data, t.file)]);
      const docs = task.docs.slice(0, limit ?? task.docs.length);
      const r = evaluateMc(scorer, task, { style: 'cloze', limit });
      rows.push({ task: t.name, kind: 'multiple-choice', n: r.metrics.n, acc: r.metrics.acc, accNorm: r.metrics.acc_norm, chance: docs.reduce((s, d) => s + 1 / d.choices.length, 0) / Math.max(1, docs.length) });
      opts.onProgress?.(i + 1, total);
    }
    const ppl: PplTask = { kind: 'perplexity', name: PPL_TASK, docs: heldOut, skipped: [], files: [] };
    const p = evaluatePerplexity(scorer, ppl, { limit });
    rows.push({ task: PPL_TASK, kind: 'perplexity', n: p.metrics.n, perplexity: p.metrics.perplexity, bitsPerByte: p.metrics.bits_per_byte });
    opts.onProgress?.(total, total);
  } finally {
    scorer.close();
    model.dispose();
  }
  return { stage, model: modelDir, tasks: rows, seconds: (performance.now() - t0) / 1000 };
}

export const CHAT_PROMPTS = [
  'Write the abstract of a patent titled "Hybrid computer programming environment".',
  'What does 35 U.S.C. 101 (Inventions patentable) provide?',
  'Write claim 1 of a patent titled "Adjustable disposable garment protector".',
];

export interface ChatTurn {
  user: string;
  assistant: string;
  tokens: number;
  finishReason: string;
}

/** One sampled answer per prompt (temperature 0.7, top-p 0.9, seeded: the same every run) from the model folder, each a fresh conversation; greedy decoding of a model this small collapses into a stock phrase. */
export async function chatTranscript(modelDir: string, maxTokens: number): Promise<ChatTurn[]> {
  const tok = tokenizerOf(modelDir);
  const engine = await Engine.fromPretrained(modelDir, { tokenizer: tok });
  try {
    const out: ChatTurn[] = [];
    for (const user of CHAT_PROMPTS) {
      const ids = chatPromptIds(tok, [{ role: 'user', content: user }]);
      const c = await engine.complete(ids, { maxTokens, temperature: 0.7, topP: 0.9, repetitionPenalty: 1.1, seed: 1 });
      out.push({ user, assistant: c.text.trim(), tokens: c.tokens.length, finishReason: c.finishReason });
    }
    return out;
  } finally {
    engine.close();
  }
}
