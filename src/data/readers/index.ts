// Streaming readers: one async generator per file that yields a ReadItem per input document
// (a Document, or a rejection with its reason) and holds at most one document in memory.
// Formats: USPTO full text (see uspto.ts), JSON arrays, JSONL, CSV, TSV, plain text and Parquet.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { PatentGPTError } from '../../errors.js';
import { type Category, type Document, type ReadItem, type RejectReason, emptyDocument, joinText } from '../document.js';
import { USPTO_SPECS, parseTaggedRecord, parseUsptoXml } from './uspto.js';
import { scanXml, tidy } from './xml.js';

export type Format = 'uspto-xml' | 'uspto-aps' | 'uspto-brs' | 'xml' | 'json' | 'jsonl' | 'csv' | 'tsv' | 'text' | 'parquet';
export const FORMATS: readonly Format[] = ['uspto-xml', 'uspto-aps', 'uspto-brs', 'xml', 'json', 'jsonl', 'csv', 'tsv', 'text', 'parquet'];

/** Which record fields fill which document fields; each may name several columns (joined). */
export interface FieldMap {
  id?: string;
  title?: string | string[];
  abstract?: string | string[];
  claims?: string | string[];
  description?: string | string[];
  /** Columns joined (blank line between) into text; default: the document fields, else every string column. */
  text?: string | string[];
  lang?: string;
  category?: string;
}

export interface ReadOptions {
  /** Default: from the extension and the first 64 KiB. */
  format?: Format;
  /** Category of every document (USPTO readers default to patent/application). */
  category?: Category;
  /** Language of every document when known ('en', 'zh'); default 'und' (identified later). */
  lang?: string;
  fields?: FieldMap;
  /** CSV/TSV: whether the first row names the columns (default true). */
  header?: boolean;
  /** CSV/TSV without a header: column names. */
  columns?: string[];
  /** Plain text: one document per file (default), per blank-line-separated paragraph, or per line. */
  split?: 'file' | 'paragraph' | 'line';
  /** A document larger than this is rejected as too-large (default 64 MiB). */
  maxDocBytes?: number;
  /** Replace invalid UTF-8 with U+FFFD instead of rejecting the document (default false). */
  repairUtf8?: boolean;
  /** Read chunk size (default 1 MiB). */
  chunkBytes?: number;
  /** Called with the bytes read so far (for progress). */
  onBytes?: (n: number) => void;
  /** The file's name in the ids of its documents that have no id of their own (`<idBase>#<k>`);
   *  default its base name. The prep pipeline passes the path relative to the input's folder, so
   *  that two files named law.md in different folders give different ids. */
  idBase?: string;
  /** Set by readRaw from the file's magic bytes: the file is gzip and is read through gunzip. */
  gzip?: boolean;
}

/** Compression formats told by their magic bytes, whatever the file's extension. */
export type Compression = 'gzip' | 'zstd' | 'bzip2' | 'xz' | 'zip';

/** The compression of a file from its first bytes, or null for none. */
export function detectCompression(head: Uint8Array): Compression | null {
  const b = head;
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  if (b.length >= 4 && b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return 'zstd';
  if (b.length >= 4 && b[0] === 0x42 && b[1] === 0x5a && b[2] === 0x68 && b[3]! >= 0x31 && b[3]! <= 0x39) return 'bzip2';
  if (b.length >= 6 && b[0] === 0xfd && b[1] === 0x37 && b[2] === 0x7a && b[3] === 0x58 && b[4] === 0x5a && b[5] === 0x00) return 'xz';
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04) return 'zip';
  return null;
}

/** How to decompress what Node cannot read itself. */
const DECOMPRESS_HINT: Record<Exclude<Compression, 'gzip'>, string> = {
  zstd: 'zstd -d FILE',
  bzip2: 'bunzip2 FILE',
  xz: 'xz -d FILE',
  zip: 'unzip FILE',
};

const FATAL = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const LENIENT = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false });

function reject(id: string, source: string, reason: RejectReason, detail: string): ReadItem {
  return { ok: false, rejected: { id, source, reason, detail } };
}

/** A rejection of the whole file (it could not be read, decoded or parsed at all). */
function rejectFile(id: string, source: string, reason: RejectReason, detail: string): ReadItem {
  return { ok: false, rejected: { id, source, reason, detail, wholeFile: true } };
}

/** Decodes UTF-8, or says it is invalid (null) unless repair is on. */
function decode(bytes: Uint8Array, repair: boolean): string | null {
  try {
    return FATAL.decode(bytes);
  } catch {
    return repair ? LENIENT.decode(bytes) : null;
  }
}

