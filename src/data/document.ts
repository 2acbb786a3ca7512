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

/** Counts per reason; `in` counts every document seen, so in === kept + sum(dropped). */
export class Ledger {
  in = 0;
  kept = 0;
  readonly dropped: Record<string, number> = {};
  /** Input bytes read (for throughput). */
  bytes = 0;

  drop(reason: string, n = 1): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + n;
  }

  get droppedTotal(): number {
    let s = 0;
    for (const v of Object.values(this.dropped)) s += v;
    return s;
  }

  merge(o: { in: number; kept: number; dropped: Record<string, number>; bytes: number }): void {
    this.in += o.in;
    this.kept += o.kept;
    this.bytes += o.bytes;
    for (const [k, v] of Object.entries(o.dropped)) this.drop(k, v);
  }

  toJSON(): { in: number; kept: number; dropped: Record<string, number>; bytes: number } {
    const dropped: Record<string, number> = {};
    for (const k of Object.keys(this.dropped).sort()) dropped[k] = this.dropped[k]!;
    return { in: this.in, kept: this.kept, dropped, bytes: this.bytes };
  }
}
