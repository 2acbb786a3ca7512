// Multiple-choice tasks and their loaders. Every loader returns the same McDoc shape; rows that
// cannot be scored (empty question, missing answer, answer not among the choices, fewer than two
// choices) are skipped and listed with their file, row and reason.
//
// Layouts read:
//  - China patent agent exam CSV (DISC-Law-Eval PAE, ../shared/data/cn-patent-agent-exam):
//    header `input,output,A,B,C,D,source,multichoice`; input is the question, output the answer
//    letters ("B", "ACD"), source the paper (the category), multichoice "True"/"False".
//  - MMLU / C-Eval CSV: with a header naming `question,A,B,C,D,answer` (C-Eval's id and
//    explanation columns, and a `subject`/`category` column, are read when present), or MMLU's
//    headerless `question,A,B,C,D,answer` rows. The category is the subject column, else the file
//    name without `_test`/`_dev`/`_val` and extension.
//  - MoZIP IPQuiz JSON (assumed layout; that data is not available here): a JSON array, or an
//    object with a `data`/`questions` array, of objects with
//      question: string
//      options: {"A": text, "B": text, ...} or [text, ...]   (also read as `choices`)
//      answer: "A" | "AC" | ["A", "C"] | 0-based index | [indices]
//      category | field | subject | type (optional): the category
//      id (optional)
//  - JSONL: one {question, choices: [text...], answer, category?} per line; the answer is a
//    0-based index, a letter ("B"), letters ("AC"), the text of a choice, or an array of these.
//
// In both JSON layouts `answers` (a list, as `answer` reads) gives the gold set of a multi-answer
// question, and `multi: true` marks a question as multi-answer even when its gold set has one
// letter: such questions are scored as sets (every non-empty subset is a candidate, see mc.ts).
// An `answer` beside `answers` must be one of them (files often keep the first correct letter
// there); one outside the set, or `multi: false` with several answers, skips the row. Fields no
// loader reads are listed in the task's warnings (the report and the CLI show them), never
// silently dropped: a field this version does not know may change what the row means.
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { PatentGPTError } from '../errors.js';
import type { McPrompt } from './mc.js';

export interface McDoc {
  id: string;
  question: string;
  choices: string[];
  /** Indices of the correct choices (sorted, at least one). */
  answer: number[];
  /** True for questions that may have several correct choices. */
  multi: boolean;
  category: string;
  /** Text before the examples for this question (an lm-eval YAML's description, rendered per row); else the run's. */
  description?: string;
}

export interface SkippedRow {
  file: string;
  /** 1-based row (CSV data row, JSONL line, JSON array index + 1). */
  row: number;
  reason: 'empty-question' | 'missing-answer' | 'answer-not-in-choices' | 'too-few-choices' | 'malformed-row' | 'missing-field' | 'bad-score' | 'conflicting-answers';
  detail: string;
}

export interface McTask {
  name: string;
  docs: McDoc[];
  skipped: SkippedRow[];
  /** Files read. */
  files: string[];
  /** What the loaders read but did not understand (unknown fields), one line each. */
  warnings?: string[];
  /** The task's own prompt (a definition's or an lm-eval YAML's); options given at run time win. */
  prompt?: McPrompt;
}

export const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** The fields the JSON and JSONL loaders read. */
const JSON_FIELDS = new Set(['id', 'question', 'choices', 'options', 'answer', 'answers', 'multi', 'category', 'field', 'subject', 'type']);

/** RFC 4180 CSV: quoted fields with "" escapes and embedded newlines; CRLF or LF; BOM dropped. */
export function parseCsv(text: string): string[][] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      field += c;
      i++;
      continue;
    }
    if (c === '"' && field === '') {
      quoted = true;
      i++;
    } else if (c === ',') {
      row.push(field);
      field = '';
      i++;
    } else if (c === '\n' || c === '\r') {
      row.push(field);
      field = '';
      if (!(row.length === 1 && row[0] === '')) rows.push(row);
      row = [];
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else {
      field += c;
      i++;
    }
  }
  if (quoted) throw new PatentGPTError('E_FORMAT', 'CSV: a quoted field is not closed before the end of the file');
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new PatentGPTError('E_IO', `cannot read task file ${file}: ${(err as Error).message}`);
  }
}