/** Guesses the format from the extension and the first bytes. */
export function detectFormat(file: string, head: Buffer): Format {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.parquet') return 'parquet';
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv') return 'csv';
  if (ext === '.tsv') return 'tsv';
  if (ext === '.greenbook' || ext === '.aps') return 'uspto-aps';
  const s = head.toString('latin1');
  if (s.includes('*** BRS DOCUMENT BOUNDARY ***')) return 'uspto-brs';
  if (/^\s*PATN\r?\n/.test(s)) return 'uspto-aps';
  if (USPTO_SPECS.some((sp) => new RegExp(`<${sp.root}[\\s>]`).test(s))) return 'uspto-xml';
  if (ext === '.xml' || ext === '.sgml' || /^\s*(<\?xml|<!DOCTYPE)/.test(s)) return 'xml';
  if (ext === '.json') {
    const t = s.replace(/^\ufeff|^\xef\xbb\xbf/, '').trimStart();
    return t.startsWith('[') || !/^\{[^\n]*\}\s*\n\s*\{/.test(t) ? 'json' : 'jsonl';
  }
  return 'text';
}

async function readHead(file: string, n = 65536, gzip = false): Promise<Buffer> {
  if (gzip) {
    // the first n bytes of the decompressed stream
    const parts: Buffer[] = [];
    let size = 0;
    const src = fs.createReadStream(file).pipe(zlib.createGunzip());
    try {
      for await (const c of src) {
        parts.push(c as Buffer);
        size += (c as Buffer).length;
        if (size >= n) break;
      }
    } finally {
      src.destroy();
    }
    return Buffer.concat(parts).subarray(0, n);
  }
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function* chunks(file: string, opts: ReadOptions): AsyncGenerator<Buffer> {
  let total = 0;
  const raw = fs.createReadStream(file, { highWaterMark: opts.chunkBytes ?? 1 << 20 });
  const src = opts.gzip ? raw.pipe(zlib.createGunzip({ chunkSize: Math.min(opts.chunkBytes ?? 1 << 20, 1 << 20) })) : raw;
  if (opts.gzip) raw.on('error', (e) => src.destroy(e));
  for await (const c of src) {
    const b = c as Buffer;
    total += b.length;
    opts.onBytes?.(total);
    yield b;
  }
}

/** Streams the documents of one file. Unreadable files yield one 'unreadable' rejection. */
export async function* readDocuments(file: string, opts: ReadOptions = {}): AsyncGenerator<ReadItem> {
  for await (const x of readRaw(file, opts)) yield withOverrides(isRaw(x) ? parseRaw(x) : x, opts);
}

/**
 * A USPTO XML document split out of its file but not parsed: parsing is most of the cost of
 * reading, so the prep pipeline splits in one thread and parses in workers (parseRaw).
 */
export interface RawDocument {
  raw: 'uspto-xml';
  bytes: Uint8Array;
  /** The root element (which USPTO format). */
  root: string;
  source: string;
  fallbackId: string;
  /** The first 4 KiB as latin1, for an id when the bytes do not decode. */
  head: string;
  repairUtf8: boolean;
}

export function isRaw(x: ReadItem | RawDocument): x is RawDocument {
  return 'raw' in x;
}

/** A raw document parsed, as readDocuments would have yielded it (before the options' overrides). */
export function parseRaw(r: RawDocument): ReadItem {
  const text = decode(r.bytes, r.repairUtf8);
  if (text === null) return reject(idFromHead(r.head, r.fallbackId), r.source, 'bad-utf8', 'invalid UTF-8 (set repairUtf8 to keep it with U+FFFD)');
  return parseUsptoXml(text, USPTO_SPECS.find((sp) => sp.root === r.root)!, r.source, r.fallbackId);
}

/** Applies the category and language the options force on every document. */
export function withOverrides(item: ReadItem, opts: Pick<ReadOptions, 'category' | 'lang'>): ReadItem {
  if (item.ok) {
    if (opts.category) item.doc.category = opts.category;
    if (opts.lang) item.doc.lang = opts.lang;
  }
  return item;
}

/** As readDocuments, except that USPTO XML documents come unparsed (RawDocument) and without overrides. */
export async function* readRaw(file: string, opts: ReadOptions = {}): AsyncGenerator<ReadItem | RawDocument> {
  const source = file;
  let format = opts.format;
  try {
    // compressed or not is told by the magic bytes, never by the name
    const magic = await readHead(file, 8);
    const comp = detectCompression(magic);
    if (comp !== null && comp !== 'gzip') {
      yield rejectFile(`${opts.idBase ?? path.basename(file)}#0`, source, 'compressed', `${comp}-compressed (by its magic bytes): decompress it first (${DECOMPRESS_HINT[comp]})`);
      return;
    }
    opts = { ...opts, gzip: comp === 'gzip' };
    // the format from the name without its compression suffix and from the (decompressed) head
    if (!format) format = detectFormat(file.replace(/\.(gz|gzip|zst|bz2|xz)$/i, ''), await readHead(file, 65536, opts.gzip));
    if (opts.gzip && format === 'parquet') {
      yield rejectFile(`${opts.idBase ?? path.basename(file)}#0`, source, 'compressed', 'gzip-compressed Parquet: Parquet compresses its own pages; decompress the file (gunzip)');
      return;
    }
  } catch (err) {
    yield rejectFile(`${opts.idBase ?? path.basename(file)}#0`, source, 'unreadable', err instanceof Error ? err.message : String(err));
    return;
  }
  if (!FORMATS.includes(format))
    throw new PatentGPTError('E_CONFIG', `${file}: format must be one of ${FORMATS.join(', ')}, got '${String(format)}'`);
  let gen: AsyncGenerator<ReadItem | RawDocument>;
  switch (format) {
    case 'uspto-xml':
      gen = readUsptoXml(file, opts);
      break;
    case 'uspto-aps':
    case 'uspto-brs':
      gen = readTagged(file, format === 'uspto-aps' ? 'aps' : 'brs', opts);
      break;
    case 'xml':
      gen = readGenericXml(file, opts);
      break;
    case 'json':
      gen = readJsonArray(file, opts);
      break;
    case 'jsonl':
      gen = readJsonl(file, opts);
      break;
    case 'csv':
    case 'tsv':
      gen = readDelimited(file, format === 'csv' ? 0x2c : 0x09, opts);
      break;
    case 'parquet':
      gen = readParquet(file, opts);
      break;
    default:
      gen = readText(file, opts);
  }
  try {
    yield* gen;
  } catch (err) {
    // A read error mid-file (EIO, a file removed): counted, the run goes on with the next file.
    yield rejectFile(`${opts.idBase ?? path.basename(file)}#io`, source, 'unreadable', err instanceof Error ? err.message : String(err));
  }
}

// ------------------------------------------------------------------ USPTO XML

/** Byte-level splitter: yields each `<root ...> ... </root>` span; a span cut by EOF or by the next
 *  root start is reported as truncated. Memory: one document (bounded by maxDocBytes). */
async function* splitXml(
  src: AsyncIterable<Buffer>,
  root: string,
  maxBytes: number,
): AsyncGenerator<{ bytes: Buffer | null; status: 'ok' | 'truncated' | 'too-large'; head: string }> {
  const startPat = Buffer.from(`<${root}`, 'latin1');
  const endPat = Buffer.from(`</${root}>`, 'latin1');
  const keep = Math.max(startPat.length, endPat.length) + 1;
  let carry: Buffer = Buffer.alloc(0);
  let inDoc = false;
  let parts: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  const findStart = (b: Buffer, from: number): number => {
    for (let i = b.indexOf(startPat, from); i >= 0; i = b.indexOf(startPat, i + 1)) {
      if (i + startPat.length >= b.length) return -1; // cannot tell yet; the carry re-scans it
      const c = b[i + startPat.length]!;
      if (c === 0x20 || c === 0x3e || c === 0x0a || c === 0x0d || c === 0x09) return i;
    }
    return -1;
  };
  let head = ''; // the document's first 4 KiB, for an id when it cannot be parsed
  const headOf = (): string => head;
  const add = (b: Buffer): void => {
    if (head.length < 4096) head += b.subarray(0, 4096 - head.length).toString('latin1');
    size += b.length;
    if (size > maxBytes) {
      tooLarge = true;
      if (parts.length > 1) parts = [parts[0]!];
      if (parts.length === 0) parts.push(Buffer.from(b.subarray(0, 4096)));
      return;
    }
    parts.push(b);
  };
  let pos = 0; // where the scan resumes in carry + chunk
  for await (const chunk of src) {
    const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    let docStart = 0;
    for (;;) {
      if (!inDoc) {
        const s = findStart(buf, pos);
        if (s < 0) {
          carry = Buffer.from(buf.subarray(Math.max(pos, buf.length - keep)));
          pos = 0;
          break;
        }
        inDoc = true;
        docStart = s;
        pos = s + startPat.length;
        parts = [];
        size = 0;
        head = '';
        tooLarge = false;
      }
      const e = buf.indexOf(endPat, pos);
      const s = findStart(buf, pos);
      if (s >= 0 && (e < 0 || s < e)) {
        add(buf.subarray(docStart, s));
        yield { bytes: null, status: 'truncated', head: headOf() };
        inDoc = false;
        pos = s;
        continue;
      }
      if (e >= 0) {
        add(buf.subarray(docStart, e + endPat.length));
        const head = headOf();
        yield tooLarge ? { bytes: null, status: 'too-large', head } : { bytes: Buffer.concat(parts, size), status: 'ok', head };
        inDoc = false;
        parts = [];
        pos = e + endPat.length;
        continue;
      }
      const cut = Math.max(docStart, buf.length - keep);
      // copy: the chunk buffer may be reused by the stream
      add(Buffer.from(buf.subarray(docStart, cut)));
      carry = Buffer.from(buf.subarray(cut));
      pos = Math.max(0, pos - cut);
      docStart = 0;
      break;
    }
  }
  if (inDoc) yield { bytes: null, status: 'truncated', head: headOf() };
}

function idFromHead(head: string, fallback: string): string {
  const m = /<(?:doc-number|B110><DNUM><PDAT)>\s*([A-Z0-9]+)/.exec(head);
  return m ? `US${m[1]}?` : fallback;
}

async function* readUsptoXml(file: string, opts: ReadOptions): AsyncGenerator<ReadItem | RawDocument> {
  const head = (await readHead(file, 65536, opts.gzip)).toString('latin1');
  const spec = USPTO_SPECS.find((sp) => new RegExp(`<${sp.root}[\\s>]`).test(head))!;
  const base = opts.idBase ?? path.basename(file);
  let k = 0;
  for await (const part of splitXml(chunks(file, opts), spec.root, opts.maxDocBytes ?? 64 << 20)) {
    const fallback = `${base}#${k++}`;
    if (part.status !== 'ok') {
      const id = idFromHead(part.head, fallback);
      yield reject(id, file, part.status === 'truncated' ? 'truncated' : 'too-large',
        part.status === 'truncated' ? `<${spec.root}> without its end tag` : `document over ${opts.maxDocBytes ?? 64 << 20} bytes`);
      continue;
    }
    yield { raw: 'uspto-xml', bytes: part.bytes!, root: spec.root, source: file, fallbackId: fallback, head: part.head, repairUtf8: opts.repairUtf8 ?? false };
  }
}

/** Any other XML (US Code in USLM, CPC schemes): the whole file's text as one document. */
async function* readGenericXml(file: string, opts: ReadOptions): AsyncGenerator<ReadItem> {
  const base = opts.idBase ?? path.basename(file);
  const bytes = await readBounded(file, opts);
  if (!bytes) return yield rejectFile(`${base}#0`, file, 'too-large', `file over ${opts.maxDocBytes ?? 64 << 20} bytes`);
  const s = decode(bytes, opts.repairUtf8 ?? false);
  if (s === null) return yield rejectFile(`${base}#0`, file, 'bad-utf8', 'invalid UTF-8');
  const parts: string[] = [];
  let title = '';
  let inTitle = 0;
  const blocks = /^(p|para|paragraph|section|heading|title|num|content|chapter|part|level|item|li|row|text|header|subsection)$/i;
  const err = scanXml(s, {
    open(name) {
      if (blocks.test(name)) parts.push('\n');
      if (!title && /^(title|dc:title|docTitle)$/.test(name)) inTitle++;
    },
    text(t) {
      parts.push(t.replace(/\s+/g, ' '));
      if (inTitle > 0) title += t;
    },
    close(name) {
      if (blocks.test(name)) parts.push('\n');
      if (inTitle > 0 && /^(title|dc:title|docTitle)$/.test(name)) inTitle--;
    },
  });
  if (err) return yield rejectFile(`${base}#0`, file, 'malformed-xml', err);
  const doc = emptyDocument(base, file, opts.category ?? 'general');
  doc.title = tidy(title);
  doc.text = tidy(parts.join(''));
  doc.meta.format = 'xml';
  if (!doc.text) return yield reject(doc.id, file, 'empty', 'no text');
  yield { ok: true, doc };
}

async function readBounded(file: string, opts: ReadOptions): Promise<Buffer | null> {
  const max = opts.maxDocBytes ?? 64 << 20;
  if (opts.gzip) {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const c of chunks(file, opts)) {
      size += c.length;
      if (size > max) return null;
      parts.push(c);
    }
    return Buffer.concat(parts, size);
  }
  const st = await fs.promises.stat(file);
  if (st.size > max) return null;
  const b = await fs.promises.readFile(file);
  opts.onBytes?.(b.length);
  return b;
}

// ------------------------------------------------------------------ tagged text

async function* lines(file: string, opts: ReadOptions): AsyncGenerator<Buffer> {
  let carry: Buffer | null = null;
  for await (const chunk of chunks(file, opts)) {
    const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
    let pos = 0;
    for (let nl = buf.indexOf(0x0a, pos); nl >= 0; nl = buf.indexOf(0x0a, pos)) {
      yield buf.subarray(pos, nl > pos && buf[nl - 1] === 0x0d ? nl - 1 : nl);
      pos = nl + 1;
    }
    carry = pos < buf.length ? Buffer.from(buf.subarray(pos)) : null;
  }
  if (carry && carry.length > 0) yield carry;
}

async function* readTagged(file: string, flavor: 'aps' | 'brs', opts: ReadOptions): AsyncGenerator<ReadItem> {
  const base = opts.idBase ?? path.basename(file);
  const max = opts.maxDocBytes ?? 64 << 20;
  let rec: string[] | null = null;
  let size = 0;
  let bad = false;
  let k = 0;
  const finish = (): ReadItem | null => {
    if (!rec) return null;
    const fallback = `${base}#${k++}`;
    const r = rec;
    rec = null;
    if (bad) return reject(fallback, file, 'bad-utf8', 'invalid UTF-8 in the record');
    if (size > max) return reject(fallback, file, 'too-large', `record over ${max} bytes`);
    return parseTaggedRecord(r, flavor, file, fallback);
  };
  for await (const raw of lines(file, opts)) {
    const isStart = flavor === 'aps' ? raw.length === 4 && raw.toString('latin1') === 'PATN' : raw.toString('latin1').startsWith('*** BRS DOCUMENT BOUNDARY');
    if (isStart) {
      const done = finish();
      if (done) yield done;
      rec = [];
      size = 0;
      bad = false;
      if (flavor === 'aps') rec.push('PATN');
      continue;
    }
    if (!rec) {
      if (flavor === 'brs') continue; // the index line before the first boundary
      rec = [];
      size = 0;
      bad = false;
    }
    size += raw.length + 1;
    if (size > max) continue;
    const s = decode(raw, opts.repairUtf8 ?? false);
    if (s === null) bad = true;
    else rec.push(s);
  }
  const done = finish();
  if (done) yield done;
}

// ------------------------------------------------------------------ records (JSON, CSV, Parquet)

const GUESS: Record<'id' | 'title' | 'abstract' | 'claims' | 'description' | 'text', string[]> = {
  id: ['id', 'patent_id', 'patent_number', 'publication_number', 'pn', 'doc_id', 'application_number'],
  title: ['title', 'patent_title', 'invention_title'],
  abstract: ['abstract', 'patent_abstract'],
  claims: ['claims', 'claim', 'claim_text', 'first_claim'],
  description: ['description', 'detailed_description', 'body'],
  text: ['text', 'content', 'document', 'passage'],
};

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return v.map(cell).filter((s) => s).join('\n');
  return JSON.stringify(v);
}

