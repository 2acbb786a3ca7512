// A simple reader of plain-text corpora for pretraining: folders or files of .txt/.md (the text,
// cut into documents of a few KB at paragraph breaks), .jsonl (one JSON object per line) and
// .json (an array of objects, or one object), and .csv/.tsv tables (a header row, then one
// document per row). From a JSON object the text is its "text" or "content" field, else its
// string fields joined by newlines (instruction/input/output, ...); from a table row, the
// fields that contain letters (titles, abstracts, claims; ids and dates are left out).
// Every document of one given path gets that path's category: the folder's name (or the file's
// folder), made safe for shard categories. Unreadable files (I/O errors, invalid UTF-8, broken
// JSON) and files of other types are skipped and counted, never fatal. Folders are walked as the
// prep pipeline walks them (readers/index.ts walkInput: links followed, loops, hidden files,
// pipes and unreadable folders skipped and listed); a gzip file is read through gunzip whatever
// its name, other compressed files are listed as unreadable.
// (The full readers, filters and dedup of the data pipeline come with the Data issue.)
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { PatentGPTError } from '../errors.js';
import { detectCompression, walkInput } from './readers/index.js';
import { ShardWriter, type ShardManifest } from './shards.js';

export const TEXT_EXTENSIONS = ['.txt', '.md', '.jsonl', '.json', '.csv', '.tsv'] as const;

export interface TextDocument {
  text: string;
  category: string;
  /** File it came from. */
  source: string;
}

export interface TextReadReport {
  /** Files read (at least partly). */
  files: number;
  documents: number;
  /** Files that could not be read, with the reason. */
  unreadable: { file: string; reason: string }[];
  /** Files passed over for their type. */
  ignored: number;
  /** Lines or records inside readable files that were skipped (bad JSON line, no text). */
  skippedRecords: number;
  /** Paths not read: hidden, links that loop or lead nowhere, pipes and devices, unreadable folders. */
  skippedPaths: { path: string; reason: string }[];
}

/** A category name the shard writer accepts, from a folder name. */
export function categoryName(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return safe === '' ? 'text' : safe;
}

/** Documents of at most about `max` characters, cut at blank lines (or lines, or anywhere). */
export function splitText(text: string, max = 8192): string[] {
  const out: string[] = [];
  let rest = text.replace(/\r\n?/g, '\n').trim();
  while (rest.length > max) {
    let cut = rest.lastIndexOf('\n\n', max);
    if (cut < max / 4) cut = rest.lastIndexOf('\n', max);
    if (cut < max / 4) cut = max;
    out.push(rest.slice(0, cut).trim());
    rest = rest.slice(cut).trim();
  }
  if (rest) out.push(rest);
  return out.filter((d) => d.length > 0);
}

function textOfRecord(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  for (const k of ['text', 'content']) if (typeof o[k] === 'string' && (o[k] as string).trim()) return o[k] as string;
  const parts = Object.values(o).filter((x): x is string => typeof x === 'string' && x.trim() !== '');
  return parts.length ? parts.join('\n') : null;
}

/**
 * Rows of a CSV/TSV text (RFC 4180 quoting: "" inside quoted fields, separators and newlines
 * allowed in them), each with the 1-based line it starts on; a leading BOM is dropped and empty
 * lines are no rows.
 */
export function parseDelimitedRows(text: string, sep = ','): { fields: string[]; line: number }[] {
  const rows: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const endRow = (): void => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0] === '')) rows.push({ fields, line: rowLine });
    fields = [];
    field = '';
  };
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"' && field === '') quoted = true;
    else if (c === sep) {
      fields.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else field += c;
  }
  if (field !== '' || fields.length > 0) endRow();
  return rows;
}

/** Rows of a CSV/TSV text (parseDelimitedRows), rows of blank fields left out. */
export function parseDelimited(text: string, sep = ','): string[][] {
  return parseDelimitedRows(text, sep).map((r) => r.fields).filter((r) => r.some((f) => f.trim() !== ''));
}

/**
 * Reads the documents of `inputs` (files or folders, searched recursively in name order) and
 * passes each to `onDocument`. A missing input path is an error (E_DATA naming it); a file that
 * cannot be read or parsed is skipped and reported.
 */