class Collector {
  docs: McDoc[] = [];
  skipped: SkippedRow[] = [];
  /** Unknown field -> rows that have it. */
  unknown = new Map<string, number>();
  constructor(readonly file: string) {}
  /** Counts the fields of a record that no loader reads. */
  noteFields(rec: Record<string, unknown>): void {
    for (const k of Object.keys(rec)) if (!JSON_FIELDS.has(k)) this.unknown.set(k, (this.unknown.get(k) ?? 0) + 1);
  }
  warnings(): string[] {
    return [...this.unknown].map(([k, n]) => `${this.file}: field "${k}" (${n} row${n === 1 ? '' : 's'}) is not understood and was ignored (known: ${[...JSON_FIELDS].join(', ')})`);
  }
  /** A JSON record: `answers`/`multi` read as the layout in this file's header says. */
  addRecord(row: number, id: string, rec: Record<string, unknown>, choices: unknown[], category: string): void {
    this.noteFields(rec);
    let answer = rec.answer;
    let multi: boolean | undefined;
    if (rec.multi !== undefined) {
      const m = typeof rec.multi === 'string' ? rec.multi.trim().toLowerCase() : rec.multi;
      if (m === true || m === 'true') multi = true;
      else if (m === false || m === 'false') multi = false;
      else return this.skip(row, 'malformed-row', `"multi" must be true or false, got ${JSON.stringify(rec.multi)}`);
    }
    if (rec.answers !== undefined && rec.answers !== null) {
      if (!Array.isArray(rec.answers)) return this.skip(row, 'malformed-row', `"answers" must be a list, got ${JSON.stringify(rec.answers)}`);
      const texts = choices.map((c) => (c === undefined || c === null ? '' : String(c).trim()));
      const set = resolveAnswer(rec.answers, texts);
      const one = answer === undefined || answer === null || answer === '' ? [] : resolveAnswer(answer, texts);
      if (set !== null && (one === null || !one.every((k) => set.includes(k))))
        return this.skip(row, 'conflicting-answers', `"answer" ${JSON.stringify(answer)} is not among "answers" ${JSON.stringify(rec.answers)}`);
      answer = rec.answers;
    }
    this.add(row, id, rec.question, choices, answer, category, multi);
  }
  skip(row: number, reason: SkippedRow['reason'], detail: string): void {
    this.skipped.push({ file: this.file, row, reason, detail });
  }
  /**
   * Validates and adds one question. `answer` is what the file holds; it is resolved against the
   * choices as indices, letters, letter strings or choice texts.
   */
  add(row: number, id: string, question: unknown, rawChoices: unknown[], answer: unknown, category: string, multi?: boolean): void {
    const q = typeof question === 'string' ? question.trim() : '';
    if (q === '') return this.skip(row, 'empty-question', 'the question is empty');
    const choices = rawChoices.map((c) => (c === undefined || c === null ? '' : String(c).trim()));
    while (choices.length > 0 && choices[choices.length - 1] === '') choices.pop(); // unused trailing options
    if (choices.length < 2) return this.skip(row, 'too-few-choices', `${choices.length} non-empty choice(s)`);
    if (answer === undefined || answer === null || (typeof answer === 'string' && answer.trim() === '') || (Array.isArray(answer) && answer.length === 0))
      return this.skip(row, 'missing-answer', 'no answer');
    const idx = resolveAnswer(answer, choices);
    if (idx === null) return this.skip(row, 'answer-not-in-choices', `answer ${JSON.stringify(answer)} is not among ${choices.length} choices`);
    if (idx.some((k) => choices[k] === '')) return this.skip(row, 'answer-not-in-choices', `answer ${JSON.stringify(answer)} points at an empty choice`);
    if (multi === false && idx.length > 1) return this.skip(row, 'conflicting-answers', `"multi" is false but the answer ${JSON.stringify(answer)} has ${idx.length} choices`);
    this.docs.push({ id, question: q, choices, answer: idx, multi: multi ?? idx.length > 1, category });
  }
}

/** Indices of the answer among the choices, or null when it does not resolve. */
export function resolveAnswer(answer: unknown, choices: readonly string[]): number[] | null {
  const parts: unknown[] = Array.isArray(answer) ? answer : [answer];
  const out = new Set<number>();
  for (const p of parts) {
    if (typeof p === 'number') {
      if (!Number.isInteger(p) || p < 0 || p >= choices.length) return null;
      out.add(p);
      continue;
    }
    if (typeof p !== 'string') return null;
    const s = p.trim();
    const byText = choices.indexOf(s);
    if (/^[A-Z]+$/.test(s.replace(/[\s,、]/g, '')) && !(byText >= 0 && s.length > 1)) {
      for (const ch of s.replace(/[\s,、]/g, '')) {
        const k = LETTERS.indexOf(ch);
        if (k < 0 || k >= choices.length) return null;
        out.add(k);
      }
    } else if (byText >= 0) out.add(byText);
    else return null;
  }
  return out.size > 0 ? [...out].sort((a, b) => a - b) : null;
}

