// Loaders (PAE CSV, MMLU/C-Eval CSV, IPQuiz JSON, JSONL), malformed rows, prompts and few-shot
// sampling, the exam partial-credit rule, and the real patent agent exam files when present.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildContext, candidates, detectFormat, examScore, fewShotExamples, loadTask, parseCsv, resolveAnswer, resolveTask,
  type McDoc,
} from '../../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pgpt-eval-'));
const write = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('parseCsv', () => {
  it('reads quoted fields with commas, "" escapes, newlines, CRLF and a BOM', () => {
    expect(parseCsv('\ufeffa,b\r\n"x, ""y""","line1\nline2"\r\n\n3,\n')).toEqual([['a', 'b'], ['x, "y"', 'line1\nline2'], ['3', '']]);
  });
  it('rejects an unclosed quote', () => {
    expect(() => parseCsv('a,"b\n')).toThrow(/not closed/);
  });
});

describe('loaders', () => {
  it('patent agent exam CSV: columns, categories, multichoice flag; malformed rows listed', () => {
    const f = write('pae.csv', [
      'input,output,A,B,C,D,source,multichoice',
      'Q1?,B,a,b,c,d,2015 exam,False',
      '"Q2, with comma\nand newline?",ACD,a,b,c,d,2016 exam,True',
      ',A,a,b,c,d,2016 exam,False', // empty question
      'Q4?,,a,b,c,d,2016 exam,False', // missing answer
      'Q5?,E,a,b,c,d,2016 exam,False', // not among the choices
      'Q6?,A,a,b', // wrong field count
    ].join('\n'));
    expect(detectFormat(f)).toBe('pae-csv');
    const t = loadTask('pae', [f]);
    expect(t.docs).toHaveLength(2);
    expect(t.docs[0]).toMatchObject({ question: 'Q1?', choices: ['a', 'b', 'c', 'd'], answer: [1], multi: false, category: '2015 exam' });
    expect(t.docs[1]).toMatchObject({ question: 'Q2, with comma\nand newline?', answer: [0, 2, 3], multi: true, category: '2016 exam' });
    expect(t.skipped.map((s) => [s.row, s.reason])).toEqual([[3, 'empty-question'], [4, 'missing-answer'], [5, 'answer-not-in-choices'], [6, 'malformed-row']]);
    expect(t.skipped[0]!.file).toBe(f);
  });

  it('MMLU headerless and C-Eval header CSVs', () => {
    const mmlu = write('patent_law_test.csv', 'What is 1+1?,1,2,3,4,B\nEmpty answer?,1,2,3,4,\n');
    const t = loadTask('m', [mmlu]);
    expect(t.docs).toEqual([{ id: 'patent_law_test:1', question: 'What is 1+1?', choices: ['1', '2', '3', '4'], answer: [1], multi: false, category: 'patent_law' }]);
    expect(t.skipped[0]).toMatchObject({ row: 2, reason: 'missing-answer' });
    const ceval = write('law_val.csv', 'id,question,A,B,C,D,answer,explanation\n0,问题一？,甲,乙,丙,丁,C,因为\n');
    const c = loadTask('c', [ceval]);
    expect(c.docs[0]).toMatchObject({ id: 'law_val:0', question: '问题一？', answer: [2], category: 'law' });
  });

  it('MoZIP IPQuiz JSON (options as a letter map or a list; answers as letters, lists or indices)', () => {
    const f = write('ipquiz.json', JSON.stringify({
      data: [
        { id: 'a1', question: 'Q?', options: { A: 'x', B: 'y', C: 'z' }, answer: 'B', field: 'patent' },
        { question: 'Q2?', options: ['x', 'y', 'z'], answer: ['A', 'C'], category: 'trademark' },
        { question: 'Q3?', options: ['x', 'y'], answer: 1 },
        { question: 'Q4?', options: { A: 'x', B: 'y' }, answer: 'D' },
        { question: '   ', options: ['x', 'y'], answer: 'A' },
        { question: 'Q6?', answer: 'A' },
      ],
    }));
    expect(detectFormat(f)).toBe('ipquiz-json');
    const t = loadTask('ipq', [f]);
    expect(t.docs.map((d) => [d.id, d.answer, d.multi, d.category])).toEqual([
      ['a1', [1], false, 'patent'], ['ipquiz:2', [0, 2], true, 'trademark'], ['ipquiz:3', [1], false, 'ipquiz'],
    ]);
    expect(t.skipped.map((s) => s.reason)).toEqual(['answer-not-in-choices', 'empty-question', 'too-few-choices']);
  });

  it('JSONL: index, letter or text answers; bad lines skipped', () => {
    const f = write('qa.jsonl', [
      JSON.stringify({ question: 'a?', choices: ['p', 'q'], answer: 0 }),
      JSON.stringify({ question: 'b?', choices: ['p', 'q'], answer: 'q', category: 'k' }),
      '{not json',
      JSON.stringify({ question: 'c?', choices: ['p', 'q'], answer: 'r' }),
      '',
    ].join('\n'));
    const t = loadTask('j', [f]);
    expect(t.docs.map((d) => d.answer)).toEqual([[0], [1]]);
    expect(t.skipped.map((s) => [s.row, s.reason])).toEqual([[3, 'malformed-row'], [4, 'answer-not-in-choices']]);
  });

  it('a task file that cannot be read names the file', () => {
    const missing = join(dir, 'nope.jsonl');
    expect(() => loadTask('x', [missing])).toThrow(missing);
    expect(() => resolveTask(join(dir, 'nope.csv'))).toThrow(/unknown task/);
    const bad = write('bad.json', '{"data": 3}');
    expect(() => loadTask('b', [bad])).toThrow(bad);
  });

  it('resolveAnswer', () => {
    expect(resolveAnswer('A, C', ['x', 'y', 'z'])).toEqual([0, 2]);
    expect(resolveAnswer('AE', ['x', 'y', 'z'])).toBeNull();
    expect(resolveAnswer(['z', 'x'], ['x', 'y', 'z'])).toEqual([0, 2]);
  });
});

