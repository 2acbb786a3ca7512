// The per-document work of the prep scan (parse, filter, tokenize, exact key, MinHash signature)
// as a pure function of a batch, run in worker threads (ScanPool) so that reading a file, which
// only splits it into documents, and the work on its documents use every core. Results come back
// in submission order, so the output is the same bytes whatever the thread timing; the same
// function runs in-process when a caller's hook (perplexity) cannot cross into a worker.
import { readFileSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { PatentGPTError, type ErrorCode } from '../errors.js';
import { NativeBpeEncoderHandle } from '../text/bpe-encoder.js';
import { packTexts } from '../text/batch.js';
import { startWorker } from '../util/worker.js';
import { ByteTokenizer } from '../tokenizer/byte.js';
import { llama2Model } from '../tokenizer/llama2.js';
import { decodeModelProto, PieceType, type SentencePieceModel } from '../tokenizer/model.js';
import { SentencePieceTokenizer } from '../tokenizer/sentencepiece.js';
import type { ReadItem } from './document.js';
import { exactKey, normalizeForDedup, resolveDedup, signatures, type DedupConfig, type ResolvedDedup } from './dedup.js';
import { applyFilters, FilterSet, type FilterConfig, type PerplexityScorer } from './filters.js';
import { isRaw, parseRaw, withOverrides, type RawDocument } from './readers/index.js';

export interface TokenizerConfig {
  type: 'byte' | 'sentencepiece' | 'llama2';
  /** tokenizer.model path (sentencepiece). */
  model?: string;
  /** Append EOS to every document (default true). */
  eos?: boolean;
}

/** What a worker needs to process any document of the run (plain data: it crosses threads). */
export interface ScanSetup {
  /** Per input: its filter config (global and input's own merged), or false for none. */
  filters: (FilterConfig | false)[];
  /** Per input: the category and language forced on its documents. */
  overrides: { category?: string; lang?: string }[];
  tokenizer: TokenizerConfig;
  dedup: DedupConfig;
  /** Filter threshold of the perplexity hook (used in-process only). */
  maxPerplexity?: number;
}

/** One input document on its way to a worker: a reader's item or an unparsed USPTO document. */
export interface ScanItem {
  input: number;
  /** The document's source as the report shows it (relative to its input). */
  source: string;
  item: ReadItem | RawDocument;
}

/** Characters of a rejection's detail kept for rejects.jsonl (bounded per document). */
export const DETAIL_CHARS = 200;

export type ScanOutcome =
  | { reason: string; id: string; category: string; detail: string; wholeFile?: boolean }
  | { category: string; id: string; source: string; lang: string; ids: Int32Array; key: string };

const NO_IDS = new Int32Array(0);

export interface ScanResult {
  outcomes: ScanOutcome[];
  /** Signatures (kept, P) of the kept documents in order. */
  sig: Uint32Array;
}

/** Token ids of a batch of texts: text i's ids are ids[offsets[i], offsets[i+1]). */
export interface TokenBatch {
  ids: Int32Array;
  offsets: Float64Array;
}

export interface Tok {
  name: string;
  vocabSize: number;
  /** Ids of each text in order (EOS appended when configured), as one flat array. */
  encodeBatch(texts: readonly string[]): Promise<TokenBatch>;
}

/** One flat array from per-text arrays (the encoders that work text by text). */
function flatten(parts: readonly Int32Array[]): TokenBatch {
  const offsets = new Float64Array(parts.length + 1);
  parts.forEach((p, i) => (offsets[i + 1] = offsets[i]! + p.length));
  const ids = new Int32Array(offsets[parts.length]!);
  parts.forEach((p, i) => ids.set(p, offsets[i]!));
  return { ids, offsets };
}

/** The model of a sentencepiece/llama2 config; llama2 from its vocabulary (cheaper than parsing a serialized model). */
function loadModel(t: TokenizerConfig): SentencePieceModel {
  if (t.type === 'llama2') return llama2Model();
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(t.model!);
  } catch (e) {
    throw new PatentGPTError('E_ARGUMENT', `cannot read tokenizer model ${t.model}: ${(e as Error).message}`);
  }
  return decodeModelProto(bytes, t.model);
}

/**
 * The native encoder (native/cpu/bpe_encode.cpp: the ids of SentencePieceTokenizer.encode) where
 * the model allows it, else null: BPE with the identity normalizer and no USER_DEFINED or UNUSED
 * pieces (the conditions of TokenizerPool's native backend).
 */