function categoryFromFile(file: string): string {
  return basename(file, extname(file)).replace(/_(test|dev|val|validation)$/i, '');
}

/** China patent agent exam CSV (DISC-Law-Eval PAE layout). */
export function loadPaeCsv(file: string): { docs: McDoc[]; skipped: SkippedRow[] } {
  const rows = parseCsvFile(file);
  const header = rows[0] ?? [];
  const col = (name: string): number => header.indexOf(name);
  for (const need of ['input', 'output', 'A', 'B'])
    if (col(need) < 0) throw new PatentGPTError('E_FORMAT', `${file}: not a patent agent exam CSV (no "${need}" column in the header ${JSON.stringify(header)})`);
  const letterCols = [...LETTERS].map(col).filter((k, i) => k >= 0 && i < 26);
  const c = new Collector(file);
  const stem = basename(file, extname(file));
  for (let r = 1; r < rows.length; r++) {
    const row = rows[r]!;
    if (row.length !== header.length) {
      c.skip(r, 'malformed-row', `${row.length} fields, the header has ${header.length}`);
      continue;
    }
    const mc = col('multichoice') >= 0 ? row[col('multichoice')]!.trim().toLowerCase() === 'true' : undefined;
    const category = col('source') >= 0 && row[col('source')]!.trim() !== '' ? row[col('source')]!.trim() : stem;
    c.add(r, `${stem}:${r}`, row[col('input')], letterCols.map((k) => row[k]), row[col('output')], category, mc);
  }
  return { docs: c.docs, skipped: c.skipped };
}

function parseCsvFile(file: string): string[][] {
  try {
    return parseCsv(readText(file));
  } catch (err) {
    if (err instanceof PatentGPTError && err.code === 'E_FORMAT') throw new PatentGPTError('E_FORMAT', `${file}: ${err.message}`);
    throw err;
  }
}

/** MMLU (headerless) or C-Eval (header) CSV: question, A..D, answer. */
export function loadMmluCsv(file: string): { docs: McDoc[]; skipped: SkippedRow[] } {
  const rows = parseCsvFile(file);
  const c = new Collector(file);
  const stem = basename(file, extname(file));
  const header = rows[0] ?? [];
  const hasHeader = header.includes('question') && header.includes('answer');
  if (hasHeader) {
    const col = (n: string): number => header.indexOf(n);
    const letterCols = [...LETTERS].map(col).filter((k) => k >= 0);
    const catCol = col('subject') >= 0 ? col('subject') : col('category');
    for (let r = 1; r < rows.length; r++) {
      const row = rows[r]!;
      if (row.length !== header.length) {
        c.skip(r, 'malformed-row', `${row.length} fields, the header has ${header.length}`);
        continue;
      }
      const id = col('id') >= 0 ? `${stem}:${row[col('id')]}` : `${stem}:${r}`;
      const cat = catCol >= 0 && row[catCol]!.trim() !== '' ? row[catCol]!.trim() : categoryFromFile(file);
      c.add(r, id, row[col('question')], letterCols.map((k) => row[k]), row[col('answer')], cat);
    }
  } else {
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r]!;
      if (row.length < 4) {
        c.skip(r + 1, 'malformed-row', `${row.length} fields; expected question, choices, answer`);
        continue;
      }
      c.add(r + 1, `${stem}:${r + 1}`, row[0], row.slice(1, -1), row[row.length - 1], categoryFromFile(file));
    }
  }
  return { docs: c.docs, skipped: c.skipped };
}

function categoryOf(o: Record<string, unknown>, fallback: string): string {
  for (const k of ['category', 'field', 'subject', 'type']) if (typeof o[k] === 'string' && (o[k] as string).trim() !== '') return (o[k] as string).trim();
  return fallback;
}