function pick(rec: Record<string, unknown>, spec: string | string[] | undefined, guesses: string[]): string {
  const names = spec === undefined ? guesses.slice(0, 1).concat(guesses.slice(1)) : Array.isArray(spec) ? spec : [spec];
  if (spec !== undefined) return names.map((n) => cell(rec[n]).trim()).filter((s) => s).join('\n\n');
  for (const n of names) {
    const v = cell(rec[n]).trim();
    if (v) return v;
  }
  return '';
}

/** Maps one record (JSON object, CSV row, Parquet row) onto a Document. */
export function recordToDocument(rec: Record<string, unknown>, source: string, fallbackId: string, opts: ReadOptions): ReadItem {
  const f = opts.fields ?? {};
  const id = pick(rec, f.id, GUESS.id) || fallbackId;
  const doc: Document = emptyDocument(id, source, opts.category ?? 'general');
  doc.title = pick(rec, f.title, GUESS.title);
  doc.abstract = pick(rec, f.abstract, GUESS.abstract);
  doc.claims = pick(rec, f.claims, GUESS.claims);
  doc.description = pick(rec, f.description, GUESS.description);
  if (f.text !== undefined) doc.text = pick(rec, f.text, []);
  else {
    doc.text = pick(rec, undefined, GUESS.text);
    if (!doc.text && typeof rec.instruction === 'string') {
      // instruction data (Alpaca style): the prompt and the answer, in order
      doc.text = ['instruction', 'input', 'output'].map((k) => cell(rec[k]).trim()).filter((s) => s).join('\n\n');
      if (!opts.category) doc.category = 'sft';
    }
    if (!doc.text) doc.text = joinText(doc);
    if (!doc.text)
      doc.text = Object.values(rec)
        .filter((v) => typeof v === 'string')
        .map((v) => (v as string).trim())
        .filter((s) => s)
        .join('\n\n');
  }
  if (f.lang && rec[f.lang] !== undefined) doc.lang = cell(rec[f.lang]);
  if (f.category && rec[f.category] !== undefined) doc.category = cell(rec[f.category]);
  if (!doc.text.trim()) return reject(id, source, 'empty', 'record without text');
  return { ok: true, doc };
}

