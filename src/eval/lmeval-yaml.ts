// lm-evaluation-harness task YAMLs over local data, read as multiple-choice tasks:
//
//   task: cn_pae_zh
//   dataset_path: json                      # or csv
//   dataset_kwargs: { data_files: { test: pae.jsonl } }   # paths relative to the YAML's folder
//   test_split: test
//   output_type: multiple_choice
//   doc_to_text: "问题：{{question}}\n答案："   # a field name, or a Jinja template over the row
//   doc_to_choice: "{{choices}}"              # a field, a template giving a list, or a YAML list
//   doc_to_target: answer                     # an index or a choice's text (field or template)
//   target_delimiter: " "                     # default " "; fewshot_delimiter default "\n\n"
//   description: "..."                        # optional; a field or a template, per row
//
// Each row becomes a question whose text is doc_to_text, whose candidates are the choices
// (scored as continuations after target_delimiter, lm-eval's multiple_choice), with acc and
// acc_norm as lm-eval computes them; the rules of lm-eval 0.4's ConfigurableTask are followed (a
// string naming a column is that column; a rendered target of digits is an index; a choice text
// is looked up). Jinja is rendered by jinja.ts. CSV cells are typed as the datasets library
// types them (columns of integers, floats or True/False). A data_files string or list is the
// split "train", as in `datasets`.
//
// What this reader cannot do the same way is refused (E_UNSUPPORTED: Python functions through
// !function, process_docs, include, other output types or dataset sources, list targets) or
// warned about (num_fewshot: examples come from our own seeded sampler over the same split, not
// lm-eval's; metrics other than acc and acc_norm; keys it does not know).
import { readFileSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join } from 'node:path';
import { parseDocument, type ScalarTag } from 'yaml';
import { PatentGPTError } from '../errors.js';
import { parsePythonLiteral, renderJinja } from './jinja.js';
import { readRows, type Row } from './taskdef.js';
import { parseCsv, type McDoc, type McTask, type SkippedRow } from './tasks.js';

/** Keys read; keys that change nothing for a local multiple-choice task; keys refused. */
const READ = new Set(['task', 'dataset_path', 'dataset_kwargs', 'test_split', 'validation_split', 'training_split', 'fewshot_split', 'output_type',
  'doc_to_text', 'doc_to_choice', 'doc_to_target', 'target_delimiter', 'fewshot_delimiter', 'description', 'num_fewshot', 'metric_list']);
const HARMLESS = new Set(['tag', 'group', 'metadata', 'should_decontaminate', 'doc_to_decontamination_query', 'dataset_name', 'task_alias', 'group_alias', 'unsafe_code']);
const REFUSED: Record<string, string> = {
  include: 'inline the included YAML (this reader takes one file)',
  process_docs: 'a Python function: preprocess the data file instead',
  process_results: 'a Python function',
  class: 'a Python task class',
  use_prompt: 'promptsource prompts',
  gen_prefix: 'a generation prefix',
  doc_to_image: 'images',
  doc_to_audio: 'audio',
};

const FUNCTION = Symbol('!function');

/** The `!function module.name` tag, kept as a marker so that it can be refused by name. */
const functionTag: ScalarTag = {
  tag: '!function',
  resolve: (value: string) => ({ [FUNCTION]: value }),
};

function loadYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PatentGPTError('E_IO', `cannot read task YAML ${file}: ${(err as Error).message}`);
  }
  const doc = parseDocument(text, { customTags: [functionTag] });
  if (doc.errors.length > 0) throw new PatentGPTError('E_FORMAT', `${file}: not valid YAML (${doc.errors[0]!.message})`);
  const o = doc.toJS() as unknown;
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new PatentGPTError('E_FORMAT', `${file}: a task YAML is a mapping of keys`);
  return o as Record<string, unknown>;
}

const isFunction = (v: unknown): v is Record<typeof FUNCTION, string> => !!v && typeof v === 'object' && FUNCTION in v;

/** Data files per split, as `datasets` names them. */
function splits(dataFiles: unknown, base: string, file: string): Map<string, string[]> {
  const abs = (p: unknown): string => {
    if (typeof p !== 'string' || p === '') throw new PatentGPTError('E_CONFIG', `${file}: dataset_kwargs.data_files holds ${JSON.stringify(p)}, not a path`);
    return isAbsolute(p) ? p : join(base, p);
  };
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(abs) : [abs(v)]);
  if (typeof dataFiles === 'string' || Array.isArray(dataFiles)) return new Map([['train', list(dataFiles)]]);
  if (dataFiles && typeof dataFiles === 'object') return new Map(Object.entries(dataFiles).map(([k, v]) => [k, list(v)]));
  throw new PatentGPTError('E_CONFIG', `${file}: dataset_kwargs.data_files is required (a path, a list, or a mapping split -> path)`);
}

