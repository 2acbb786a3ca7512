// Reading preference files: JSONL, JSON and Parquet through the SFT reader (src/data/sft/read.ts),
// plus CSV/TSV (textfiles.ts's parser, RFC 4180: quoted fields may hold separators, quotes and
// newlines; the first row names the columns), for tables such as human vs machine-written patent abstracts. Yields raw
// records with where they came from; a bad line or row is a skip, never an error. Only a file
// that cannot be opened throws.
import * as fs from 'node:fs';
import { PatentGPTError } from '../../errors.js';
import { openText, readSftRecords, type SftFileFormat } from '../sft/read.js';
import { parseDelimitedRows } from '../textfiles.js';
import type { RecordSource } from '../sft/records.js';
import type { PreferenceSkip } from './records.js';

export type PreferenceFileFormat = SftFileFormat | 'csv' | 'tsv';
export const PREFERENCE_FORMATS: readonly PreferenceFileFormat[] = ['jsonl', 'json', 'parquet', 'csv', 'tsv'];

export type RawPreferenceItem = { ok: true; record: unknown; source: RecordSource } | { ok: false; skip: PreferenceSkip };

/** The format from the extension (".gz" looked through). */
export function preferenceFileFormat(file: string): PreferenceFileFormat {
  const name = file.toLowerCase().replace(/\.gz$/, '');
  if (name.endsWith('.csv')) return 'csv';
  if (name.endsWith('.tsv')) return 'tsv';
  if (name.endsWith('.parquet')) return 'parquet';
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson')) return 'jsonl';
  if (name.endsWith('.json')) return 'json';
  throw new PatentGPTError('E_ARGUMENT', `preference data ${file}: unknown format; name it .jsonl, .json, .parquet, .csv or .tsv, or pass format`);
}

export { parseDelimitedRows as parseDelimited } from '../textfiles.js';

async function readText(file: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of openText(file)) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

async function* readDelimited(file: string, sep: string): AsyncGenerator<RawPreferenceItem> {
  const rows = parseDelimitedRows(await readText(file), sep);
  const header = rows[0]?.fields.map((h) => h.trim());
  if (!header) return;
  for (let k = 1; k < rows.length; k++) {
    const { fields, line } = rows[k]!;
    const source = { file, line, index: k - 1 };
    if (fields.length !== header.length) {
      yield { ok: false, skip: { ...source, reason: 'malformed-csv', detail: `${fields.length} fields, the header has ${header.length}` } };
      continue;
    }
    yield { ok: true, record: Object.fromEntries(header.map((h, i) => [h, fields[i]!])), source };
  }
}

/** Every record of one file, in order. */
export async function* readPreferenceRecords(file: string, format?: PreferenceFileFormat): AsyncGenerator<RawPreferenceItem> {
  const f = format ?? preferenceFileFormat(file);
  if (f === 'csv' || f === 'tsv') {
    try {
      if (!fs.statSync(file).isFile()) throw new Error('not a regular file');
    } catch (err) {
      throw new PatentGPTError('E_IO', `preference data ${file}: cannot read it (${err instanceof Error ? err.message : String(err)}); check the path in the config`);
    }
    yield* readDelimited(file, f === 'csv' ? ',' : '\t');
    return;
  }
  for await (const item of readSftRecords(file, f)) {
    if (item.ok) yield item;
    else yield { ok: false, skip: { ...item.skip, reason: item.skip.reason === 'malformed-parquet' ? 'malformed-parquet' : 'malformed-json' } };
  }
}