function choicesOf(o: Record<string, unknown>): unknown[] | null {
  const v = o.options ?? o.choices;
  if (Array.isArray(v)) return v;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => /^[A-Z]$/.test(k)).sort();
    if (keys.length === 0) return null;
    // Letters must run A, B, ... without gaps, so that letters in the answer keep their meaning.
    const out: unknown[] = [];
    for (let i = 0; i <= LETTERS.indexOf(keys[keys.length - 1]!); i++) out.push((v as Record<string, unknown>)[LETTERS[i]!]);
    return out;
  }
  return null;
}

/** MoZIP IPQuiz JSON (layout in the header of this file). */
export function loadIpquizJson(file: string): Loaded {
  let data: unknown;
  try {
    data = JSON.parse(readText(file));
  } catch (err) {
    if (err instanceof PatentGPTError) throw err;
    throw new PatentGPTError('E_FORMAT', `${file}: not valid JSON (${(err as Error).message})`);
  }
  const list = Array.isArray(data) ? data : data && typeof data === 'object' ? ((data as Record<string, unknown>).data ?? (data as Record<string, unknown>).questions) : undefined;
  if (!Array.isArray(list)) throw new PatentGPTError('E_FORMAT', `${file}: expected a JSON array of questions (or an object with a "data" or "questions" array)`);
  const c = new Collector(file);
  const stem = categoryFromFile(file);
  list.forEach((o, i) => {
    if (!o || typeof o !== 'object') return c.skip(i + 1, 'malformed-row', 'not an object');
    const rec = o as Record<string, unknown>;
    const choices = choicesOf(rec);
    if (!choices) return c.skip(i + 1, 'too-few-choices', 'no "options" or "choices"');
    c.addRecord(i + 1, rec.id !== undefined ? String(rec.id) : `${stem}:${i + 1}`, rec, choices, categoryOf(rec, stem));
  });
  return { docs: c.docs, skipped: c.skipped, warnings: c.warnings() };
}

/** JSONL of {question, choices, answer, category?}. */
export function loadMcJsonl(file: string): Loaded {
  const lines = readText(file).split(/\r?\n/);
  const c = new Collector(file);
  const stem = categoryFromFile(file);
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      return c.skip(i + 1, 'malformed-row', `not JSON: ${(err as Error).message}`);
    }
    if (!rec || typeof rec !== 'object' || Array.isArray(rec)) return c.skip(i + 1, 'malformed-row', 'not an object');
    const choices = choicesOf(rec);
    if (!choices) return c.skip(i + 1, 'too-few-choices', 'no "choices"');
    c.addRecord(i + 1, rec.id !== undefined ? String(rec.id) : `${stem}:${i + 1}`, rec, choices, categoryOf(rec, stem));
  });
  return { docs: c.docs, skipped: c.skipped, warnings: c.warnings() };
}

export type TaskFormat = 'pae-csv' | 'mmlu-csv' | 'ipquiz-json' | 'jsonl';

/** Format from the extension (and, for CSV, the header: PAE's `input,output`). */
export function detectFormat(file: string): TaskFormat {
  const ext = extname(file).toLowerCase();
  if (ext === '.jsonl') return 'jsonl';
  if (ext === '.json') return 'ipquiz-json';
  if (ext === '.csv') {
    const head = readText(file).slice(0, 4096).replace(/^\ufeff/, '').split(/\r?\n/)[0] ?? '';
    return /^input,output,/.test(head) ? 'pae-csv' : 'mmlu-csv';
  }
  throw new PatentGPTError('E_ARGUMENT', `task file ${file}: unknown extension "${ext}" (expected .csv, .json or .jsonl)`);
}

/** What a loader returns: the questions, the rows it skipped, and what it did not understand. */
export interface Loaded {
  docs: McDoc[];
  skipped: SkippedRow[];
  warnings?: string[];
}

export function loadTaskFile(file: string, format: TaskFormat = detectFormat(file)): Loaded {
  switch (format) {
    case 'pae-csv':
      return loadPaeCsv(file);
    case 'mmlu-csv':
      return loadMmluCsv(file);
    case 'ipquiz-json':
      return loadIpquizJson(file);
    case 'jsonl':
      return loadMcJsonl(file);
  }
}

/** A task from one or more files (docs in file order). */
export function loadTask(name: string, files: readonly string[], format?: TaskFormat): McTask {
  const task: McTask = { name, docs: [], skipped: [], files: [...files], warnings: [] };
  for (const f of files) {
    const { docs, skipped, warnings } = loadTaskFile(f, format);
    task.docs.push(...docs);
    task.skipped.push(...skipped);
    task.warnings!.push(...(warnings ?? []));
  }
  return task;
}
