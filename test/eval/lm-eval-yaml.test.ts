// A task's own prompt, against lm-evaluation-harness on the same strings: two lm-eval task YAMLs
// over 12 Chinese patent agent exam questions (JSON with a cloze prompt "问题：{{question}}\n答案："
// and no target delimiter; CSV with the options listed, letters as choices and a description
// rendered per row), scored by lm-eval 0.4 on the tiny fixture model (scripts/lm-eval-yaml-fixture.py).
// Read by our YAML reader, the same tasks give the same contexts and continuations, per-choice
// log-likelihoods within 1e-4, and the same acc and acc_norm per question; so do our own
// `--template` options and a `multiple-choice` *.task.json over the same data. The live part
// runs lm-eval itself and skips without it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import {
  PatentGPTError, Scorer, SentencePieceTokenizer, buildContext, candidates, evaluateMc, loadLmEvalYaml, loadPretrained, resolveTask,
  type McOptions, type McTask,
} from '../../src/index.js';
import { expectClose } from '../helpers.js';

const fixtures = new URL('./fixtures/', import.meta.url).pathname;
const yamlDir = join(fixtures, 'lm-eval-yaml');
const modelDir = join(fixtures, 'lm-eval-tiny');
const script = new URL('../../scripts/lm-eval-yaml-fixture.py', import.meta.url).pathname;

interface GoldenTask { acc: number; acc_norm: number; docs: { docId: number; requests: { context: string; continuation: string; loglik: number }[]; acc: number; acc_norm: number }[] }
interface Golden { lm_eval: string; tasks: Record<'pae_zh_cloze' | 'pae_zh_letters', GoldenTask> }

const golden = JSON.parse(readFileSync(join(yamlDir, 'golden.json'), 'utf8')) as Golden;
const model = await loadPretrained(modelDir);
const tok = SentencePieceTokenizer.load(join(modelDir, 'tokenizer.model'));
afterAll(() => model.dispose());

/** Our run of `task` (with `opts`) against lm-eval's record: strings, log-likelihoods, acc, acc_norm. */
function compare(task: McTask, want: GoldenTask, opts: McOptions = {}): void {
  const res = evaluateMc(new Scorer(model, tok), task, opts);
  expect(res.docs).toHaveLength(want.docs.length);
  const p = { ...task.prompt, ...opts };
  const got: number[] = [];
  const expected: number[] = [];
  want.docs.forEach((wd, i) => {
    const context = buildContext(task.docs, i, { shots: 0, seed: 0, style: p.style ?? 'letters', template: p.template, description: p.description, targetDelimiter: p.targetDelimiter });
    expect(context, `question ${i}: context`).toBe(wd.requests[0]!.context);
    const td = p.targetDelimiter ?? ' ';
    expect(candidates(task.docs[i]!, p.style ?? 'letters').map((c) => `${td}${c.text}`), `question ${i}: continuations`).toEqual(wd.requests.map((r) => r.continuation));
    got.push(...res.docs[i]!.loglik);
    expected.push(...wd.requests.map((r) => r.loglik));
    expect({ acc: res.docs[i]!.acc, acc_norm: res.docs[i]!.accNorm }, `question ${i}`).toEqual({ acc: wd.acc, acc_norm: wd.acc_norm });
  });
  expectClose(got, expected, 1e-4, 0, 'per-choice log-likelihoods');
  expect(res.metrics.acc).toBeCloseTo(want.acc, 12);
  expect(res.metrics.acc_norm).toBeCloseTo(want.acc_norm, 12);
}

describe(`lm-eval task YAMLs over local data (golden values of lm-eval ${golden.lm_eval})`, () => {
  it('json, Jinja cloze prompt, a rendered list of choices, a rendered index, no target delimiter', () => {
    const task = resolveTask(join(yamlDir, 'pae-zh-cloze.yaml'));
    expect(task.name).toBe('pae_zh_cloze');
    expect('kind' in task).toBe(false);
    compare(task as McTask, golden.tasks.pae_zh_cloze);
  });

  it('csv, options listed, letters from a YAML list, the target a column, a description per row (left-truncated contexts)', () => {
    const task = loadLmEvalYaml(join(yamlDir, 'pae-zh-letters.yaml'));
    expect(task.warnings).toEqual([]);
    compare(task, golden.tasks.pae_zh_letters);
  });

  it('acc and acc_norm disagree somewhere, so the length normalisation is exercised', () => {
    expect(golden.tasks.pae_zh_cloze.docs.some((d) => d.acc !== d.acc_norm)).toBe(true);
  });
});