function parseRecord(bytes: Uint8Array, file: string, fallback: string, opts: ReadOptions): ReadItem {
  const s = decode(bytes, opts.repairUtf8 ?? false);
  if (s === null) return reject(fallback, file, 'bad-utf8', 'invalid UTF-8');
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch (err) {
    return reject(fallback, file, 'malformed-json', err instanceof Error ? err.message : String(err));
  }
  if (typeof v === 'string') v = { text: v };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return reject(fallback, file, 'malformed-json', 'a record must be an object or a string');
  return recordToDocument(v as Record<string, unknown>, file, fallback, opts);
}

async function* readJsonl(file: string, opts: ReadOptions): AsyncGenerator<ReadItem> {
  const base = opts.idBase ?? path.basename(file);
  const max = opts.maxDocBytes ?? 64 << 20;
  let k = 0;
  let first = true;
  for await (let line of lines(file, opts)) {
    if (first && line[0] === 0xef && line[1] === 0xbb && line[2] === 0xbf) line = line.subarray(3);
    first = false;
    if (line.every((c) => c === 0x20 || c === 0x09 || c === 0x0d)) continue;
    const fallback = `${base}#${k++}`;
    if (line.length > max) yield reject(fallback, file, 'too-large', `line over ${max} bytes`);
    else yield parseRecord(line, file, fallback, opts);
  }
}