function nativeEncoder(model: SentencePieceModel): NativeBpeEncoderHandle | null {
  const { trainerSpec: t, normalizerSpec: n, pieces } = model;
  if (t.modelType !== 'BPE' || n.precompiledCharsmap.length > 0 || t.treatWhitespaceAsSuffix) return null;
  if (pieces.some((p) => p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED)) return null;
  return new NativeBpeEncoderHandle({
    pieces, unkId: t.unkId, byteFallback: t.byteFallback,
    addDummyPrefix: n.addDummyPrefix, removeExtraWhitespaces: n.removeExtraWhitespaces, escapeWhitespaces: n.escapeWhitespaces,
  });
}

export function makeTokenizer(t: TokenizerConfig): Tok {
  const eos = t.eos ?? true;
  if (t.type === 'byte') {
    const b = new ByteTokenizer();
    return { name: 'byte', vocabSize: 259, encodeBatch: async (texts) => flatten(texts.map((s) => b.encode(s, { eos }))) };
  }
  const name = t.type === 'llama2' ? 'llama2' : t.model!;
  const model = loadModel(t);
  const native = nativeEncoder(model);
  if (!native) {
    const sp = new SentencePieceTokenizer(model, name);
    return { name, vocabSize: sp.vocabSize, encodeBatch: async (texts) => flatten(texts.map((s) => sp.encode(s, { eos }))) };
  }
  const eosId = model.trainerSpec.eosId;
  if (eos && eosId < 0) throw new PatentGPTError('E_ARGUMENT', 'encode: eos requested but the model has no EOS piece');
  return {
    name,
    vocabSize: model.pieces.length,
    // One call per batch: the encoder's segment cache lives for one call, and it runs off this thread.
    async encodeBatch(texts) {
      const { bytes, offsets } = packTexts(texts);
      return native.encodeBatch(bytes, offsets, 1, -1, eos ? eosId : -1);
    },
  };
}

/** The per-run state built once per thread from a ScanSetup. */
export class ScanContext {
  readonly tok: Tok;
  readonly dedup: ResolvedDedup;
  private readonly filters: (FilterSet | null)[];

  constructor(readonly setup: ScanSetup) {
    this.tok = makeTokenizer(setup.tokenizer);
    this.dedup = resolveDedup(setup.dedup);
    this.filters = setup.filters.map((f) => (f === false ? null : new FilterSet(f)));
  }

  /** Processes a batch in order; `perplexity` (in-process only) drops documents above the threshold. */
  async process(items: readonly ScanItem[], perplexity?: PerplexityScorer): Promise<ScanResult> {
    const outcomes: ScanOutcome[] = [];
    const normalized: string[] = [];
    const texts: string[] = [];
    for (const { input, source, item: raw } of items) {
      const item = withOverrides(isRaw(raw) ? parseRaw(raw) : raw, this.setup.overrides[input]!);
      if (!item.ok) {
        const r = item.rejected;
        const o: ScanOutcome = { reason: r.reason, id: r.id, category: this.setup.overrides[input]!.category ?? 'unknown', detail: r.detail.slice(0, DETAIL_CHARS) };
        if (r.wholeFile) o.wholeFile = true;
        outcomes.push(o);
        continue;
      }
      const doc = item.doc;
      doc.source = source;
      const filters = this.filters[input];
      const reason = filters ? applyFilters(filters.forCategory(doc.category), doc) : null;
      if (reason) {
        outcomes.push({ reason, id: doc.id, category: doc.category, detail: `${doc.text.length} characters: ${doc.text.slice(0, 80).replace(/\s+/g, ' ')}` });
        continue;
      }
      const maxPpl = this.setup.maxPerplexity;
      if (perplexity && maxPpl !== undefined) {
        const ppl = await perplexity(doc.text);
        if (ppl > maxPpl) {
          outcomes.push({ reason: 'perplexity', id: doc.id, category: doc.category, detail: `perplexity ${ppl} > ${maxPpl}` });
          continue;
        }
      }
      const norm = normalizeForDedup(doc.text);
      normalized.push(norm);
      texts.push(doc.text);
      outcomes.push({ category: doc.category, id: doc.id, source, lang: doc.lang, ids: NO_IDS, key: exactKey(norm) });
    }
    // the encoder runs off this thread while the signatures are computed on it
    const tokens = this.tok.encodeBatch(texts);
    const sig = signatures(normalized, this.dedup);
    const { ids, offsets } = await tokens;
    let k = 0;
    for (const o of outcomes) if ('ids' in o) o.ids = ids.subarray(offsets[k]!, offsets[++k]!);
    return { outcomes, sig };
  }
}

