// Reading SFT files: JSONL (one record a line), JSON (an array of records, or one record) and
// Parquet (hyparquet, one row group at a time), plain or gzip. Yields raw records with where
// they came from; a line that is not JSON is a skip, not an error. Only a file that cannot be
// opened at all throws.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import * as zlib from 'node:zlib';
import { PatentGPTError } from '../../errors.js';
import type { RecordSource, Skip } from './records.js';

export type SftFileFormat = 'jsonl' | 'json' | 'parquet';

export type RawItem = { ok: true; record: unknown; source: RecordSource } | { ok: false; skip: Skip };

/** The format from the extension (".gz" looked through), else from the first byte. */
export function sftFileFormat(file: string): SftFileFormat {
  const name = file.toLowerCase().replace(/\.gz$/, '');
  if (name.endsWith('.parquet')) return 'parquet';
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson')) return 'jsonl';
  if (name.endsWith('.json')) return 'json';
  throw new PatentGPTError('E_ARGUMENT', `SFT data ${file}: unknown format; name it .jsonl, .json or .parquet, or pass format`);
}

/** The file's bytes, through gunzip when it is named .gz. */
export function openText(file: string): NodeJS.ReadableStream {
  const s = fs.createReadStream(file);
  return file.toLowerCase().endsWith('.gz') ? s.pipe(zlib.createGunzip()) : s;
}

function checkReadable(file: string): void {
  try {
    if (!fs.statSync(file).isFile()) throw new Error('not a regular file');
  } catch (err) {
    throw new PatentGPTError('E_IO', `SFT data ${file}: cannot read it (${err instanceof Error ? err.message : String(err)}); check the path in the config`);
  }
}

async function* readJsonl(file: string): AsyncGenerator<RawItem> {
  const rl = readline.createInterface({ input: openText(file), crlfDelay: Infinity });
  let line = 0;
  let index = 0;
  for await (let text of rl) {
    line++;
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.trim() === '') continue;
    const source = { file, line, index: index++ };
    try {
      yield { ok: true, record: JSON.parse(text), source };
    } catch (err) {
      yield { ok: false, skip: { ...source, reason: 'malformed-json', detail: err instanceof Error ? err.message : String(err) } };
    }
  }
}

async function readAll(file: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of openText(file)) parts.push(c as Buffer);
  let s = Buffer.concat(parts).toString('utf8');
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  return s;
}

/** The 1-based line on which each element of a top-level JSON array starts (text already parsed). */
export function arrayElementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inStr = false;
  let esc = false;
  let expectElem = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) line++;
    if (inStr) {
      if (esc) esc = false;
      else if (c === 0x5c) esc = true;
      else if (c === 0x22) inStr = false;
      continue;
    }
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
    if (depth === 1 && expectElem && c !== 0x5d) {
      lines.push(line);
      expectElem = false;
    }
    if (c === 0x22) inStr = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth === 1) expectElem = c === 0x5b;
    } else if (c === 0x5d || c === 0x7d) depth--;
    else if (c === 0x2c && depth === 1) expectElem = true;
  }
  return lines;
}

async function* readJson(file: string): AsyncGenerator<RawItem> {
  let v: unknown;
  let text: string;
  try {
    text = await readAll(file);
    v = JSON.parse(text);
  } catch (err) {
    yield { ok: false, skip: { file, index: 0, reason: 'malformed-json', detail: `the file is not one JSON value (${err instanceof Error ? err.message : String(err)}); JSON Lines files must be named .jsonl` } };
    return;
  }
  const list = Array.isArray(v) ? v : [v];
  const lines = Array.isArray(v) ? arrayElementLines(text) : [1];
  for (let index = 0; index < list.length; index++) yield { ok: true, record: list[index], source: { file, index, line: lines[index] } };
}

async function* readParquet(file: string): AsyncGenerator<RawItem> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  const buf = await asyncBufferFromFile(file);
  let meta;
  try {
    meta = await parquetMetadataAsync(buf);
  } catch (err) {
    yield { ok: false, skip: { file, index: 0, reason: 'malformed-parquet', detail: `not a Parquet file (${err instanceof Error ? err.message : String(err)})` } };
    return;
  }
  let rowStart = 0;
  for (const rg of meta.row_groups) {
    const n = Number(rg.num_rows);
    let rows: unknown[];
    try {
      rows = (await parquetReadObjects({ file: buf, metadata: meta, rowStart, rowEnd: rowStart + n })) as unknown[];
    } catch (err) {
      // a corrupt row group costs its rows, not the file
      const detail = `row group at row ${rowStart} cannot be decoded (${err instanceof Error ? err.message : String(err)})`;
      for (let i = 0; i < n; i++) yield { ok: false, skip: { file, index: rowStart + i, reason: 'malformed-parquet', detail } };
      rowStart += n;
      continue;
    }
    for (let i = 0; i < rows.length; i++) yield { ok: true, record: rows[i], source: { file, index: rowStart + i } };
    rowStart += n;
  }
}

/** Every record of one file, in order. */
export async function* readSftRecords(file: string, format?: SftFileFormat): AsyncGenerator<RawItem> {
  checkReadable(file);
  const f = format ?? sftFileFormat(file);
  if (f === 'jsonl') yield* readJsonl(file);
  else if (f === 'json') yield* readJson(file);
  else yield* readParquet(file);
}

/** "file:line" (JSONL, JSON) or "file#index" (Parquet) for messages. */
export function where(s: RecordSource): string {
  return s.line !== undefined ? `${path.basename(s.file)}:${s.line}` : `${path.basename(s.file)}#${s.index}`;
}