/** A top-level JSON array, one element at a time (bytes scanned for depth and strings);
 *  a file holding one object is one record. */
async function* readJsonArray(file: string, opts: ReadOptions): AsyncGenerator<ReadItem> {
  const base = opts.idBase ?? path.basename(file);
  const max = opts.maxDocBytes ?? 64 << 20;
  let mode: 'before' | 'array' | 'object' | 'done' = 'before';
  let inElem = false;
  let depth = 0; // nesting inside the current element
  let inStr = false;
  let esc = false;
  let parts: Buffer[] = [];
  let size = 0;
  let k = 0;
  const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
  for await (const chunk of chunks(file, opts)) {
    let elemStart = inElem ? 0 : -1;
    const finish = (end: number): ReadItem => {
      const piece = chunk.subarray(elemStart, end);
      size += piece.length;
      const bytes = Buffer.concat([...parts, piece]);
      parts = [];
      const over = size > max;
      size = 0;
      inElem = false;
      elemStart = -1;
      const fallback = `${base}#${k++}`;
      return over ? reject(fallback, file, 'too-large', `element over ${max} bytes`) : parseRecord(bytes, file, fallback, opts);
    };
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (mode === 'done') break;
      if (mode === 'before') {
        if (c === 0x5b) mode = 'array';
        else if (c === 0x7b) {
          mode = 'object';
          inElem = true;
          elemStart = i;
          depth = 1;
        }
        continue;
      }
      if (!inElem) {
        if (isWs(c) || c === 0x2c) continue;
        if (c === 0x5d) {
          mode = 'done';
          continue;
        }
        inElem = true;
        elemStart = i;
        depth = 0;
        if (c === 0x22) inStr = true;
        else if (c === 0x7b || c === 0x5b) depth = 1;
        continue;
      }
      if (inStr) {
        if (esc) esc = false;
        else if (c === 0x5c) esc = true;
        else if (c === 0x22) {
          inStr = false;
          if (depth === 0) yield finish(i + 1);
        }
        continue;
      }
      if (c === 0x22) inStr = true;
      else if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) {
        if (depth === 0) {
          // a scalar element ended by the array's ']'
          yield finish(i);
          mode = 'done';
          continue;
        }
        depth--;
        if (depth === 0) {
          yield finish(i + 1);
          if (mode === 'object') mode = 'done';
        }
      } else if (depth === 0 && (c === 0x2c || isWs(c))) yield finish(i);
    }
    if (inElem && elemStart >= 0) {
      const rest = Buffer.from(chunk.subarray(elemStart));
      size += rest.length;
      if (size <= max) parts.push(rest);
    }
  }
  if (mode === 'before') yield rejectFile(`${base}#0`, file, 'malformed-json', 'no JSON array or object in the file');
  else if (inElem || mode !== 'done') yield reject(`${base}#${k}`, file, 'truncated', 'the JSON ends inside the array or an element');
}