// ------------------------------------------------------------------ workers

export type ToScanWorker = { kind: 'batch'; id: number; items: ScanItem[] };
export type FromScanWorker =
  | { kind: 'ready'; tokenizer: { name: string; vocabSize: number } }
  | { kind: 'result'; id: number; result: ScanResult }
  | { kind: 'error'; id: number; code: string; message: string };

/** Worker threads running ScanContext.process; submit() answers in any order, callers await in order. */
export class ScanPool {
  private readonly pending = new Map<number, { resolve: (r: ScanResult) => void; reject: (e: Error) => void; worker: number }>();
  private nextId = 0;
  /** Batches sent to each worker and not answered yet. */
  private readonly load: number[];
  private failed: Error | null = null;
  /** Resolves when every worker has built its context (batches sent before then wait in its queue). */
  readonly ready: Promise<void>;
  /** The tokenizer's name and vocabulary size, as the first worker ready reports them. */
  readonly tokenizer: Promise<{ name: string; vocabSize: number }>;
  private tokenizerKnown!: (t: { name: string; vocabSize: number }) => void;
  private tokenizerFailed!: (err: Error) => void;

  /** Workers being started (a source checkout bundles the worker first): batches wait on them in order. */
  private readonly workers: Promise<Worker>[];

  /** Starts the workers without waiting for them: the caller reads its first files while they load. */
  constructor(setup: ScanSetup, threads: number) {
    this.tokenizer = new Promise((resolve, reject) => ((this.tokenizerKnown = resolve), (this.tokenizerFailed = reject)));
    this.tokenizer.catch(() => undefined); // reported through the batches or ready
    this.load = new Array<number>(threads).fill(0);
    // execArgv []: a worker runs plain JS (compiled, or bundled in a source checkout), so it need
    // not register the parent's --import tsx loader (that cost ~0.1 s of CPU per worker)
    this.workers = Array.from({ length: threads }, () => startWorker(new URL('./scan-worker.js', import.meta.url), { workerData: setup, execArgv: [] }));
    this.ready = Promise.all(this.workers.map(async (started) => this.watch(await started))).then(() => undefined, (err: Error) => {
      this.failAll(err);
      this.tokenizerFailed(err);
      throw err;
    });
    this.ready.catch(() => undefined); // reported through the batches
  }

  /** Routes a worker's answers to their batches; resolves when it has built its context. */
  private watch(w: Worker): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      w.on('message', (m: FromScanWorker) => {
        if (m.kind === 'ready') return (this.tokenizerKnown(m.tokenizer), resolve());
        if (m.kind === 'error' && m.id === -1) {
          const err = new PatentGPTError(m.code as ErrorCode, m.message);
          reject(err);
          return this.failAll(err);
        }
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (p) this.load[p.worker]!--;
        if (m.kind === 'result') p?.resolve(m.result);
        else p?.reject(new PatentGPTError(m.code as ErrorCode, m.message));
      });
      w.on('error', (err) => (reject(err), this.failAll(err)));
      w.on('exit', (code) => {
        const err = new PatentGPTError('E_IO', `prep: a scan worker exited (code ${code})`);
        reject(err);
        this.failAll(err);
      });
    });
  }

  /** Whether every worker has a batch in hand (a caller may then scan one itself). */
  get busy(): boolean {
    return this.load.every((n) => n > 0);
  }

  /** Sends a batch to the worker with the fewest batches in hand. */
  submit(items: ScanItem[]): Promise<ScanResult> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    const worker = this.load.indexOf(Math.min(...this.load));
    const started = this.workers[worker]!;
    this.load[worker]!++;
    return new Promise<ScanResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker });
      // a raw document's bytes that own their whole buffer move to the worker instead of being copied
      const transfer: ArrayBuffer[] = [];
      for (const { item } of items) {
        const b = isRaw(item) ? item.bytes : null;
        if (b && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) transfer.push(b.buffer);
      }
      started.then((w) => w.postMessage({ kind: 'batch', id, items } satisfies ToScanWorker, transfer), reject);
    });
  }

  async close(): Promise<void> {
    this.failAll(new PatentGPTError('E_DISPOSED', 'prep: the scan pool was closed'));
    await Promise.all(this.workers.map(async (started) => (await started.catch(() => null))?.terminate()));
  }

  private failAll(err: Error): void {
    this.failed ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
