// Task definitions for the tasks that are not multiple choice: a JSON file (`*.task.json`) that
// names the data and how a row becomes a document:
//
//   { "kind": "generate", "name": "claim-to-abstract", "files": ["pairs.csv"],
//     "prompt": "Claim: {claim_text}\nAbstract:", "reference": "{patent_abstract}",
//     "category": "{cpc_subclass}", "maxTokens": 128, "stop": ["\n\n"] }
//   { "kind": "perplexity", "files": ["docs.jsonl"], "text": "{text}", "category": "{category}" }
//   { "kind": "phrase-matching", "files": ["train.csv"], "anchor": "{anchor}", "target": "{target}",
//     "context": "{context}", "score": "{score}", "category": "{context}" }
//   { "kind": "multiple-choice", "files": ["mcq_sing_pae.csv"], "template": "问题：{question}\n{options}\n答案：",
//     "style": "letters", "targetDelimiter": " ", "fewshotDelimiter": "\n\n", "description": "..." }
//
// A multiple-choice definition reads its files with the multiple-choice loaders (tasks.ts: PAE or
// MMLU CSV, IPQuiz JSON, JSONL) and gives the task its own prompt (mc.ts: template fields
// {question}, {options}, {A}..{Z}, {category}, {id}); options given at run time win.
//
// Files are CSV with a header, JSONL, or a JSON array of objects, relative to the definition's
// folder. A template's {field} is the row's field; a row that lacks a field, or whose field is
// empty, is skipped and listed (reason 'missing-field'). `name` defaults to the file name.
import { readFileSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { checkTemplate, type PromptStyle } from './mc.js';
import { parseCsv, type SkippedRow } from './tasks.js';

export type Row = Record<string, unknown>;

/** The rows of a CSV (header), JSONL or JSON-array file; unparsable lines are skipped and listed. */
export function readRows(file: string): { rows: { row: number; data: Row }[]; skipped: SkippedRow[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PatentGPTError('E_IO', `cannot read task file ${file}: ${(err as Error).message}`);
  }
  const ext = extname(file).toLowerCase();
  const rows: { row: number; data: Row }[] = [];
  const skipped: SkippedRow[] = [];
  if (ext === '.csv') {
    let table: string[][];
    try {
      table = parseCsv(text);
    } catch (err) {
      throw new PatentGPTError('E_FORMAT', `${file}: ${(err as Error).message}`);
    }
    const header = table[0] ?? [];
    for (let r = 1; r < table.length; r++) {
      const cells = table[r]!;
      if (cells.length !== header.length) {
        skipped.push({ file, row: r, reason: 'malformed-row', detail: `${cells.length} fields, the header has ${header.length}` });
        continue;
      }
      rows.push({ row: r, data: Object.fromEntries(header.map((h, j) => [h, cells[j]])) });
    }
  } else if (ext === '.jsonl') {
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        const o = JSON.parse(line) as unknown;
        if (o && typeof o === 'object' && !Array.isArray(o)) rows.push({ row: i + 1, data: o as Row });
        else skipped.push({ file, row: i + 1, reason: 'malformed-row', detail: 'not an object' });
      } catch (err) {
        skipped.push({ file, row: i + 1, reason: 'malformed-row', detail: `not JSON: ${(err as Error).message}` });
      }
    });
  } else if (ext === '.json') {
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch (err) {
      throw new PatentGPTError('E_FORMAT', `${file}: not valid JSON (${(err as Error).message})`);
    }
    if (!Array.isArray(o)) throw new PatentGPTError('E_FORMAT', `${file}: expected a JSON array of objects`);
    o.forEach((x, i) => {
      if (x && typeof x === 'object' && !Array.isArray(x)) rows.push({ row: i + 1, data: x as Row });
      else skipped.push({ file, row: i + 1, reason: 'malformed-row', detail: 'not an object' });
    });
  } else throw new PatentGPTError('E_ARGUMENT', `task file ${file}: unknown extension "${ext}" (expected .csv, .json or .jsonl)`);
  return { rows, skipped };
}

const FIELD = /\{([A-Za-z_][\w.-]*)\}/g;

/** Fills a template's {field}s from a row; null (with the field's name) when one is missing or empty. */
export function fillTemplate(template: string, row: Row): { text: string } | { missing: string } {
  let missing: string | null = null;
  const text = template.replace(FIELD, (_m, name: string) => {
    const v = row[name];
    const s = v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
    if (s.trim() === '' && missing === null) missing = name;
    return s;
  });
  return missing !== null ? { missing } : { text };
}

interface Common {
  name: string;
  files: string[];
  category?: string;
}
export interface GenerateDef extends Common {
  kind: 'generate';
  prompt: string;
  reference: string;
  maxTokens: number;
  stop: string[];
}
export interface PerplexityDef extends Common {
  kind: 'perplexity';
  text: string;
}
export interface PhraseMatchingDef extends Common {
  kind: 'phrase-matching';
  anchor: string;
  target: string;
  context: string;
  score: string;
}
export interface MultipleChoiceDef extends Common {
  kind: 'multiple-choice';
  style?: PromptStyle;
  template?: string;
  targetDelimiter?: string;
  fewshotDelimiter?: string;
  description?: string;
}
export type TaskDef = GenerateDef | PerplexityDef | PhraseMatchingDef | MultipleChoiceDef;

const KINDS = ['generate', 'perplexity', 'phrase-matching', 'multiple-choice'] as const;