/** RFC 4180 CSV (and TSV) at the byte level: quoted fields may hold separators and newlines. */
async function* readDelimited(file: string, sep: number, opts: ReadOptions): AsyncGenerator<ReadItem> {
  const base = opts.idBase ?? path.basename(file);
  const max = opts.maxDocBytes ?? 64 << 20;
  const useHeader = opts.header ?? opts.columns === undefined;
  let header: string[] | null = opts.columns ?? null;
  let row: Buffer[] = [];
  let field: Buffer[] = [];
  let fieldStart = 0;
  let inQuotes = false;
  let quoteSeen = false; // a quote just closed: "" is an escaped quote
  let size = 0;
  let k = 0;
  let first = true;
  let rowNo = 0;
  const emitField = (): void => {
    let b = Buffer.concat(field);
    if (b.length >= 2 && b[0] === 0x22 && b[b.length - 1] === 0x22) b = Buffer.from(b.subarray(1, b.length - 1).toString('latin1').replace(/""/g, '"'), 'latin1');
    row.push(b);
    field = [];
  };
  const emitRow = function* (): Generator<ReadItem> {
    const r = row;
    row = [];
    const sz = size;
    size = 0;
    rowNo++;
    if (r.length === 1 && r[0]!.length === 0) return; // blank line
    if (r.every((b) => b.length === 0)) return; // a row of empty cells: padding, not a document
    if (!header && useHeader) {
      const h = r.map((b) => LENIENT.decode(b).replace(/^\ufeff/, '').trim());
      header = h;
      return;
    }
    const fallback = `${base}#${k++}`;
    if (sz > max) return yield reject(fallback, file, 'too-large', `row over ${max} bytes`);
    const cols = header ?? r.map((_, i) => `c${i}`);
    if (r.length !== cols.length) return yield reject(fallback, file, 'malformed-csv', `row ${rowNo} has ${r.length} fields, the header ${cols.length}`);
    const rec: Record<string, unknown> = {};
    for (let i = 0; i < r.length; i++) {
      const s = decode(r[i]!, opts.repairUtf8 ?? false);
      if (s === null) return yield reject(fallback, file, 'bad-utf8', `invalid UTF-8 in column ${cols[i]}`);
      rec[cols[i]!] = s;
    }
    yield recordToDocument(rec, file, fallback, opts);
  };
  for await (const chunk of chunks(file, opts)) {
    let i = 0;
    if (first && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) i = 3;
    first = false;
    fieldStart = i;
    for (; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (inQuotes) {
        if (c === 0x22) {
          inQuotes = false;
          quoteSeen = true;
        }
        continue;
      }
      if (c === 0x22) {
        inQuotes = true;
        if (quoteSeen) quoteSeen = false;
        continue;
      }
      quoteSeen = false;
      if (c === sep || c === 0x0a) {
        let end = i;
        if (c === 0x0a && end > fieldStart && chunk[end - 1] === 0x0d) end--;
        const piece = chunk.subarray(fieldStart, end);
        size += piece.length;
        if (size <= max) field.push(Buffer.from(piece));
        emitField();
        fieldStart = i + 1;
        if (c === 0x0a) yield* emitRow();
      }
    }
    const piece = chunk.subarray(fieldStart);
    size += piece.length;
    if (size <= max) field.push(Buffer.from(piece));
  }
  if (inQuotes) {
    yield reject(`${base}#${k}`, file, 'truncated', 'the file ends inside a quoted field');
    return;
  }
  if (field.length > 0 && Buffer.concat(field).length > 0) {
    emitField();
    yield* emitRow();
  } else if (row.length > 0) {
    emitField();
    yield* emitRow();
  }
}

