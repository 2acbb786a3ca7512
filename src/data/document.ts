// The document every reader yields and every later step (filters, dedup, mixture) consumes,
// plus the ledger that accounts for each input document: kept, or dropped with a reason.

/** What a document is, for the mixture (free-form names are allowed beside these). */
export type Category = 'patent' | 'application' | 'law' | 'exam' | 'paper' | 'qa' | 'sft' | 'general' | (string & {});

export interface Document {
  /** Stable id: the patent number when there is one, else `<file>#<index>`. */
  id: string;
  /** The file (or stream) it came from. */
  source: string;
  category: Category;
  /** ISO 639-1 language code once known ('en', 'zh', ...), 'und' when not yet identified. */
  lang: string;
  title: string;
  abstract: string;
  claims: string;
  description: string;
  /** The training text: title, abstract, claims and description joined, or the whole record. */
  text: string;
  meta: Record<string, string | number | boolean>;
}

/** A document a reader could not produce, with the reason (never thrown, always counted). */
export interface Rejected {
  id: string;
  source: string;
  reason: RejectReason;
  detail: string;
  /** The whole file failed (unreadable, not UTF-8, malformed, compressed in a format not read), not one document of it. */
  wholeFile?: boolean;
}

export type RejectReason =
  | 'malformed-xml'
  | 'bad-utf8'
  | 'truncated'
  | 'empty'
  | 'too-large'
  | 'malformed-json'
  | 'malformed-csv'
  | 'malformed-parquet'
  | 'compressed'
  | 'unreadable';

export type ReadItem = { ok: true; doc: Document } | { ok: false; rejected: Rejected };

/** A fresh document with empty fields; readers fill what their format has. */
export function emptyDocument(id: string, source: string, category: Category): Document {
  return { id, source, category, lang: 'und', title: '', abstract: '', claims: '', description: '', text: '', meta: {} };
}

/** text = the non-empty parts, each a paragraph, in reading order. */
export function joinText(doc: Document): string {
  return [doc.title, doc.abstract, doc.description, doc.claims].filter((s) => s.length > 0).join('\n\n');
}

/** Documents of one category: seen, kept, and dropped per reason. */
export interface CategoryCounts {
  in: number;
  kept: number;
  dropped: Record<string, number>;
}

/** Files listed as failed or skipped, at most this many each (the counts are always complete). */
export const LISTED_FILES = 100;

export interface LedgerJSON {
  in: number;
  kept: number;
  dropped: Record<string, number>;
  bytes: number;
  /** Per category (the input's or the reader's), by the filters of the scan. */
  categories?: Record<string, CategoryCounts>;
  /** Per category, the documents of labelled inputs ('good' or 'junk'): seen and kept. */
  labels?: Record<string, Record<string, { in: number; kept: number }>>;
  /** Files that failed as wholes (unreadable, not UTF-8, malformed, compressed in a format not read), per reason, and the first of them. */
  failedFiles?: { count: Record<string, number>; files: { file: string; reason: string; detail: string }[] };
  /** Paths under the inputs not read (hidden, links not followed or looping, pipes and devices, unreadable folders), per reason, and the first of them. */
  skippedPaths?: { count: Record<string, number>; paths: { path: string; reason: string; detail: string }[] };
}

/** Counts per reason; `in` counts every document seen, so in === kept + sum(dropped). */
export class Ledger {
  in = 0;
  kept = 0;
  readonly dropped: Record<string, number> = {};
  /** Input bytes read (for throughput). */
  bytes = 0;
  readonly categories: Record<string, CategoryCounts> = {};
  readonly labels: Record<string, Record<string, { in: number; kept: number }>> = {};
  readonly failedFiles: { count: Record<string, number>; files: { file: string; reason: string; detail: string }[] } = { count: {}, files: [] };
  readonly skippedPaths: { count: Record<string, number>; paths: { path: string; reason: string; detail: string }[] } = { count: {}, paths: [] };

  drop(reason: string, n = 1): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + n;
  }

  /** One document's outcome by category (reason null: kept) and, for a labelled input, by label. */
  count(category: string, reason: string | null, label?: string): void {
    const c = (this.categories[category] ??= { in: 0, kept: 0, dropped: {} });
    c.in++;
    if (reason === null) c.kept++;
    else c.dropped[reason] = (c.dropped[reason] ?? 0) + 1;
    if (label) {
      const l = ((this.labels[category] ??= {})[label] ??= { in: 0, kept: 0 });
      l.in++;
      if (reason === null) l.kept++;
    }
  }

  failFile(file: string, reason: string, detail: string): void {
    this.failedFiles.count[reason] = (this.failedFiles.count[reason] ?? 0) + 1;
    if (this.failedFiles.files.length < LISTED_FILES) this.failedFiles.files.push({ file, reason, detail });
  }

  skip(p: string, reason: string, detail: string): void {
    this.skippedPaths.count[reason] = (this.skippedPaths.count[reason] ?? 0) + 1;
    if (this.skippedPaths.paths.length < LISTED_FILES) this.skippedPaths.paths.push({ path: p, reason, detail });
  }

  get droppedTotal(): number {
    let s = 0;
    for (const v of Object.values(this.dropped)) s += v;
    return s;
  }

  merge(o: LedgerJSON): void {
    this.in += o.in;
    this.kept += o.kept;
    this.bytes += o.bytes;
    for (const [k, v] of Object.entries(o.dropped)) this.drop(k, v);
    for (const [cat, c] of Object.entries(o.categories ?? {})) {
      const m = (this.categories[cat] ??= { in: 0, kept: 0, dropped: {} });
      m.in += c.in;
      m.kept += c.kept;
      for (const [k, v] of Object.entries(c.dropped)) m.dropped[k] = (m.dropped[k] ?? 0) + v;
    }
    for (const [cat, ls] of Object.entries(o.labels ?? {}))
      for (const [l, v] of Object.entries(ls)) {
        const m = ((this.labels[cat] ??= {})[l] ??= { in: 0, kept: 0 });
        m.in += v.in;
        m.kept += v.kept;
      }
    for (const [k, v] of Object.entries(o.failedFiles?.count ?? {})) this.failedFiles.count[k] = (this.failedFiles.count[k] ?? 0) + v;
    for (const f of o.failedFiles?.files ?? []) if (this.failedFiles.files.length < LISTED_FILES) this.failedFiles.files.push(f);
    for (const [k, v] of Object.entries(o.skippedPaths?.count ?? {})) this.skippedPaths.count[k] = (this.skippedPaths.count[k] ?? 0) + v;
    for (const p of o.skippedPaths?.paths ?? []) if (this.skippedPaths.paths.length < LISTED_FILES) this.skippedPaths.paths.push(p);
  }

  toJSON(): Required<LedgerJSON> {
    const sorted = <T>(r: Record<string, T>): Record<string, T> => {
      const o: Record<string, T> = {};
      for (const k of Object.keys(r).sort()) o[k] = r[k]!;
      return o;
    };
    const categories: Record<string, CategoryCounts> = {};
    for (const [k, c] of Object.entries(sorted(this.categories))) categories[k] = { in: c.in, kept: c.kept, dropped: sorted(c.dropped) };
    return {
      in: this.in, kept: this.kept, dropped: sorted(this.dropped), bytes: this.bytes, categories, labels: sorted(this.labels),
      failedFiles: { count: sorted(this.failedFiles.count), files: this.failedFiles.files },
      skippedPaths: { count: sorted(this.skippedPaths.count), paths: this.skippedPaths.paths },
    };
  }
}
