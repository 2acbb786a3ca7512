// Multi-answer questions in the JSON layouts: `answers` (a list) and `multi: true` make a question
// a set to score (every non-empty subset a candidate), not a single answer on its first letter;
// an `answer` outside `answers` or `multi: false` with several answers skips the row; fields no
// loader reads are reported as warnings (and in the report), not dropped in silence.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { candidates, formatMarkdown, loadTask, type EvalRun } from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pgpt-mc-multi-'));
const write = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('JSONL multiple choice: answers, multi and unknown fields', () => {
  const rows = [
    { question: 'Which are IP rights?', choices: ['patent', 'lease', 'trademark', 'loan'], answer: 'A', answers: ['A', 'C'] },
    { question: 'Which need novelty?', choices: ['inventions', 'utility models', 'trademarks'], answers: [0, 1] },
    { question: 'Which is granted by the office? (select all)', choices: ['patent', 'court order', 'lease'], answer: 'A', multi: true },
    { question: 'Single?', choices: ['x', 'y'], answer: 1, multi: false, analysis: 'y because ...' },
    { question: 'Conflict?', choices: ['x', 'y', 'z'], answer: 'B', answers: ['A', 'C'] },
    { question: 'Says single, has two', choices: ['x', 'y', 'z'], answers: ['A', 'C'], multi: false },
    { question: 'Bad flag', choices: ['x', 'y'], answer: 0, multi: 'sometimes' },
  ];
  const file = write('multi.jsonl', rows.map((r) => JSON.stringify(r)).join('\n'));

  it('reads `answers` as the gold set and `multi: true` as a multi-answer question', () => {
    const t = loadTask('multi', [file]);
    expect(t.docs.map((d) => ({ answer: d.answer, multi: d.multi }))).toEqual([
      { answer: [0, 2], multi: true }, // not [0], the first correct letter
      { answer: [0, 1], multi: true },
      { answer: [0], multi: true }, // one correct choice, but the question is a set question
      { answer: [1], multi: false },
    ]);
    // Scored as sets: all 2^n - 1 subsets are candidates, not the n letters.
    expect(candidates(t.docs[0]!, 'letters')).toHaveLength(15);
    expect(candidates(t.docs[2]!, 'letters')).toHaveLength(7);
  });

  it('skips rows whose answer fields disagree, and a multi flag that is not a boolean', () => {
    const t = loadTask('multi', [file]);
    expect(t.skipped.map((s) => ({ row: s.row, reason: s.reason }))).toEqual([
      { row: 5, reason: 'conflicting-answers' },
      { row: 6, reason: 'conflicting-answers' },
      { row: 7, reason: 'malformed-row' },
    ]);
  });

  it('warns about fields it does not understand, and the report lists them', () => {
    const t = loadTask('multi', [file]);
    expect(t.warnings).toHaveLength(1);
    expect(t.warnings![0]).toMatch(/field "analysis" \(1 row\) is not understood/);
    const run: EvalRun = {
      model: 'm', seconds: 1, options: { shots: 0, seed: 0, limit: null, style: 'letters', partialCredit: 0 },
      tasks: [{
        task: 'multi', options: { shots: 0, seed: 0, style: 'letters', partialCredit: 0, limit: null, template: null, targetDelimiter: ' ', fewshotDelimiter: '\n\n' },
        metrics: { n: 0, acc: NaN, acc_stderr: NaN, acc_norm: NaN, acc_norm_stderr: NaN, score: NaN }, byCategory: {}, docs: [],
        skipped: t.skipped, files: t.files, warnings: t.warnings,
      }],
    };
    expect(formatMarkdown(run)).toMatch(/Warning: .*field "analysis"/);
  });

  it('reads the same fields in the IPQuiz JSON layout', () => {
    const f = write('quiz.json', JSON.stringify([
      { question: 'Which are IP rights?', options: { A: 'patent', B: 'lease', C: 'trademark' }, answer: 'A', answers: ['A', 'C'] },
      { question: 'Pick all that apply', options: ['x', 'y'], answer: 'B', multi: true, source: 'exam 2019' },
    ]));
    const t = loadTask('quiz', [f]);
    expect(t.docs.map((d) => [d.answer, d.multi])).toEqual([[[0, 2], true], [[1], true]]);
    expect(t.warnings!.join('\n')).toMatch(/field "source"/);
  });
});