async function* readText(file: string, opts: ReadOptions): AsyncGenerator<ReadItem> {
  const base = opts.idBase ?? path.basename(file);
  const split = opts.split ?? 'file';
  const max = opts.maxDocBytes ?? 64 << 20;
  const make = (s: string, k: number): ReadItem => {
    const id = split === 'file' ? base : `${base}#${k}`;
    const doc = emptyDocument(id, file, opts.category ?? 'general');
    doc.text = s.replace(/^\ufeff/, '').trim();
    const h = /^#\s+(.+)$/m.exec(doc.text.slice(0, 400));
    if (h && path.extname(file) === '.md') doc.title = h[1]!.trim();
    if (!doc.text) return reject(id, file, 'empty', 'no text');
    return { ok: true, doc };
  };
  if (split === 'file') {
    const bytes = await readBounded(file, opts);
    if (!bytes) return yield rejectFile(base, file, 'too-large', `file over ${max} bytes (split it by 'paragraph' or 'line')`);
    const s = decode(bytes, opts.repairUtf8 ?? false);
    if (s === null) return yield rejectFile(base, file, 'bad-utf8', 'invalid UTF-8');
    return yield make(s, 0);
  }
  let k = 0;
  let para: Buffer[] = [];
  let size = 0;
  const flush = function* (): Generator<ReadItem> {
    if (para.length === 0) return;
    const b = Buffer.concat(para);
    para = [];
    const sz = size;
    size = 0;
    const fallback = `${base}#${k}`;
    if (sz > max) {
      k++;
      return yield reject(fallback, file, 'too-large', `paragraph over ${max} bytes`);
    }
    const s = decode(b, opts.repairUtf8 ?? false);
    if (s === null) {
      k++;
      return yield reject(fallback, file, 'bad-utf8', 'invalid UTF-8');
    }
    if (!s.trim()) return;
    yield make(s, k++);
  };
  for await (const line of lines(file, opts)) {
    if (split === 'line') {
      para.push(line);
      size = line.length;
      yield* flush();
      continue;
    }
    if (line.every((c) => c === 0x20 || c === 0x09)) yield* flush();
    else {
      size += line.length + 1;
      if (size <= max) para.push(line, Buffer.from('\n'));
    }
  }
  yield* flush();
}