describe('prompts', () => {
  const docs: McDoc[] = Array.from({ length: 8 }, (_, i) => ({
    id: `d${i}`, question: `Q${i}?`, choices: ['a', 'b', 'c'], answer: [i % 3], multi: false, category: i < 4 ? 'x' : 'y',
  }));
  it('few-shot examples: seeded, same category when possible, never the question itself', () => {
    const a = fewShotExamples(docs, 1, 3, 7).map((d) => d.id);
    expect(a).toEqual(fewShotExamples(docs, 1, 3, 7).map((d) => d.id));
    expect(a).not.toContain('d1');
    expect(a.every((id) => ['d0', 'd2', 'd3'].includes(id))).toBe(true);
    const seeds = new Set(Array.from({ length: 10 }, (_, s) => fewShotExamples(docs, 5, 2, s).map((d) => d.id).join()));
    expect(seeds.size).toBeGreaterThan(1);
    expect(fewShotExamples(docs, 1, 5, 7)).toHaveLength(5); // more than the category holds: the whole task
  });
  it('letters prompt with few-shot answers; cloze candidates; multi-answer subsets', () => {
    const ctx = buildContext(docs, 0, { shots: 1, seed: 1, style: 'letters' });
    expect(ctx).toMatch(/^Q\d\?\nA\. a\nB\. b\nC\. c\nAnswer: [ABC]\n\nQ0\?\nA\. a\nB\. b\nC\. c\nAnswer:$/);
    expect(candidates(docs[0]!, 'cloze').map((c) => c.text)).toEqual(['a', 'b', 'c']);
    const multi = candidates({ ...docs[0]!, multi: true }, 'letters');
    expect(multi.map((c) => c.text.trim())).toEqual(['A', 'B', 'C', 'AB', 'AC', 'BC', 'ABC']);
  });
  it('exam partial credit', () => {
    expect(examScore([0, 2], [0, 2], 0.5)).toBe(1);
    expect(examScore([0], [0, 2], 0.5)).toBe(0.5);
    expect(examScore([0], [0, 2], 0)).toBe(0);
    expect(examScore([0, 1], [0, 2], 0.5)).toBe(0);
  });
});

const data = process.env.PATENTGPT_DATA ?? resolve(__dirname, '../../../shared/data');
const pae = join(data, 'cn-patent-agent-exam');
describe('real data', () => {
  it.skipIf(!existsSync(pae))(`loads the China patent agent exam CSVs${existsSync(pae) ? '' : ' (skipped: no ../shared/data; set PATENTGPT_DATA)'}`, () => {
    const t = resolveTask('pae', data);
    if ('kind' in t) expect.fail(`pae: expected a multiple-choice task, got ${t.kind}`);
    const single = t.docs.filter((d) => !d.multi);
    const multi = t.docs.filter((d) => d.multi);
    expect(single.length + multi.length + t.skipped.length).toBe(90 + 209);
    expect(single.length).toBeGreaterThan(80);
    expect(multi.length).toBeGreaterThan(190);
    expect(single.every((d) => d.answer.length === 1 && d.choices.length === 4)).toBe(true);
    expect(new Set(t.docs.map((d) => d.category)).size).toBeGreaterThan(1);
  });
});