describe('a task prompt of our own reproduces the same tasks', () => {
  it('--template/--style/--target-delimiter on the JSONL file equal the cloze YAML', () => {
    const task = resolveTask(join(yamlDir, 'pae-zh.jsonl')) as McTask;
    compare(task, golden.tasks.pae_zh_cloze, { template: '问题：{question}\n答案：', style: 'cloze', targetDelimiter: '' });
  });

  it('a multiple-choice *.task.json over the exam CSV equals the letters YAML', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgpt-mc-def-'));
    try {
      const def = join(dir, 'pae-zh.task.json');
      writeFileSync(def, JSON.stringify({
        kind: 'multiple-choice', files: [join(yamlDir, 'pae-zh.csv')], style: 'letters',
        template: '{question}\n{options}\n答案：', description: '以下是专利代理师资格考试的单项选择题（{category}）。\n\n',
      }));
      const task = resolveTask(def) as McTask;
      expect(task.name).toBe('pae-zh');
      compare(task, golden.tasks.pae_zh_letters);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a template field no question has, naming it', () => {
    const task = resolveTask(join(yamlDir, 'pae-zh.jsonl')) as McTask;
    expect(() => evaluateMc(new Scorer(model, tok), task, { template: '问题：{question}\n{answers}\n答案：' })).toThrow(/\{answers\} is unknown/);
  });
});

describe('what the YAML reader cannot reproduce is refused or warned about', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgpt-yaml-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base = ['dataset_path: json', 'dataset_kwargs:', `  data_files: ${join(yamlDir, 'pae-zh.jsonl')}`, 'test_split: train', 'output_type: multiple_choice',
    'doc_to_text: question', 'doc_to_choice: choices', 'doc_to_target: answer'];
  const load = (name: string, lines: string[]): McTask => {
    writeFileSync(join(dir, name), lines.join('\n'));
    return loadLmEvalYaml(join(dir, name));
  };
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (err) {
      return `${(err as PatentGPTError).code}: ${(err as Error).message}`;
    }
    return 'no error';
  };

  it('reads columns by name (the split of a bare path is "train")', () => {
    const t = load('plain.yaml', base);
    expect(t.docs).toHaveLength(12);
    expect(t.docs[0]!.question).toBe(golden.tasks.pae_zh_cloze.docs[0]!.requests[0]!.context.replace(/^问题：|\n答案：$/g, ''));
  });
  it('refuses Python functions, other sources and output types, and names the key', () => {
    expect(code(() => load('fn.yaml', [...base.filter((l) => !l.startsWith('doc_to_text')), 'doc_to_text: !function utils.doc_to_text']))).toMatch(/^E_UNSUPPORTED: .*doc_to_text: !function utils\.doc_to_text/);
    expect(code(() => load('hub.yaml', [...base.filter((l) => !l.startsWith('dataset_path')), 'dataset_path: cais/mmlu']))).toMatch(/^E_UNSUPPORTED: .*dataset_path "cais\/mmlu"/);
    expect(code(() => load('gen.yaml', [...base.filter((l) => !l.startsWith('output_type')), 'output_type: generate_until']))).toMatch(/^E_UNSUPPORTED: .*generate_until/);
    expect(code(() => load('pd.yaml', [...base, 'process_docs: x']))).toMatch(/^E_UNSUPPORTED: .*"process_docs"/);
    expect(code(() => load('split.yaml', base.map((l) => (l === 'test_split: train' ? 'test_split: test' : l))))).toMatch(/^E_CONFIG: .*split "test" is not in data_files \(train/);
  });
  it('warns about keys it does not know, num_fewshot and metrics it does not compute', () => {
    const t = load('warn.yaml', [...base, 'num_fewshot: 5', 'frobnicate: true', 'metric_list:', '  - metric: acc', '  - metric: brier_score']);
    expect(t.warnings!.join('\n')).toMatch(/key "frobnicate"/);
    expect(t.warnings!.join('\n')).toMatch(/num_fewshot 5 is not applied/);
    expect(t.warnings!.join('\n')).toMatch(/metric "brier_score" is not computed/);
  });
});

const { python, why } = findPython(['lm_eval', 'transformers', 'torch', 'accelerate']);

describe.skipIf(!python)(`lm-eval task YAMLs (live${python ? '' : `: skipped, ${why}`})`, () => {
  it('lm-eval run now on the fixture YAMLs agrees with our reader', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgpt-lm-eval-yaml-'));
    try {
      execFileSync(python!, [script, 'run', yamlDir, modelDir, join(dir, 'golden.json')], {
        stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1' },
      });
      const live = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as Golden;
      compare(loadLmEvalYaml(join(yamlDir, 'pae-zh-cloze.yaml')), live.tasks.pae_zh_cloze);
      compare(loadLmEvalYaml(join(yamlDir, 'pae-zh-letters.yaml')), live.tasks.pae_zh_letters);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