async function* readParquet(file: string, opts: ReadOptions): AsyncGenerator<ReadItem> {
  const base = opts.idBase ?? path.basename(file);
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
  let k = 0;
  let meta;
  let buf;
  try {
    buf = await asyncBufferFromFile(file);
    meta = await parquetMetadataAsync(buf);
  } catch (err) {
    return yield rejectFile(`${base}#0`, file, 'malformed-parquet', err instanceof Error ? err.message : String(err));
  }
  // One row group at a time keeps memory at one group's decoded rows.
  let rowStart = 0;
  let bytes = 0;
  for (const rg of meta.row_groups) {
    const n = Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = (await parquetReadObjects({ file: buf, metadata: meta, rowStart, rowEnd: rowStart + n })) as Record<string, unknown>[];
    } catch (err) {
      for (let i = 0; i < n; i++) yield reject(`${base}#${k++}`, file, 'malformed-parquet', err instanceof Error ? err.message : String(err));
      rowStart += n;
      continue;
    }
    rowStart += n;
    bytes += Number(rg.total_byte_size ?? 0);
    opts.onBytes?.(bytes);
    for (const r of rows) yield recordToDocument(r, file, `${base}#${k++}`, opts);
  }
}

/** Why a path under an input was not read (listed by walkInput, counted in the report). */
export type SkipReason = 'hidden' | 'symlink' | 'symlink-loop' | 'broken-symlink' | 'not-a-regular-file' | 'unreadable-folder';

export interface WalkResult {
  files: string[];
  skipped: { path: string; reason: SkipReason; detail: string }[];
}

/**
 * The files of an input: the path itself when it is a file, else the folder read recursively in
 * name order. Hidden entries (a name starting with '.') are skipped. Symbolic links are followed
 * (unless followSymlinks is false), a folder reached twice through links is a loop and skipped.
 * Named pipes, sockets and devices are skipped, never opened (reading a FIFO would wait forever);
 * an unreadable folder is skipped like an unreadable file. Every skip is listed with its reason.
 * A missing or unreadable input path itself is an error (E_IO naming it).
 */
export async function walkInput(p: string, opts: { followSymlinks?: boolean } = {}): Promise<WalkResult> {
  const follow = opts.followSymlinks ?? true;
  const files: string[] = [];
  const skipped: WalkResult['skipped'] = [];
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(p);
  } catch (err) {
    throw new PatentGPTError('E_IO', `${p}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (st.isFile()) return { files: [p], skipped };
  if (!st.isDirectory()) return { files, skipped: [{ path: p, reason: 'not-a-regular-file', detail: kindOf(st) }] };
  const seen = new Set<string>(); // real paths of the folders entered: a link back to one is a loop
  const walk = async (d: string): Promise<void> => {
    let real: string;
    let ents: fs.Dirent[];
    try {
      real = await fs.promises.realpath(d);
      if (seen.has(real)) return void skipped.push({ path: d, reason: 'symlink-loop', detail: `leads back to ${real}` });
      seen.add(real);
      ents = await fs.promises.readdir(d, { withFileTypes: true });
    } catch (err) {
      return void skipped.push({ path: d, reason: 'unreadable-folder', detail: (err as NodeJS.ErrnoException).code ?? String(err) });
    }
    ents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of ents) {
      const f = path.join(d, e.name);
      if (e.name.startsWith('.')) {
        skipped.push({ path: f, reason: 'hidden', detail: 'name starts with a dot' });
        continue;
      }
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      let other = !isDir && !isFile && !e.isSymbolicLink() ? kindOf(e) : null;
      if (e.isSymbolicLink()) {
        if (!follow) {
          skipped.push({ path: f, reason: 'symlink', detail: 'followSymlinks is false' });
          continue;
        }
        let t: fs.Stats;
        try {
          t = await fs.promises.stat(f);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          skipped.push({ path: f, reason: code === 'ELOOP' ? 'symlink-loop' : 'broken-symlink', detail: code ?? String(err) });
          continue;
        }
        isDir = t.isDirectory();
        isFile = t.isFile();
        other = !isDir && !isFile ? kindOf(t) : null;
      }
      if (isDir) await walk(f);
      else if (isFile) files.push(f);
      else skipped.push({ path: f, reason: 'not-a-regular-file', detail: other ?? 'unknown' });
    }
  };
  await walk(p);
  return { files, skipped };
}

function kindOf(x: fs.Stats | fs.Dirent): string {
  return x.isFIFO() ? 'named pipe' : x.isSocket() ? 'socket' : x.isCharacterDevice() ? 'character device' : x.isBlockDevice() ? 'block device' : 'not a file';
}

/** Expands globs-free inputs: a file, or a folder read recursively (sorted, hidden files and non-regular files skipped, links followed). */
export async function listFiles(p: string): Promise<string[]> {
  return (await walkInput(p)).files;
}
