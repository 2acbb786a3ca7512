// Our multiple-choice scorer against lm-evaluation-harness (HFLM, output_type multiple_choice) on
// one Hugging Face folder and one JSON task, in the 'cloze' and 'letters' prompt styles: the same
// context and continuation strings, the same token ids, per-option log-likelihoods within 1e-4,
// identical acc and acc_norm per question. The golden file (scripts/lm-eval-parity.py fixture)
// needs no Python; the live part runs lm-eval itself on a folder our code saved, and skips
// without it. Perplexity likewise, against lm-eval's loglikelihood_rolling (add_bos_token=False):
// per-document log-likelihoods over rolling windows, and bits per byte.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import {
  LlamaForCausalLM, Scorer, SentencePieceTokenizer, buildContext, candidates, encodePair, evaluateMc, evaluatePerplexity, loadPplTask,
  loadPretrained, loadTask, parseTaskDef, preset, savePretrained, validateConfig, type PerplexityDef, type PromptStyle,
} from '../../src/index.js';
import { expectClose } from '../helpers.js';

const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const modelDir = join(fixtures, 'lm-eval-tiny');
const taskFile = join(fixtures, 'lm-eval-task.jsonl');
const pplFile = join(fixtures, 'lm-eval-ppl.jsonl');
const script = new URL('../../scripts/lm-eval-parity.py', import.meta.url).pathname;

interface GoldenRequest { context: string; continuation: string; contextIds: number[]; continuationIds: number[]; loglik: number }
interface GoldenTask { acc: number; acc_norm: number; docs: { docId: number; requests: GoldenRequest[]; acc: number; acc_norm: number }[] }
interface GoldenPpl { max_length: number; bits_per_byte: number; docs: { docId: number; tokens: number; loglik: number }[] }
interface Golden { lm_eval: string; tasks: Record<PromptStyle, GoldenTask>; perplexity: GoldenPpl }

const STYLES: PromptStyle[] = ['cloze', 'letters'];

/** Checks our run of the task in `style` against lm-eval's record of it. */
function compare(model: LlamaForCausalLM, tok: SentencePieceTokenizer, want: GoldenTask, style: PromptStyle): void {
  const task = loadTask('lm-eval-task', [taskFile]);
  const scorer = new Scorer(model, tok);
  const res = evaluateMc(scorer, task, { style });
  expect(res.docs).toHaveLength(want.docs.length);
  const got: number[] = [];
  const expected: number[] = [];
  want.docs.forEach((wd, i) => {
    const context = buildContext(task.docs, i, { shots: 0, seed: 0, style });
    const cands = candidates(task.docs[i]!, style);
    expect(cands.map((c) => ` ${c.text}`), `question ${i}: continuations`).toEqual(wd.requests.map((r) => r.continuation));
    wd.requests.forEach((r, j) => {
      expect(context, `question ${i}: context`).toBe(r.context);
      const ids = encodePair(tok, context, ` ${cands[j]!.text}`, scorer.addBos);
      expect({ ctx: Array.from(ids.context), cont: Array.from(ids.continuation) }, `question ${i} option ${j}: token ids`)
        .toEqual({ ctx: r.contextIds, cont: r.continuationIds });
      got.push(res.docs[i]!.loglik[j]!);
      expected.push(r.loglik);
    });
    expect({ acc: res.docs[i]!.acc, acc_norm: res.docs[i]!.accNorm }, `question ${i}`).toEqual({ acc: wd.acc, acc_norm: wd.acc_norm });
  });
  expectClose(got, expected, 1e-4, 0, `${style}: per-option log-likelihoods`);
  expect(res.metrics.acc).toBeCloseTo(want.acc, 12);
  expect(res.metrics.acc_norm).toBeCloseTo(want.acc_norm, 12);
}

function comparePerplexity(model: LlamaForCausalLM, tok: SentencePieceTokenizer, want: GoldenPpl): void {
  expect(model.config.maxSeqLen).toBe(want.max_length);
  const def = parseTaskDef({ kind: 'perplexity', files: [pplFile], category: '{category}' }, fixtures, 'ppl') as PerplexityDef;
  const res = evaluatePerplexity(new Scorer(model, tok), loadPplTask(def));
  expect(res.docs.map((d) => d.tokens)).toEqual(want.docs.map((d) => d.tokens));
  expect(res.docs.some((d) => d.tokens > want.max_length), 'a document takes several windows').toBe(true);
  expectClose(res.docs.map((d) => d.loglik), want.docs.map((d) => d.loglik), 1e-3, 1e-6, 'per-document log-likelihoods');
  expect(res.metrics.bits_per_byte).toBeCloseTo(want.bits_per_byte, 6);
  expect(Object.keys(res.byCategory)).toEqual(['claims', 'exam']);
}

describe('parity with lm-evaluation-harness (golden values)', async () => {
  const golden = JSON.parse(readFileSync(join(fixtures, 'lm-eval-golden.json'), 'utf8')) as Golden;
  const model = await loadPretrained(modelDir);
  const tok = SentencePieceTokenizer.load(join(modelDir, 'tokenizer.model'));
  afterAll(() => model.dispose());

  for (const style of STYLES) {
    it(`${style}: same strings, ids, log-likelihoods (1e-4), acc and acc_norm as lm-eval ${golden.lm_eval}`, () => {
      compare(model, tok, golden.tasks[style], style);
    });
  }

  it(`perplexity: the same per-document log-likelihoods (rolling windows) and bits per byte as lm-eval ${golden.lm_eval}`, () => {
    comparePerplexity(model, tok, golden.perplexity);
  });

  it('acc and acc_norm disagree somewhere, so the length normalisation is exercised', () => {
    const differs = STYLES.some((s) => golden.tasks[s].docs.some((d) => d.acc !== d.acc_norm));
    expect(differs).toBe(true);
  });
});

const { python, why } = findPython(['lm_eval', 'transformers', 'torch', 'accelerate']);

describe.skipIf(!python)(`parity with lm-evaluation-harness (live${python ? '' : `: skipped, ${why}`})`, () => {
  it('lm-eval scores a folder our code saved as we do', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgpt-lm-eval-'));
    try {
      const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 600, dim: 32, nHeads: 4, nKvHeads: 2, ffnDim: 64, nLayers: 2, maxSeqLen: 256 });
      const model = new LlamaForCausalLM(cfg, { seed: 21, initStd: 0.2 });
      await savePretrained(model, dir);
      for (const f of ['tokenizer.model', 'tokenizer_config.json']) copyFileSync(join(modelDir, f), join(dir, f));
      execFileSync(python!, [script, 'run', dir, taskFile, pplFile, join(dir, 'golden.json')], {
        stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1' },
      });
      const live = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as Golden;
      const tok = SentencePieceTokenizer.load(join(dir, 'tokenizer.model'));
      for (const style of STYLES) compare(model, tok, live.tasks[style], style);
      comparePerplexity(model, tok, live.perplexity);
      model.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
