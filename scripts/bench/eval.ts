// npm run bench -- eval [--questions N] [--threads T] [--shots K] [--batch-tokens B]: multiple-choice questions per
// second for the llama-10m preset (byte tokenizer), batched (packed rows, shared contexts) against
// one request per forward, on the same questions; the log-likelihoods of both are checked equal.
// Questions: the China patent agent exam (single answer) from ../shared/data, else synthetic ones.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { LlamaForCausalLM, preset } from '../../src/models/index.js';
import { setNumThreads } from '../../src/tensor/index.js';
import { Scorer, dataDir, evaluateMc, loadTask, type McTask } from '../../src/eval/index.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : dflt;
};
const nQuestions = Number(arg('questions', '16'));
const shots = Number(arg('shots', '0'));
const threads = setNumThreads(Number(arg('threads', '2')));

const paeFile = join(dataDir(), 'cn-patent-agent-exam', 'mcq_sing_pae.csv');
let task: McTask;
let source: string;
if (existsSync(paeFile)) {
  task = loadTask('pae-single', [paeFile]);
  source = paeFile;
} else {
  task = {
    name: 'synthetic', skipped: [], files: [],
    docs: Array.from({ length: 64 }, (_, i) => ({
      id: `s${i}`, question: `Under the patent law, which statement about case ${i} is correct?`, multi: false, category: 'synthetic',
      choices: ['the employer owns the right', 'the inventor owns the right', 'both own it jointly', 'the state owns it'], answer: [i % 4],
    })),
  };
  source = 'synthetic questions';
}
const model = new LlamaForCausalLM(preset('llama-10m').config, { seed: 1 });
const tok = new ByteTokenizer();

function run(batched: boolean): { sec: number; ll: number[]; forwards: number } {
  const scorer = new Scorer(model, tok, { batched, maxBatchTokens: Number(arg('batch-tokens', '512')) });
  const t0 = performance.now();
  const res = evaluateMc(scorer, task, { shots, seed: 1, limit: nQuestions });
  return { sec: (performance.now() - t0) / 1000, ll: res.docs.flatMap((d) => d.loglik), forwards: scorer.forwards };
}

run(true); // warm-up
const one = run(false);
const many = run(true);
let maxDiff = 0;
for (let i = 0; i < one.ll.length; i++) maxDiff = Math.max(maxDiff, Math.abs(one.ll[i]! - many.ll[i]!));
const n = Math.min(nQuestions, task.docs.length);
const rows = [
  ['one by one', one.forwards, (n / one.sec).toFixed(2)],
  ['batched', many.forwards, (n / many.sec).toFixed(2)],
];
console.log(`eval bench: llama-10m, byte tokenizer, ${n} questions (${source}), ${shots}-shot, ${threads} threads`);
console.log('mode        forwards  questions/s');
for (const r of rows) console.log(`${String(r[0]).padEnd(12)}${String(r[1]).padStart(8)}  ${String(r[2]).padStart(11)}`);
console.log(`speed-up ${(one.sec / many.sec).toFixed(2)}x (target >= 5x); max |loglik difference| ${maxDiff.toExponential(2)}`);
console.log(JSON.stringify({ bench: 'eval', questions: n, threads, shots, oneByOneQps: n / one.sec, batchedQps: n / many.sec, speedup: one.sec / many.sec, maxDiff }));