/** CSV cells typed by column as pandas (under `datasets`) types them: all integers, all numbers, or all True/False. */
function typedCsvRows(path: string): { rows: { row: number; data: Row }[]; skipped: SkippedRow[] } {
  const table = parseCsv(readFileSync(path, 'utf8'));
  const header = table[0] ?? [];
  const skipped: SkippedRow[] = [];
  const body: { row: number; cells: string[] }[] = [];
  for (let r = 1; r < table.length; r++) {
    if (table[r]!.length !== header.length) skipped.push({ file: path, row: r, reason: 'malformed-row', detail: `${table[r]!.length} fields, the header has ${header.length}` });
    else body.push({ row: r, cells: table[r]! });
  }
  const kinds = header.map((_, j) => {
    const vals = body.map((b) => b.cells[j]!).filter((v) => v !== '');
    if (vals.length === 0) return 'str';
    if (vals.every((v) => /^[+-]?\d+$/.test(v))) return 'int';
    if (vals.every((v) => /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v))) return 'float';
    if (vals.every((v) => /^(true|false)$/i.test(v))) return 'bool';
    return 'str';
  });
  const rows = body.map(({ row, cells }) => ({
    row,
    data: Object.fromEntries(header.map((h, j) => {
      const v = cells[j]!;
      const k = kinds[j];
      return [h, v === '' ? v : k === 'int' || k === 'float' ? Number(v) : k === 'bool' ? v.toLowerCase() === 'true' : v];
    })) as Row,
  }));
  return { rows, skipped };
}

/** Rows of a `json` source: a JSON array, or JSON Lines (whatever the extension). */
function jsonRows(path: string): { rows: { row: number; data: Row }[]; skipped: SkippedRow[] } {
  const text = readFileSync(path, 'utf8');
  const head = text.trimStart()[0];
  if (head === '[' && extname(path).toLowerCase() === '.json') return readRows(path);
  // JSON Lines in a .json file: read as .jsonl.
  const rows: { row: number; data: Row }[] = [];
  const skipped: SkippedRow[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      const o = JSON.parse(line) as unknown;
      if (o && typeof o === 'object' && !Array.isArray(o)) rows.push({ row: i + 1, data: o as Row });
      else skipped.push({ file: path, row: i + 1, reason: 'malformed-row', detail: 'not an object' });
    } catch (err) {
      skipped.push({ file: path, row: i + 1, reason: 'malformed-row', detail: `not JSON: ${(err as Error).message}` });
    }
  });
  return { rows, skipped };
}

/** lm-eval's rule for doc_to_text/doc_to_target/doc_to_choice: a column name is the column, else a template. */
function field(spec: unknown, row: Row, columns: ReadonlySet<string>, where: string): unknown {
  if (typeof spec === 'number' || Array.isArray(spec)) return spec;
  if (typeof spec !== 'string') throw new PatentGPTError('E_CONFIG', `${where} must be a string (a column or a Jinja template), got ${JSON.stringify(spec)}`);
  return columns.has(spec) ? row[spec] : renderJinja(spec, row, where);
}