/** Validates a definition object (field names in the errors); files resolve against `base`. */
export function parseTaskDef(o: unknown, base: string, where: string): TaskDef {
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new PatentGPTError('E_CONFIG', `${where}: a task definition is a JSON object`);
  const d = o as Record<string, unknown>;
  const str = (k: string, dflt?: string): string => {
    const v = d[k] ?? dflt;
    if (typeof v !== 'string' || v === '') throw new PatentGPTError('E_CONFIG', `${where}: "${k}" must be a non-empty string`);
    return v;
  };
  const kind = d.kind;
  if (!KINDS.includes(kind as (typeof KINDS)[number])) throw new PatentGPTError('E_CONFIG', `${where}: "kind" must be one of ${KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
  if (!Array.isArray(d.files) || d.files.length === 0 || !d.files.every((f) => typeof f === 'string' && f !== ''))
    throw new PatentGPTError('E_CONFIG', `${where}: "files" must be a non-empty array of paths`);
  const files = (d.files as string[]).map((f) => (isAbsolute(f) ? f : join(base, f)));
  const name = d.name === undefined ? basename(where).replace(/(\.task)?\.json$/, '') : str('name');
  const category = d.category === undefined ? undefined : str('category');
  switch (kind as TaskDef['kind']) {
    case 'generate': {
      const maxTokens = d.maxTokens ?? 128;
      if (!Number.isInteger(maxTokens) || (maxTokens as number) < 1) throw new PatentGPTError('E_CONFIG', `${where}: "maxTokens" must be an integer >= 1`);
      const stop = d.stop ?? [];
      if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string' && s !== '')) throw new PatentGPTError('E_CONFIG', `${where}: "stop" must be an array of non-empty strings`);
      return { kind: 'generate', name, files, category, prompt: str('prompt'), reference: str('reference'), maxTokens: maxTokens as number, stop: stop as string[] };
    }
    case 'perplexity':
      return { kind: 'perplexity', name, files, category, text: str('text', '{text}') };
    case 'multiple-choice': {
      const known = ['kind', 'name', 'files', 'style', 'template', 'targetDelimiter', 'fewshotDelimiter', 'description'];
      const unknown = Object.keys(d).filter((k) => !known.includes(k));
      if (unknown.length > 0) throw new PatentGPTError('E_CONFIG', `${where}: unknown field(s) ${unknown.map((k) => `"${k}"`).join(', ')} for a multiple-choice task (known: ${known.join(', ')})`);
      if (d.style !== undefined && d.style !== 'letters' && d.style !== 'cloze') throw new PatentGPTError('E_CONFIG', `${where}: "style" must be "letters" or "cloze"`);
      const opt = (k: string): string | undefined => {
        if (d[k] === undefined) return undefined;
        if (typeof d[k] !== 'string') throw new PatentGPTError('E_CONFIG', `${where}: "${k}" must be a string`);
        return d[k] as string;
      };
      const template = opt('template');
      if (template !== undefined) {
        if (template === '') throw new PatentGPTError('E_CONFIG', `${where}: "template" must be a non-empty string`);
        try {
          checkTemplate(template);
        } catch (err) {
          throw new PatentGPTError('E_CONFIG', `${where}: ${(err as Error).message}`);
        }
      }
      return {
        kind: 'multiple-choice', name, files, style: d.style as PromptStyle | undefined, template,
        targetDelimiter: opt('targetDelimiter'), fewshotDelimiter: opt('fewshotDelimiter'), description: opt('description'),
      };
    }
    case 'phrase-matching':
      return {
        kind: 'phrase-matching', name, files, category,
        anchor: str('anchor', '{anchor}'), target: str('target', '{target}'), context: str('context', '{context}'), score: str('score', '{score}'),
      };
  }
}

export function loadTaskDef(file: string): TaskDef {
  let o: unknown;
  try {
    o = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code) throw new PatentGPTError('E_IO', `cannot read task definition ${file}: ${(err as Error).message}`);
    throw new PatentGPTError('E_FORMAT', `${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseTaskDef(o, dirname(file), file);
}

/** Every row of a definition's files, each filled through `fields` (templates); rows with a missing field are skipped. */
export function collectRows<K extends string>(
  def: Common, fields: Record<K, string>,
): { items: { id: string; file: string; row: number; values: Record<K, string>; category: string; data: Row }[]; skipped: SkippedRow[] } {
  const items: { id: string; file: string; row: number; values: Record<K, string>; category: string; data: Row }[] = [];
  const skipped: SkippedRow[] = [];
  for (const file of def.files) {
    const read = readRows(file);
    skipped.push(...read.skipped);
    const stem = basename(file, extname(file));
    for (const { row, data } of read.rows) {
      const values = {} as Record<K, string>;
      let bad: string | null = null;
      for (const k of Object.keys(fields) as K[]) {
        const r = fillTemplate(fields[k], data);
        if ('missing' in r) {
          bad = r.missing;
          break;
        }
        values[k] = r.text;
      }
      if (bad !== null) {
        skipped.push({ file, row, reason: 'missing-field', detail: `field "${bad}" is missing or empty` });
        continue;
      }
      const cat = def.category ? fillTemplate(def.category, data) : null;
      items.push({ id: `${stem}:${row}`, file, row, values, category: cat && 'text' in cat ? cat.text : stem, data });
    }
  }
  return { items, skipped };
}
