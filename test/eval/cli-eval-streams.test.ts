// `patentgpt eval` keeps stdout for results: progress events (JSON lines when not on a terminal)
// go to stderr, each task's `done` event carries the task's whole time (the clock starts with
// the task, not at its first finished batch), and the report gives the peak RSS beside the
// weights' bytes. A model with a NaN weight fails with the parameter named instead of scoring.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { progressFor, unescapeArg } from '../../src/cli/eval.js';
import { BYTE_VOCAB_SIZE, LlamaForCausalLM, Tensor, preset, savePretrained, validateConfig } from '../../src/index.js';

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const dir = mkdtempSync(join(tmpdir(), 'pgpt-cli-streams-'));
const cfg = validateConfig({ ...preset('tiny').config, vocabSize: BYTE_VOCAB_SIZE, dim: 32, nHeads: 4, nKvHeads: 2, ffnDim: 64, nLayers: 1, maxSeqLen: 256 });
const events = (text: string): Record<string, unknown>[] =>
  text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

let weightBytes = 0;

beforeAll(async () => {
  const model = new LlamaForCausalLM(cfg, { seed: 5 });
  weightBytes = model.parameters().reduce((s, t) => s + t.byteLength, 0);
  await savePretrained(model, join(dir, 'model'));
  const [name, t] = model.namedParameters().find(([n]) => n.endsWith('o_proj.weight'))!;
  const w = t.toArray() as Float32Array;
  w[3] = NaN;
  model.setParameter(name, Tensor.from(w, t.shape));
  await savePretrained(model, join(dir, 'nan-model'));
  model.dispose();
  writeFileSync(join(dir, 'a.jsonl'), Array.from({ length: 8 }, (_, i) => JSON.stringify({ question: `Question ${i}?`, choices: ['alpha', 'beta', 'gamma'], answer: i % 3 })).join('\n'));
  writeFileSync(join(dir, 'b.jsonl'), Array.from({ length: 5 }, (_, i) => JSON.stringify({ question: `Other ${i}?`, choices: ['x', 'y'], answer: i % 2 })).join('\n'));
});

describe('patentgpt eval: streams', () => {
  it("a task's progress clock starts with the task, not at its first finished batch", () => {
    const lines: string[] = [];
    const stream = { write: (s: string) => lines.push(s), isTTY: false };
    // The task started 5 s ago (loading, tokenizing, the first batch); its first report comes now.
    const bar = progressFor('auto', 'task', 10, performance.now() - 5000, stream)!;
    bar.update(4);
    bar.done();
    const done = JSON.parse(lines.at(-1)!) as { event: string; elapsedSec: number };
    expect(done.event).toBe('done');
    expect(done.elapsedSec).toBeGreaterThanOrEqual(5);
    expect(progressFor('none', 'task', 10, 0, stream)).toBeNull();
  });

  it('progress events go to stderr, results to stdout; done carries the task time; peak RSS reported', () => {
    const r = cli(['eval', '--model', join(dir, 'model'), '--tokenizer', 'byte', '--tasks', `${join(dir, 'a.jsonl')},${join(dir, 'b.jsonl')}`, '--out', join(dir, 'o')]);
    expect(r.status, r.stderr).toBe(0);
    expect(events(r.stdout)).toEqual([]);
    expect(r.stdout).toMatch(/task \/ category\s+n\s+acc %/);
    expect(r.stdout).toMatch(/peak RSS \d+ MiB \(\d+\.\dx the weights' \d+ MiB\)/);
    const ev = events(r.stderr);
    expect(ev.filter((e) => e.event === 'progress').length).toBeGreaterThanOrEqual(2);
    const done = ev.filter((e) => e.event === 'done');
    expect(done.map((e) => e.label)).toEqual(['a', 'b']);
    const res = JSON.parse(readFileSync(join(dir, 'o', 'results.json'), 'utf8')) as { seconds: number; tasks: { seconds: number }[]; memory: { peakRssBytes: number; weightBytes: number } };
    // One clock per task, started with the task: the event's time covers the task's own.
    res.tasks.forEach((t, i) => {
      expect(t.seconds).toBeGreaterThan(0);
      expect(done[i]!.elapsedSec as number).toBeGreaterThanOrEqual(Number(t.seconds.toFixed(3)) - 0.0015);
    });
    expect(done.reduce((s, e) => s + (e.elapsedSec as number), 0)).toBeLessThanOrEqual(res.seconds + 0.002);
    expect(res.memory.weightBytes).toBe(weightBytes);
    expect(res.memory.peakRssBytes).toBeGreaterThan(res.memory.weightBytes);
    expect(readFileSync(join(dir, 'o', 'report.md'), 'utf8')).toMatch(/Peak RSS \d+ MiB, \d+\.\d\dx the weights'/);
  }, 60_000);

  it('--progress none writes no events; --progress json writes them to stderr', () => {
    const base = ['eval', '--model', join(dir, 'model'), '--tokenizer', 'byte', '--tasks', join(dir, 'b.jsonl'), '--out', join(dir, 'p')];
    const none = cli([...base, '--progress', 'none']);
    expect(none.status, none.stderr).toBe(0);
    expect(events(none.stderr)).toEqual([]);
    const json = cli([...base, '--progress', 'json']);
    expect(events(json.stderr).at(-1)).toMatchObject({ event: 'done', label: 'b' });
    expect(events(json.stdout)).toEqual([]);
  }, 60_000);

  it('--template and --target-delimiter give the prompt (\\n typed on a command line is a newline)', () => {
    expect(unescapeArg('问题：{question}\\n答案：\\t\\\\n')).toBe('问题：{question}\n答案：\t\\n');
    const r = cli(['eval', '--model', join(dir, 'model'), '--tokenizer', 'byte', '--tasks', join(dir, 'b.jsonl'), '--progress', 'none', '--out', join(dir, 't'),
      '--style', 'cloze', '--template', '问题：{question}\\n答案：', '--target-delimiter', '']);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(dir, 't', 'results.json'), 'utf8')) as { tasks: { options: { template: string; targetDelimiter: string }; docs: { candidates: string[] }[] }[] };
    expect(res.tasks[0]!.options).toMatchObject({ template: '问题：{question}\n答案：', targetDelimiter: '' });
    expect(res.tasks[0]!.docs[0]!.candidates).toEqual(['x', 'y']);
    const bad = cli(['eval', '--model', join(dir, 'model'), '--tokenizer', 'byte', '--tasks', join(dir, 'b.jsonl'), '--template', '{question} {answer}', '--out', join(dir, 't2')]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/template field \{answer\} is unknown/);
  }, 60_000);

  it('a model with a NaN weight fails with the parameter named, and writes no results', () => {
    const r = cli(['eval', '--model', join(dir, 'nan-model'), '--tokenizer', 'byte', '--tasks', join(dir, 'a.jsonl'), '--out', join(dir, 'n')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/o_proj\.weight" holds 1 non-finite value/);
    expect(r.stdout).not.toMatch(/acc %/);
  }, 60_000);
});