/** Reads an lm-evaluation-harness task YAML (layout and limits in this file's header). */
export function loadLmEvalYaml(file: string): McTask {
  const y = loadYaml(file);
  const base = dirname(file);
  const warnings: string[] = [];
  for (const [k, v] of Object.entries(y)) {
    if (isFunction(v)) throw new PatentGPTError('E_UNSUPPORTED', `${file}: "${k}: !function ${v[FUNCTION]}" calls Python; write the field as a column name or a Jinja template`);
    if (Object.hasOwn(REFUSED, k)) throw new PatentGPTError('E_UNSUPPORTED', `${file}: "${k}" is not supported (${REFUSED[k]})`);
    if (!READ.has(k) && !HARMLESS.has(k)) warnings.push(`${file}: key "${k}" is not understood and was ignored`);
  }
  if (y.output_type !== 'multiple_choice')
    throw new PatentGPTError('E_UNSUPPORTED', `${file}: output_type ${JSON.stringify(y.output_type)}: only multiple_choice tasks are read from lm-eval YAML`);
  if (y.dataset_path !== 'json' && y.dataset_path !== 'csv')
    throw new PatentGPTError('E_UNSUPPORTED', `${file}: dataset_path ${JSON.stringify(y.dataset_path)}: only local data (dataset_path: json or csv, with dataset_kwargs.data_files) is read`);
  for (const k of ['doc_to_text', 'doc_to_choice', 'doc_to_target'])
    if (y[k] === undefined || y[k] === null) throw new PatentGPTError('E_CONFIG', `${file}: "${k}" is required`);
  const kwargs = (y.dataset_kwargs ?? {}) as Record<string, unknown>;
  const bySplit = splits(kwargs.data_files, base, file);
  const split = (y.test_split ?? y.validation_split) as string | undefined;
  if (typeof split !== 'string') throw new PatentGPTError('E_CONFIG', `${file}: name the split to score with test_split (or validation_split)`);
  const files = bySplit.get(split);
  if (!files) throw new PatentGPTError('E_CONFIG', `${file}: split "${split}" is not in data_files (${[...bySplit.keys()].join(', ')}; a single path or a list is the split "train")`);
  const shots = Number(y.num_fewshot ?? 0);
  if (shots > 0) warnings.push(`${file}: num_fewshot ${shots} is not applied: pass --shots (examples are drawn by our own seeded sampler from the same split, not lm-eval's)`);
  for (const m of (Array.isArray(y.metric_list) ? y.metric_list : []) as { metric?: unknown }[])
    if (m && m.metric !== 'acc' && m.metric !== 'acc_norm') warnings.push(`${file}: metric ${JSON.stringify(m.metric)} is not computed (acc and acc_norm are)`);
  const targetDelimiter = y.target_delimiter === undefined ? ' ' : String(y.target_delimiter);
  const fewshotDelimiter = y.fewshot_delimiter === undefined ? '\n\n' : String(y.fewshot_delimiter);
  const name = typeof y.task === 'string' && y.task !== '' ? y.task : basename(file, extname(file));

  const docs: McDoc[] = [];
  const skipped: SkippedRow[] = [];
  for (const path of files) {
    let read: { rows: { row: number; data: Row }[]; skipped: SkippedRow[] };
    try {
      read = y.dataset_path === 'csv' ? typedCsvRows(path) : jsonRows(path);
    } catch (err) {
      if (err instanceof PatentGPTError) throw err;
      throw new PatentGPTError('E_IO', `${file}: cannot read data file ${path}: ${(err as Error).message}`);
    }
    skipped.push(...read.skipped);
    const stem = basename(path, extname(path));
    for (const { row, data } of read.rows) {
      const columns = new Set(Object.keys(data));
      const skip = (reason: SkippedRow['reason'], detail: string): void => void skipped.push({ file: path, row, reason, detail });
      let text = field(y.doc_to_text, data, columns, 'doc_to_text');
      if (typeof text !== 'string') text = text === undefined || text === null ? '' : String(text);
      let choices = field(y.doc_to_choice, data, columns, 'doc_to_choice');
      if (typeof choices === 'string') choices = parsePythonLiteral(choices);
      else if (choices && typeof choices === 'object' && !Array.isArray(choices)) choices = Object.values(choices);
      if (!Array.isArray(choices) || choices.length < 2) {
        skip('too-few-choices', `doc_to_choice gave ${JSON.stringify(choices)}`);
        continue;
      }
      const texts = choices.map((c) => (typeof c === 'string' ? c : String(c)));
      let target = field(y.doc_to_target, data, columns, 'doc_to_target');
      if (typeof target === 'string' && typeof y.doc_to_target === 'string' && !columns.has(y.doc_to_target)) {
        // A rendered template: digits are an index; "[...]" a list.
        if (/^\d+$/.test(target)) target = Number(target);
        else if (/^\[.*\]$/s.test(target)) target = parsePythonLiteral(target);
      }
      if (Array.isArray(target)) {
        skip('malformed-row', 'a list target (lm-eval multiple_target: any of several) is not supported');
        continue;
      }
      const gold = typeof target === 'number' ? target : typeof target === 'boolean' ? Number(target) : texts.indexOf(String(target));
      if (!Number.isInteger(gold) || gold < 0 || gold >= texts.length) {
        skip('answer-not-in-choices', `doc_to_target gave ${JSON.stringify(target)}, not an index or one of ${texts.length} choices`);
        continue;
      }
      const description = y.description === undefined || y.description === null || y.description === '' ? undefined : String(field(y.description, data, columns, 'description'));
      docs.push({ id: `${stem}:${row}`, question: text as string, choices: texts, answer: [gold], multi: false, category: name, ...(description !== undefined ? { description } : {}) });
    }
  }
  return { name, docs, skipped, files, warnings, prompt: { style: 'cloze', template: '{question}', targetDelimiter, fewshotDelimiter } };
}

