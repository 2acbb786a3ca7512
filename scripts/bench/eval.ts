// npm run bench -- eval [--questions N] [--threads T] [--shots K] [--batch-tokens B] [--task exam|single|multi] [--repeat R]:
// multiple-choice questions per second for the llama-10m preset (byte tokenizer), batched (each
// context computed once, the options as a trie of rows over the paged KV cache) against one request
// per forward, on the same questions, alternating the modes R times; the log-likelihoods are
// checked equal. Also the packed-rows mode (rows shared only when one is a prefix of another,
// packed into forwards of at most B tokens). Where the time goes: the tokens each mode computes
// (the ratio is the gain of sharing: a question's K single-letter options share one row, so it is
// at most K there; multi-answer questions have 15 candidate sets) and the time per computed token
// (the ratio is the gain of packing).
// Questions: the China patent agent exam from ../shared/data (exam: both files, N questions evenly
// spread, so single and multi answer in the exam's proportion, 90:209; or one file), else synthetic ones.
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
const batchTokens = Number(arg('batch-tokens', '1024'));
const repeat = Number(arg('repeat', '2'));
const which = arg('task', 'exam');
if (!['exam', 'single', 'multi'].includes(which)) throw new Error(`--task exam|single|multi, got ${which}`);
const threads = setNumThreads(Number(arg('threads', '2')));

const paeFiles = (which === 'exam' ? ['mcq_sing_pae.csv', 'mcq_mult_pae.csv'] : [which === 'single' ? 'mcq_sing_pae.csv' : 'mcq_mult_pae.csv'])
  .map((f) => join(dataDir(), 'cn-patent-agent-exam', f));
let task: McTask;
let source: string;
if (paeFiles.every((f) => existsSync(f))) {
  task = loadTask(`pae-${which}`, paeFiles);
  const all = task.docs;
  if (nQuestions < all.length) task = { ...task, docs: Array.from({ length: nQuestions }, (_, i) => all[Math.floor((i * all.length) / nQuestions)]!) };
  source = `${paeFiles.join(' + ')}; ${task.docs.filter((d) => d.multi).length} of ${task.docs.length} multi-answer`;
} else {
  task = {
    name: 'synthetic', skipped: [], files: [],
    docs: Array.from({ length: 64 }, (_, i) => ({
      id: `s${i}`, question: `Under the patent law, which statement about case ${i} is correct?`, multi: which === 'multi' || (which === 'exam' && i % 3 > 0), category: 'synthetic',
      choices: ['the employer owns the right', 'the inventor owns the right', 'both own it jointly', 'the state owns it'], answer: which === 'single' || (which === 'exam' && i % 3 === 0) ? [i % 4] : [0, 2],
    })),
  };
  source = 'synthetic questions';
}
const model = new LlamaForCausalLM(preset('llama-10m').config, { seed: 1 });
const tok = new ByteTokenizer();

interface Run { sec: number; ll: number[]; forwards: number; tokens: number }
type Mode = 'one by one' | 'packed rows' | 'batched';
function run(mode: Mode): Run {
  const scorer = new Scorer(model, tok, { batched: mode !== 'one by one', sharedContexts: mode === 'batched', maxBatchTokens: batchTokens });
  const t0 = performance.now();
  const res = evaluateMc(scorer, task, { shots, seed: 1, limit: nQuestions });
  const sec = (performance.now() - t0) / 1000;
  scorer.close();
  return { sec, ll: res.docs.flatMap((d) => d.loglik), forwards: scorer.forwards, tokens: scorer.tokensComputed };
}

const modes: Mode[] = ['one by one', 'packed rows', 'batched'];
run('batched'); // warm-up
const runs = new Map<Mode, Run[]>(modes.map((m) => [m, []]));
for (let r = 0; r < repeat; r++) for (const m of modes) runs.get(m)!.push(run(m));
const best = (rs: Run[]): Run => rs.reduce((a, b) => (b.sec < a.sec ? b : a));
const one = best(runs.get('one by one')!);
const many = best(runs.get('batched')!);
let maxDiff = 0;
for (const m of modes) {
  const ll = best(runs.get(m)!).ll;
  for (let i = 0; i < one.ll.length; i++) maxDiff = Math.max(maxDiff, Math.abs(one.ll[i]! - ll[i]!));
}
const n = Math.min(nQuestions, task.docs.length);
const usPerToken = (r: Run): number => (1e6 * r.sec) / r.tokens;
console.log(`eval bench: llama-10m, byte tokenizer, ${n} questions (${source}), ${shots}-shot, ${threads} threads, batch ${batchTokens} tokens, best of ${repeat}`);
console.log('mode         forwards  tokens computed  us/token  questions/s  speed-up');
for (const m of modes) {
  const r = best(runs.get(m)!);
  console.log(`${m.padEnd(13)}${String(r.forwards).padStart(8)}  ${String(r.tokens).padStart(15)}  ${usPerToken(r).toFixed(0).padStart(8)}  ${(n / r.sec).toFixed(2).padStart(11)}  ${(one.sec / r.sec).toFixed(2).padStart(7)}x`);
}
const sharing = one.tokens / many.tokens;
const packing = usPerToken(one) / usPerToken(many);
console.log(`batched: speed-up ${(one.sec / many.sec).toFixed(2)}x (target >= 5x) = sharing ${sharing.toFixed(2)}x (fewer tokens) * ${packing.toFixed(2)}x per token; max |loglik difference| ${maxDiff.toExponential(2)}`);
console.log(JSON.stringify({
  bench: 'eval', task: which, questions: n, threads, shots, batchTokens, oneByOneQps: n / one.sec, batchedQps: n / many.sec,
  packedRowsQps: n / best(runs.get('packed rows')!).sec, speedup: one.sec / many.sec, sharing, packing,
  speedups: runs.get('one by one')!.map((o, i) => o.sec / runs.get('batched')![i]!.sec), maxDiff,
}));