export async function readTextDocuments(inputs: readonly string[], onDocument: (doc: TextDocument) => void | Promise<void>): Promise<TextReadReport> {
  const report: TextReadReport = { files: 0, documents: 0, unreadable: [], ignored: 0, skippedRecords: 0, skippedPaths: [] };
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  for (const input of inputs) {
    let st;
    try {
      st = await fsp.stat(input);
    } catch (err) {
      throw new PatentGPTError('E_DATA', `${input}: cannot read the data path (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const category = categoryName(path.basename(st.isDirectory() ? path.resolve(input) : path.dirname(path.resolve(input))));
    const walked = await walkInput(input);
    for (const k of walked.skipped) report.skippedPaths.push({ path: k.path, reason: k.reason });
    for (const file of walked.files) {
      const ext = path.extname(file.replace(/\.(gz|gzip)$/i, '')).toLowerCase();
      if (!(TEXT_EXTENSIONS as readonly string[]).includes(ext)) {
        report.ignored++;
        continue;
      }
      let text: string;
      try {
        let bytes: Uint8Array = await fsp.readFile(file);
        const comp = detectCompression(bytes.subarray(0, 8));
        if (comp !== null && comp !== 'gzip') {
          report.unreadable.push({ file, reason: `${comp}-compressed: decompress it first` });
          continue;
        }
        if (comp === 'gzip') bytes = gunzipSync(bytes);
        text = utf8.decode(bytes);
      } catch (err) {
        report.unreadable.push({ file, reason: err instanceof TypeError ? 'not valid UTF-8' : ((err as NodeJS.ErrnoException).code ?? (err as Error).message) });
        continue;
      }
      const texts: string[] = [];
      if (ext === '.txt' || ext === '.md') texts.push(...splitText(text));
      else if (ext === '.jsonl') {
        for (const line of text.split('\n')) {
          if (!line.trim()) continue;
          let rec: unknown;
          try {
            rec = JSON.parse(line);
          } catch {
            report.skippedRecords++;
            continue;
          }
          const t = textOfRecord(rec);
          if (t && t.trim()) texts.push(...splitText(t));
          else report.skippedRecords++;
        }
      } else if (ext === '.csv' || ext === '.tsv') {
        const rows = parseDelimited(text, ext === '.tsv' ? '\t' : ',');
        for (const r of rows.slice(1)) {
          const t = r.map((f) => f.trim()).filter((f) => /\p{L}/u.test(f)).join('\n');
          if (t) texts.push(...splitText(t));
          else report.skippedRecords++;
        }
      } else {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch (err) {
          report.unreadable.push({ file, reason: `not JSON (${(err as Error).message})` });
          continue;
        }
        const records = Array.isArray(json) ? json : [json];
        for (const rec of records) {
          const t = textOfRecord(rec);
          if (t && t.trim()) texts.push(...splitText(t));
          else report.skippedRecords++;
        }
      }
      report.files++;
      for (const t of texts) {
        report.documents++;
        await onDocument({ text: t, category, source: file });
      }
    }
  }
  return report;
}

/** What the shard writer needs from a tokenizer. */
export interface DocumentEncoder {
  readonly vocabSize: number;
  readonly name?: string;
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): ArrayLike<number>;
}

/**
 * Tokenizes the text documents of `inputs` (BOS + text + EOS each) into a shard set in `dir`
 * (replacing one that is there). Throws E_DATA when no document could be read.
 */
export async function writeTextShards(
  dir: string, inputs: readonly string[], tokenizer: DocumentEncoder,
): Promise<{ manifest: ShardManifest; report: TextReadReport }> {
  const w = await ShardWriter.create(dir, { vocabSize: tokenizer.vocabSize, tokenizer: tokenizer.name ?? 'unknown', overwrite: true });
  let report: TextReadReport;
  try {
    report = await readTextDocuments(inputs, (d) => w.add(tokenizer.encode(d.text, { bos: true, eos: true }), d.category));
  } catch (err) {
    await w.abort();
    throw err;
  }
  if (report.documents === 0) {
    await w.abort();
    const why = report.unreadable.length ? `; unreadable: ${report.unreadable.slice(0, 3).map((u) => `${u.file} (${u.reason})`).join(', ')}` : '';
    throw new PatentGPTError('E_DATA',
      `${inputs.join(', ')}: no text documents found (${report.files} readable ${TEXT_EXTENSIONS.join('/')} files, ${report.ignored} other files ignored${why})`);
  }
  return { manifest: await w.close(), report };
}
