// The data-prep pipeline: read -> filter -> dedup -> tokenize -> mix -> token shards, in three
// phases so that N machines can share a corpus (--shard i/N):
//   scan  (per part): read its files, filter, exact keys + MinHash signatures, tokenize; spool
//                     the tokens (a ShardWriter set) and a row per document to work/part-i.
//   merge (once):     dedup over every part's signatures in part order; available tokens per
//                     category after dedup; written to work/merge.
//   emit  (per part): for each stage, copies per kept document from the stage's weights and
//                     token budget (deterministic from the seed and the document id); writes
//                     out/<stage>/part-i (shards + manifest + provenance) and the report.
// Every phase writes into a temporary folder renamed when complete, so a restarted run redoes
// only unfinished phases and, being deterministic, produces the same bytes. Memory: one
// document and one signature batch while scanning; while merging, the sort buffers
// (mergeBudgetBytes; beyond them sorted runs spill to disk) and 4 bytes and 2 bits per document.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { once } from 'node:events';
import * as os from 'node:os';
import * as readline from 'node:readline';
import { PatentGPTError } from '../errors.js';
import { tempPathFor, writeFileAtomic } from '../util/atomic.js';
import { Ledger, type LedgerJSON } from './document.js';
import { type DedupConfig, PartWriter, resolveDedup } from './dedup.js';
import { dedupParts, hasBit, newBits, setBit } from './dedup-merge.js';
import { RunSorter } from './runs.js';
import { type FilterConfig, type PerplexityScorer, buildFilters, mergeFilterConfigs } from './filters.js';
import { FORMATS, type FieldMap, type Format, readRaw, walkInput } from './readers/index.js';
import { DETAIL_CHARS, ScanContext, ScanPool, type ScanItem, type ScanResult, type ScanSetup, type TokenizerConfig } from './scan.js';
import { ShardSet, ShardWriter } from './shards.js';

export type { TokenizerConfig } from './scan.js';

export interface InputConfig {
  /** A file or a folder (read recursively), relative to the config file. */
  path: string;
  category?: string;
  format?: Format;
  lang?: string;
  fields?: FieldMap;
  header?: boolean;
  columns?: string[];
  split?: 'file' | 'paragraph' | 'line';
  /** Overrides of the global filters for this input; false turns filtering off. */
  filters?: FilterConfig | false;
  /** File names (basename regex) to skip inside a folder. */
  exclude?: string;
  /** A labelled input for measuring the filters: 'good' documents should be kept, 'junk' dropped;
   *  the report then gives precision and recall per category (prep-report.json 'filterQuality'). */
  label?: 'good' | 'junk';
}

export interface StageConfig {
  /** Token budget of the stage; without it, weights are copy factors (1 = every document once). */
  tokens?: number;
  /** Category -> weight; categories not listed are left out of the stage. */
  weights: Record<string, number>;
  /** Most copies of a category's documents (default: the config's maxRepeat, else 4): a category
   *  too small for its weight is capped there and the report says how many tokens it is short. */
  maxRepeat?: number;
}

export interface PrepConfig {
  output: string;
  /** Scratch folder (spooled tokens, dedup state). Default <output>/work. */
  work?: string;
  inputs: InputConfig[];
  filters?: FilterConfig;
  dedup?: DedupConfig;
  tokenizer: TokenizerConfig;
  stages: Record<string, StageConfig>;
  seed?: number;
  maxDocBytes?: number;
  /** Documents per signature batch (default 256). */
  batchDocs?: number;
  /** Follow symbolic links inside input folders (default true; a link back to a folder already
   *  entered is a loop, skipped and counted). Hidden files and folders are always skipped. */
  followSymlinks?: boolean;
  /** Default of stages.<name>.maxRepeat (default 4). */
  maxRepeat?: number;
}

/** The default cap on a category's copies in a stage. */
export const DEFAULT_MAX_REPEAT = 4;

function cfgError(file: string, msg: string): PatentGPTError {
  return new PatentGPTError('E_CONFIG', `${file}: ${msg}`);
}

/** Reads and validates a prep config; paths become absolute (relative to the file's folder). */
export function loadPrepConfig(file: string): PrepConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw cfgError(file, `cannot read the config as JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  return validatePrepConfig(raw, path.dirname(path.resolve(file)), file);
}

export function validatePrepConfig(raw: unknown, baseDir: string, name = 'prep config'): PrepConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw cfgError(name, 'must be a JSON object');
  const c = raw as Record<string, unknown>;
  const known = ['output', 'work', 'inputs', 'filters', 'dedup', 'tokenizer', 'stages', 'seed', 'maxDocBytes', 'batchDocs', 'followSymlinks', 'maxRepeat', '$comment'];
  for (const k of Object.keys(c)) if (!known.includes(k)) throw cfgError(name, `unknown field '${k}' (known: ${known.join(', ')})`);
  if (typeof c.output !== 'string' || !c.output) throw cfgError(name, "'output' must name a folder");
  if (!Array.isArray(c.inputs) || c.inputs.length === 0) throw cfgError(name, "'inputs' must be a non-empty array of {path, category, ...}");
  const inputs = c.inputs.map((x, i) => {
    if (!x || typeof x !== 'object' || typeof (x as InputConfig).path !== 'string') throw cfgError(name, `inputs[${i}].path must be a string`);
    const inp = { ...(x as InputConfig) };
    const ik = ['path', 'category', 'format', 'lang', 'fields', 'header', 'columns', 'split', 'filters', 'exclude', 'label', '$comment'];
    for (const k of Object.keys(inp)) if (!ik.includes(k)) throw cfgError(name, `inputs[${i}]: unknown field '${k}' (known: ${ik.join(', ')})`);
    if (inp.format !== undefined && !FORMATS.includes(inp.format)) throw cfgError(name, `inputs[${i}].format must be one of ${FORMATS.join(', ')}`);
    if (inp.category !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(inp.category)) throw cfgError(name, `inputs[${i}].category must be a short name of letters, digits, '_', '.', '-'`);
    if (inp.label !== undefined && inp.label !== 'good' && inp.label !== 'junk') throw cfgError(name, `inputs[${i}].label must be 'good' or 'junk'`);
    inp.path = path.resolve(baseDir, inp.path);
    return inp;
  });
  const tok = c.tokenizer as TokenizerConfig | undefined;
  if (!tok || !['byte', 'sentencepiece', 'llama2'].includes(tok.type)) throw cfgError(name, "tokenizer.type must be 'byte', 'sentencepiece' or 'llama2'");
  if (tok.type === 'sentencepiece') {
    if (typeof tok.model !== 'string') throw cfgError(name, 'tokenizer.model must name a tokenizer.model file');
    tok.model = path.resolve(baseDir, tok.model);
  }
  if (!c.stages || typeof c.stages !== 'object' || Object.keys(c.stages).length === 0) throw cfgError(name, "'stages' must map stage names to {tokens?, weights}");
  for (const [s, st] of Object.entries(c.stages as Record<string, StageConfig>)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(s)) throw cfgError(name, `stage name '${s}' must be letters, digits, '_', '.', '-'`);
    if (!st || typeof st.weights !== 'object') throw cfgError(name, `stages.${s}.weights must map categories to weights`);
    for (const [k, w] of Object.entries(st.weights)) if (typeof w !== 'number' || !(w >= 0) || !Number.isFinite(w)) throw cfgError(name, `stages.${s}.weights.${k} must be a number >= 0`);
    if (st.tokens !== undefined && !(Number.isSafeInteger(st.tokens) && st.tokens > 0)) throw cfgError(name, `stages.${s}.tokens must be a positive integer`);
    if (st.maxRepeat !== undefined && !(typeof st.maxRepeat === 'number' && st.maxRepeat >= 1)) throw cfgError(name, `stages.${s}.maxRepeat must be a number >= 1`);
  }
  if (c.maxRepeat !== undefined && !(typeof c.maxRepeat === 'number' && c.maxRepeat >= 1)) throw cfgError(name, "'maxRepeat' must be a number >= 1");
  if (c.followSymlinks !== undefined && typeof c.followSymlinks !== 'boolean') throw cfgError(name, "'followSymlinks' must be true or false");
  // validate filter and dedup configs now, not halfway through a run
  buildFilters((c.filters as FilterConfig) ?? {});
  for (const inp of inputs) if (inp.filters) buildFilters(mergeFilterConfigs((c.filters as FilterConfig) ?? {}, inp.filters));
  resolveDedup((c.dedup as DedupConfig) ?? {});
  const output = path.resolve(baseDir, c.output);
  return {
    output,
    work: path.resolve(baseDir, typeof c.work === 'string' ? c.work : path.join(output, 'work')),
    inputs,
    filters: (c.filters as FilterConfig) ?? {},
    dedup: (c.dedup as DedupConfig) ?? {},
    tokenizer: tok,
    stages: c.stages as Record<string, StageConfig>,
    seed: typeof c.seed === 'number' ? c.seed : 1,
    maxDocBytes: typeof c.maxDocBytes === 'number' ? c.maxDocBytes : undefined,
    batchDocs: typeof c.batchDocs === 'number' ? c.batchDocs : 256,
    followSymlinks: c.followSymlinks === undefined ? true : (c.followSymlinks as boolean),
    maxRepeat: typeof c.maxRepeat === 'number' ? c.maxRepeat : DEFAULT_MAX_REPEAT,
  };
}

export interface PrepOptions {
  part?: number;
  parts?: number;
  phase?: 'scan' | 'merge' | 'emit' | 'all';
  /** Progress events (documents and bytes so far). */
  onProgress?: (e: { phase: string; documents: number; bytes: number; totalBytes: number; kept: number }) => void;
  /** Perplexity hook (e.g. a small LM from the trainer): documents above filters.maxPerplexity are dropped.
   *  It runs in this thread, so the scan then runs in-process. */
  perplexity?: PerplexityScorer;
  /** Worker threads of the scan (default: defaultScanWorkers, none under 32 MiB of input); 0 runs it in this thread. */
  workers?: number;
  /** Bytes of the merge's sort buffers (default 256 MiB); past them sorted runs spill to disk. */
  mergeBudgetBytes?: number;
}

/** Precision and recall of the filters on the labelled inputs of one category: 'junk' is the
 *  positive class (the filters' job is to find it), so precision = junk dropped / all dropped and
 *  recall = junk dropped / junk; goodKept = good kept / good. Null where a denominator is 0. */
export interface FilterQuality {
  good: { in: number; kept: number };
  junk: { in: number; kept: number };
  goodKept: number | null;
  junkDropped: number | null;
  precision: number | null;
  recall: number | null;
}

export interface PrepReport {
  parts: number;
  documents: { in: number; kept: number; dropped: Record<string, number>; bytes: number };
  /** Per category: documents seen by the scan, kept by the filters, dropped per reason (before dedup). */
  categories: NonNullable<LedgerJSON['categories']>;
  /** Per category, when inputs carry labels: how well the filters tell good from junk. */
  filterQuality: Record<string, FilterQuality>;
  /** Files that failed as wholes and paths not read, per reason, with the first of each listed;
   *  every dropped document (with its file, position, id and reason) is in <work>/rejects.jsonl. */
  files: { failed: NonNullable<LedgerJSON['failedFiles']>; skipped: NonNullable<LedgerJSON['skippedPaths']> };
  rejects: string;
  /** Phases redone because the config changed since their output was written. */
  redone: string[];
  /** largestClusters: ids (representative first, at most 100 listed) of the 20 largest clusters;
   *  every cluster is in <work>/merge/clusters.tsv. */
  duplicates: { exact: number; near: number; clusters: number; largestClusters: string[][]; largestClusterSizes: number[] };
  /** After dedup, per category: documents and tokens available to the stages. */
  available: Record<string, { documents: number; tokens: number }>;
  stages: Record<string, {
    tokens: number;
    categories: Record<string, { documents: number; tokens: number; factor: number; wantedFactor: number; shortTokens: number }>;
    /** Categories whose copies were capped at maxRepeat, with the tokens they are short. */
    warnings: string[];
  }>;
  tokenizer: string;
}

function partFiles<T>(all: T[], part: number, parts: number): T[] {
  return all.filter((_, i) => i % parts === part);
}

async function inputFiles(cfg: PrepConfig): Promise<{ files: { file: string; input: number }[]; skipped: { path: string; reason: string; detail: string }[] }> {
  const out: { file: string; input: number }[] = [];
  const skipped: { path: string; reason: string; detail: string }[] = [];
  for (let i = 0; i < cfg.inputs.length; i++) {
    const inp = cfg.inputs[i]!;
    let walked;
    try {
      walked = await walkInput(inp.path, { followSymlinks: cfg.followSymlinks });
    } catch (err) {
      throw new PatentGPTError('E_IO', `inputs[${i}].path ${inp.path}: ${err instanceof Error ? err.message : String(err)}; fix the path in the config`);
    }
    skipped.push(...walked.skipped);
    const ex = inp.exclude ? new RegExp(inp.exclude) : null;
    for (const f of walked.files) if (!ex || !ex.test(path.basename(f))) out.push({ file: f, input: i });
  }
  return { files: out, skipped };
}

/** Bumped when a phase's output format or meaning changes: old work folders are then redone. */
const PREP_FORMAT = 2;

function hashOf(...parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify([PREP_FORMAT, ...parts])).digest('hex').slice(0, 16);
}

/** What a part's scan depends on: its files (inputs, their options), filters, tokenizer, dedup keys. */
export function scanHash(cfg: PrepConfig, part: number, parts: number): string {
  return hashOf('scan', cfg.inputs, cfg.filters, cfg.tokenizer, cfg.dedup, cfg.maxDocBytes ?? null, cfg.followSymlinks ?? true, part, parts);
}

/** What the merge depends on: every part's scan and the dedup settings. */
function mergeHash(cfg: PrepConfig, parts: number): string {
  return hashOf('merge', Array.from({ length: parts }, (_, p) => scanHash(cfg, p, parts)), cfg.dedup);
}

/** What one stage's emit depends on: the merge, the stage, the seed and the repeat cap. */
function emitHash(cfg: PrepConfig, parts: number, stage: string): string {
  return hashOf('emit', mergeHash(cfg, parts), stage, cfg.stages[stage], cfg.seed ?? 1, cfg.maxRepeat ?? DEFAULT_MAX_REPEAT);
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** <work>/config.json: the hashes of the config the work folder was last written with (for people; each phase checks its own). */
async function recordConfig(cfg: PrepConfig, part: number, parts: number): Promise<void> {
  const stages: Record<string, string> = {};
  for (const s of Object.keys(cfg.stages)) stages[s] = emitHash(cfg, parts, s);
  // parts scanned on other machines keep their entries while the part count stays the same
  const old = readJson<{ parts?: number; scan?: Record<string, string> }>(path.join(cfg.work!, 'config.json'));
  const scan = { ...(old?.parts === parts ? old.scan : {}), [part]: scanHash(cfg, part, parts) };
  await writeFileAtomic(path.join(cfg.work!, 'config.json'), JSON.stringify({ format: PREP_FORMAT, parts, scan, merge: mergeHash(cfg, parts), emit: stages }, null, 2) + '\n');
}

async function rmrf(p: string): Promise<void> {
  await fs.promises.rm(p, { recursive: true, force: true });
}

/** Input bytes below which the scan stays in the main thread by default: a worker costs ~0.25 s
 *  to start (its code and JIT), what one thread scans of ~5 MB, so under this it cannot pay off. */
export const SCAN_WORKERS_MIN_BYTES = 32 << 20;

/** Scan workers when `--workers` is not given: none for a small input, else one per core but one
 *  (that core is left to the main thread, which reads, writes and scans when the workers are busy),
 *  at most 8. */
export function defaultScanWorkers(totalBytes: number, cores: number): number {
  if (totalBytes < SCAN_WORKERS_MIN_BYTES) return 0;
  return Math.max(0, Math.min(8, cores - 1));
}

/** Documents per batch sent to a worker, and input bytes: small enough to keep every worker busy. */
const BATCH_DOCS = 32;
const BATCH_BYTES = 4 << 20;

/** Phase 1 for one part. Output: work/part-<i>/{spool/, docs.tsv, dedup/, rejects.jsonl, ledger.json}.
 *  This thread reads and splits the files; workers (and this thread, when they are all busy or
 *  not yet started) parse, filter, tokenize and sign the documents; results are written in input
 *  order, so the output does not depend on timing. A finished part scanned with another config
 *  (its ledger's configHash) is scanned again. Returns whether it scanned. */
async function scan(cfg: PrepConfig, part: number, parts: number, opts: PrepOptions): Promise<boolean> {
  const final = path.join(cfg.work!, `part-${part}`);
  const hash = scanHash(cfg, part, parts);
  const done = readJson<{ configHash?: string }>(path.join(final, 'ledger.json'));
  if (done && done.configHash === hash) return false;
  const tmp = `${final}.tmp`;
  await rmrf(tmp);
  await fs.promises.mkdir(tmp, { recursive: true });
  const setup: ScanSetup = {
    filters: cfg.inputs.map((inp) => (inp.filters === false ? false : mergeFilterConfigs(cfg.filters ?? {}, inp.filters ?? {}))),
    overrides: cfg.inputs.map((inp) => ({ category: inp.category, lang: inp.lang })),
    tokenizer: cfg.tokenizer,
    dedup: cfg.dedup ?? {},
    maxPerplexity: cfg.filters?.maxPerplexity,
  };
  const listed = await inputFiles(cfg);
  const files = partFiles(listed.files, part, parts);
  let totalBytes = 0;
  for (const f of files) totalBytes += (await fs.promises.stat(f.file)).size;
  const threads = opts.perplexity ? 0 : (opts.workers ?? defaultScanWorkers(totalBytes, os.availableParallelism()));
  const pool = threads > 0 ? new ScanPool(setup, threads) : null;
  // Until the workers are ready (they load their code and build their context: 0.3-1 s), and
  // whenever each has a batch in hand, this thread scans the batch itself: a small corpus does not
  // wait on them and this thread does not idle. Same results whoever computes them
  // (ScanContext.process is a pure function of the batch; results are written in submission order).
  let poolReady = false;
  pool?.ready.then(() => (poolReady = true), () => undefined);
  let local = pool ? null : new ScanContext(setup);
  // the spool needs the tokenizer's name and vocabulary: from whichever context was built first
  const tok = async (): Promise<{ name: string; vocabSize: number }> => (local ? local.tok : pool!.tokenizer);
  const dd = resolveDedup(cfg.dedup);
  let spoolWriter: ShardWriter | null = null;
  const spool = async (): Promise<ShardWriter> => {
    if (spoolWriter) return spoolWriter;
    const { vocabSize, name } = await tok();
    return (spoolWriter ??= await ShardWriter.create(path.join(tmp, 'spool'), { vocabSize, tokenizer: name }));
  };
  const dedupW = new PartWriter(path.join(tmp, 'dedup'), dd);
  const rows = fs.createWriteStream(path.join(tmp, 'docs.tsv'));
  const rejects = fs.createWriteStream(path.join(tmp, 'rejects.jsonl'));
  const ledger = new Ledger();
  // the paths the walk skipped are the same for every part: part 0 counts them
  if (part === 0) for (const k of listed.skipped) ledger.skip(k.path, k.reason, k.detail);
  let doneBytes = 0;
  // batches in flight, oldest first: written in this order whatever order workers finish in;
  // beside each, where its documents came from (input, file, position in the file)
  const inflight: { result: Promise<ScanResult>; items: { input: number; source: string; index: number }[] }[] = [];
  const maxInflight = Math.max(2, 2 * threads);
  const write = async (r: ScanResult, items: { input: number; source: string; index: number }[]): Promise<void> => {
    const keys: string[] = [];
    for (let i = 0; i < r.outcomes.length; i++) {
      const o = r.outcomes[i]!;
      const at = items[i]!;
      const inp = cfg.inputs[at.input]!;
      ledger.in++;
      if ('reason' in o) {
        ledger.drop(o.reason);
        ledger.count(o.category, o.reason, inp.label);
        if (o.wholeFile) ledger.failFile(at.source, o.reason, o.detail);
        const rec: Record<string, unknown> = { source: at.source, position: at.index, id: o.id, category: o.category, reason: o.reason, detail: o.detail };
        if (o.wholeFile) rec.wholeFile = true;
        await writeLine(rejects, JSON.stringify(rec) + '\n');
        continue;
      }
      ledger.count(o.category, null, inp.label);
      await (await spool()).add(o.ids, o.category);
      await writeLine(rows, `${o.category}\t${o.id.replace(/[\t\n]/g, ' ')}\t${o.source.replace(/[\t\n]/g, ' ')}\t${o.lang}\t${o.ids.length}\n`);
      keys.push(o.key);
      ledger.kept++;
    }
    if (keys.length > 0) await dedupW.add(keys, r.sig);
    opts.onProgress?.({ phase: 'scan', documents: ledger.in, bytes: doneBytes, totalBytes, kept: ledger.kept });
  };
  let batch: ScanItem[] = [];
  let where: { input: number; source: string; index: number }[] = [];
  let batchBytes = 0;
  const submit = async (): Promise<void> => {
    if (batch.length === 0) return;
    inflight.push({ result: pool && poolReady && !pool.busy ? pool.submit(batch) : (local ??= new ScanContext(setup)).process(batch, opts.perplexity), items: where });
    batch = [];
    where = [];
    batchBytes = 0;
    while (inflight.length >= maxInflight) {
      const f = inflight.shift()!;
      await write(await f.result, f.items);
    }
  };
  try {
    for (const { file, input } of files) {
      const inp = cfg.inputs[input]!;
      // the file as the report and the ids show it: relative to its input's parent folder, so
      // that files of the same name in different folders have different ids
      const rel = path.relative(path.dirname(inp.path), file);
      const base = doneBytes;
      let index = 0;
      for await (const item of readRaw(file, {
        format: inp.format, fields: inp.fields, header: inp.header, columns: inp.columns,
        split: inp.split, maxDocBytes: cfg.maxDocBytes, idBase: rel, onBytes: (n) => (doneBytes = base + n),
      })) {
        batch.push({ input, source: rel, item });
        where.push({ input, source: rel, index: index++ });
        batchBytes += 'raw' in item ? item.bytes.length : item.ok ? item.doc.text.length : 0;
        if (batch.length >= BATCH_DOCS || batchBytes >= BATCH_BYTES) await submit();
      }
      doneBytes = base + (await fs.promises.stat(file)).size;
    }
    await submit();
    while (inflight.length > 0) {
      const f = inflight.shift()!;
      await write(await f.result, f.items);
    }
    await spool(); // before the pool closes: with no document, the tokenizer comes from here
  } finally {
    await Promise.allSettled(inflight.map((f) => f.result));
    await pool?.close();
  }
  ledger.bytes = doneBytes;
  opts.onProgress?.({ phase: 'scan', documents: ledger.in, bytes: doneBytes, totalBytes, kept: ledger.kept });
  await dedupW.close();
  await new Promise<void>((r, j) => rows.end((e?: Error | null) => (e ? j(e) : r())));
  await new Promise<void>((r, j) => rejects.end((e?: Error | null) => (e ? j(e) : r())));
  await (await spool()).close();
  await writeFileAtomic(path.join(tmp, 'ledger.json'), JSON.stringify({ ...ledger.toJSON(), configHash: hash }));
  await rmrf(final);
  await fs.promises.rename(tmp, final);
  return true;
}

interface Row {
  category: string;
  id: string;
  source: string;
  lang: string;
  tokens: number;
}

/** A part's rows (docs.tsv, streamed) with their row index. */
async function* partRows(partDir: string): AsyncGenerator<Row & { index: number }> {
  const lines = readline.createInterface({ input: fs.createReadStream(path.join(partDir, 'docs.tsv')), crlfDelay: Infinity });
  let index = 0;
  for await (const line of lines) {
    if (!line) continue;
    const [category, id, source, lang, tokens] = line.split('\t');
    yield { category: category!, id: id!, source: source!, lang: lang!, tokens: Number(tokens), index: index++ };
  }
}

/** work/merge/merge.json; beside it clusters.tsv and drop-<part>.bin (a bit per row of the part: a duplicate). */
interface MergeResult {
  configHash?: string;
  available: Record<string, { documents: number; tokens: number }>;
  exact: number;
  near: number;
  clusters: number;
  /** The largest clusters (at most 20), representative first, at most LISTED_MEMBERS ids each. */
  largestClusters: string[][];
  largestClusterSizes: number[];
}

const LARGEST_CLUSTERS = 20;
const LISTED_MEMBERS = 100;
/** Default bytes of the merge's sort buffers (beyond them, sorted runs spill to work/merge.tmp). */
const MERGE_BUDGET = 256 << 20;

/** Appends to a file through a buffer, synchronously (the merge phase has nothing else to do). */
class FileAppender {
  private readonly fd: number;
  private chunks: Buffer[] = [];
  private pending = 0;
  /** Bytes written so far (flushed or not). */
  size = 0;

  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'w');
  }

  write(b: Buffer): void {
    this.chunks.push(b);
    this.pending += b.length;
    this.size += b.length;
    if (this.pending >= 1 << 20) this.flush();
  }

  flush(): void {
    if (this.pending === 0) return;
    fs.writeSync(this.fd, Buffer.concat(this.chunks));
    this.chunks = [];
    this.pending = 0;
  }

  close(): void {
    this.flush();
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
  }
}

/**
 * Phase 2: dedup over every part (external sorts, bounded memory: dedup-merge.ts), then one pass
 * over the parts' rows for the tokens available per category, the duplicate bits per part and
 * the clusters with their ids (one more external sort, by representative).
 */
async function merge(cfg: PrepConfig, parts: number, budgetBytes: number): Promise<boolean> {
  const final = path.join(cfg.work!, 'merge');
  const hash = mergeHash(cfg, parts);
  if (readJson<MergeResult>(path.join(final, 'merge.json'))?.configHash === hash) return false;
  const dd = resolveDedup(cfg.dedup);
  const partDirs: string[] = [];
  for (let p = 0; p < parts; p++) {
    const dir = path.join(cfg.work!, `part-${p}`);
    const led = readJson<{ configHash?: string }>(path.join(dir, 'ledger.json'));
    if (!led) throw new PatentGPTError('E_IO', `${dir}: part ${p}/${parts} has not been scanned; run 'patentgpt data prep --shard ${p}/${parts}' first`);
    if (led.configHash !== scanHash(cfg, p, parts))
      throw new PatentGPTError('E_CONFIG', `${dir}: part ${p}/${parts} was scanned with another config (or another --shard count) than this one; scan it again with this config ('patentgpt data prep --shard ${p}/${parts}') before the merge`);
    partDirs.push(dir);
  }
  const tmp = `${final}.tmp`;
  await rmrf(tmp);
  const scratch = path.join(tmp, 'scratch');
  fs.mkdirSync(scratch, { recursive: true });
  const d = dedupParts(partDirs.map((p) => path.join(p, 'dedup')), dd, scratch, budgetBytes);
  const { rep } = d;
  const hasMembers = newBits(rep.length);
  for (let i = 0; i < rep.length; i++) if (rep[i] !== i) setBit(hasMembers, rep[i]!);

  // rows: available tokens, duplicate bits; ids of cluster members to a side file for the clusters
  const available: MergeResult['available'] = {};
  const ids = new FileAppender(path.join(scratch, 'ids.bin'));
  const members = new RunSorter(scratch, 'clusters', 2, budgetBytes);
  const rec = new Uint32Array(4);
  let g = 0;
  for (let p = 0; p < parts; p++) {
    const drop = newBits(d.counts[p]!);
    let rows = 0;
    for await (const row of partRows(partDirs[p]!)) {
      if (rows++ === d.counts[p]) break;
      if (rep[g] !== g) setBit(drop, row.index);
      else {
        const a = (available[row.category] ??= { documents: 0, tokens: 0 });
        a.documents++;
        a.tokens += row.tokens;
      }
      if (rep[g] !== g || hasBit(hasMembers, g)) {
        // id, then its source after a tab (ids and sources hold no tab: docs.tsv replaced them)
        const id = Buffer.from(`${row.id}\t${row.source}`);
        const len = Buffer.alloc(4);
        len.writeUInt32LE(id.length);
        rec.set([rep[g]!, g, Math.floor(ids.size / 4294967296), ids.size >>> 0]);
        members.add(rec);
        ids.write(len);
        ids.write(id);
      }
      g++;
    }
    if (rows !== d.counts[p]) throw new PatentGPTError('E_DATA', `${partDirs[p]}: docs.tsv has ${rows} rows but the dedup state ${d.counts[p]}; delete the part folder and rescan it`);
    fs.writeFileSync(path.join(tmp, `drop-${p}.bin`), drop);
  }
  ids.close();

  // clusters, representative first (the lowest index sorts first), ordered by representative
  const idsFd = fs.openSync(ids.file, 'r');
  const out = new FileAppender(path.join(tmp, 'clusters.tsv'));
  // every duplicate dropped, with the document it duplicates, for <work>/rejects.jsonl
  const dupRejects = new FileAppender(path.join(tmp, 'rejects.jsonl'));
  let repId = '';
  const largest: { rep: number; size: number; ids: string[] }[] = [];
  let cur: { rep: number; size: number; ids: string[] } | null = null;
  const lenBuf = Buffer.alloc(4);
  const closeCluster = (): void => {
    if (!cur) return;
    out.write(Buffer.from('\n'));
    largest.push(cur);
    largest.sort((x, y) => y.size - x.size || x.rep - y.rep);
    if (largest.length > LARGEST_CLUSTERS) largest.pop();
  };
  let clusters = 0;
  try {
    members.forEach((r, at) => {
      const root = r[at + 1]!;
      const off = r[at + 3]! * 4294967296 + r[at + 2]!;
      fs.readSync(idsFd, lenBuf, 0, 4, off);
      const idBytes = Buffer.alloc(lenBuf.readUInt32LE(0));
      fs.readSync(idsFd, idBytes, 0, idBytes.length, off + 4);
      const [id, source] = idBytes.toString().split('\t') as [string, string];
      const idOnly = Buffer.from(id);
      if (cur?.rep !== root) {
        closeCluster();
        cur = { rep: root, size: 0, ids: [] };
        clusters++;
        repId = id;
      } else {
        out.write(Buffer.from('\t'));
        const g = r[at]!;
        dupRejects.write(Buffer.from(JSON.stringify({ source, id, reason: hasBit(d.exact, g) ? 'exact-duplicate' : 'near-duplicate', detail: `duplicate of ${repId}`.slice(0, DETAIL_CHARS) }) + '\n'));
      }
      out.write(idOnly);
      cur.size++;
      if (cur.ids.length < LISTED_MEMBERS) cur.ids.push(id);
    });
    closeCluster();
  } finally {
    fs.closeSync(idsFd);
    out.close();
    dupRejects.close();
  }
  await rmrf(scratch);
  const m: MergeResult = {
    configHash: hash, available, exact: d.exactDuplicates, near: d.nearDuplicates, clusters,
    largestClusters: largest.map((c) => c.ids), largestClusterSizes: largest.map((c) => c.size),
  };
  await writeFileAtomic(path.join(tmp, 'merge.json'), JSON.stringify(m));
  await rmrf(final);
  await fs.promises.rename(tmp, final);
  return true;
}

function readMerge(cfg: PrepConfig): MergeResult | null {
  const f = path.join(cfg.work!, 'merge', 'merge.json');
  return fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, 'utf8')) as MergeResult) : null;
}

/** Uniform in [0, 1) from (seed, stage, document id, copy): the same on every machine. */
function unit(seed: number, stage: string, id: string, copy: number): number {
  const h = createHash('sha256').update(`${seed}\0${stage}\0${id}\0${copy}`).digest();
  return h.readUInt32LE(0) / 4294967296;
}

/** Copy factor per category of a stage: budget share / available tokens, or the weight itself. */
export function stageFactors(st: StageConfig, available: Record<string, { tokens: number }>): Record<string, number> {
  const f: Record<string, number> = {};
  const cats = Object.keys(st.weights).filter((c) => (available[c]?.tokens ?? 0) > 0 && st.weights[c]! > 0);
  if (st.tokens === undefined) {
    for (const c of cats) f[c] = st.weights[c]!;
    return f;
  }
  const sum = cats.reduce((s, c) => s + st.weights[c]!, 0);
  for (const c of cats) f[c] = (st.tokens * (st.weights[c]! / sum)) / available[c]!.tokens;
  return f;
}

/**
 * The copy factors a stage uses: stageFactors capped at maxRepeat (the stage's, else the
 * config's, else 4), so that a category too small for its weight is not silently repeated many
 * times over; per capped category, the tokens it is short of its share and a warning.
 */
export function cappedStageFactors(st: StageConfig, available: Record<string, { tokens: number }>, defaultMaxRepeat = DEFAULT_MAX_REPEAT): {
  factors: Record<string, number>; wanted: Record<string, number>; shortTokens: Record<string, number>; warnings: string[];
} {
  const wanted = stageFactors(st, available);
  const cap = st.maxRepeat ?? defaultMaxRepeat;
  const factors: Record<string, number> = {};
  const shortTokens: Record<string, number> = {};
  const warnings: string[] = [];
  for (const [c, f] of Object.entries(wanted)) {
    factors[c] = Math.min(f, cap);
    shortTokens[c] = 0;
    if (f > cap) {
      const short = Math.round((f - cap) * available[c]!.tokens);
      shortTokens[c] = short;
      warnings.push(`category '${c}' would be repeated ${f.toFixed(2)} times to fill its weight; capped at ${cap} (maxRepeat), ${short} tokens short of its share: add ${c} data, lower its weight or raise maxRepeat`);
    }
  }
  return { factors, wanted, shortTokens, warnings };
}

/** The rows of one category of a part, in order, with their row index. */
async function* categoryRows(partDir: string, category: string): AsyncGenerator<Row & { index: number }> {
  for await (const row of partRows(partDir)) if (row.category === category) yield row;
}

/** Writes a line, waiting when the stream's buffer is full (memory stays bounded on slow disks). */
async function writeLine(out: fs.WriteStream, line: string): Promise<void> {
  if (!out.write(line)) await once(out, 'drain');
}

/**
 * Phase 3 for one part: streams each category's spooled documents (one shard set per category,
 * in scan order) beside that category's rows, and writes each kept document's copies. Memory:
 * one document and a bit per row of the part (the duplicates to skip).
 */
async function emit(cfg: PrepConfig, part: number, parts: number, opts: PrepOptions): Promise<boolean> {
  const m = readMerge(cfg);
  const dropFile = path.join(cfg.work!, 'merge', `drop-${part}.bin`);
  if (!m || !fs.existsSync(dropFile)) throw new PatentGPTError('E_IO', `${path.join(cfg.work!, 'merge')} is missing or incomplete: run 'patentgpt data prep' with the merge phase (after every part's scan) before emit`);
  if (m.configHash !== mergeHash(cfg, parts)) throw new PatentGPTError('E_CONFIG', `${path.join(cfg.work!, 'merge')} was made with another config (or another --shard count) than this one: rescan the parts and run the merge phase again before emit`);
  const partDir = path.join(cfg.work!, `part-${part}`);
  const drop = fs.readFileSync(dropFile);
  const dropped = (i: number): boolean => (i >> 3) < drop.length && hasBit(drop, i);
  const seed = cfg.seed ?? 1;
  let redone = false;
  for (const [stage, st] of Object.entries(cfg.stages)) {
    const final = path.join(cfg.output, stage, `part-${part}`);
    const hash = emitHash(cfg, parts, stage);
    const hashFile = path.join(final, 'config-hash');
    if (fs.existsSync(path.join(final, 'manifest.json')) && fs.existsSync(hashFile) && fs.readFileSync(hashFile, 'utf8').trim() === hash) continue;
    redone = true;
    const tmp = `${final}.tmp`;
    await rmrf(tmp);
    const { factors } = cappedStageFactors(st, m.available, cfg.maxRepeat);
    const spool = await ShardSet.open(path.join(partDir, 'spool'));
    const w = await ShardWriter.create(tmp, { vocabSize: spool.vocabSize, tokenizer: spool.manifest.tokenizer });
    const prov = fs.createWriteStream(path.join(tmp, 'provenance.tsv'));
    prov.write('category\tid\tsource\tcopy\ttokens\n');
    try {
      let done = 0;
      for (const cat of Object.keys(spool.manifest.categories).sort()) {
        const f = factors[cat] ?? 0;
        const rows = categoryRows(partDir, cat);
        for (const shard of spool.shards.filter((s) => s.category === cat)) {
          for (let d = 0; d < shard.documents; d++) {
            const next = await rows.next();
            if (next.done) throw new PatentGPTError('E_DATA', `${partDir}: docs.tsv has fewer '${cat}' rows than the spool; delete the part folder and rescan it`);
            const row = next.value;
            if (dropped(row.index) || f === 0) continue;
            const whole = Math.floor(f);
            const copies = whole + (unit(seed, stage, row.id, whole) < f - whole ? 1 : 0);
            if (copies === 0) continue;
            const ids = shard.document(d);
            for (let c = 0; c < copies; c++) {
              await w.add(ids, cat);
              await writeLine(prov, `${cat}\t${row.id}\t${row.source}\t${c}\t${ids.length}\n`);
            }
          }
          done += shard.documents;
          opts.onProgress?.({ phase: `emit ${stage}`, documents: done, bytes: 0, totalBytes: 0, kept: done });
        }
        await rows.return(undefined);
      }
      await new Promise<void>((r, j) => prov.end((e?: Error | null) => (e ? j(e) : r())));
      await w.close();
      await writeFileAtomic(path.join(tmp, 'config-hash'), hash + '\n');
    } finally {
      spool.close();
    }
    await fs.promises.mkdir(path.dirname(final), { recursive: true });
    await rmrf(final);
    await fs.promises.rename(tmp, final);
  }
  return redone;
}

/** Precision and recall of the filters per category, from the labelled inputs' counts. */
export function filterQuality(labels: NonNullable<LedgerJSON['labels']>): Record<string, FilterQuality> {
  const out: Record<string, FilterQuality> = {};
  const ratio = (a: number, b: number): number | null => (b > 0 ? Math.round((a / b) * 1e4) / 1e4 : null);
  for (const [cat, ls] of Object.entries(labels)) {
    const good = ls.good ?? { in: 0, kept: 0 };
    const junk = ls.junk ?? { in: 0, kept: 0 };
    const junkDropped = junk.in - junk.kept;
    const goodDropped = good.in - good.kept;
    out[cat] = {
      good: { ...good }, junk: { ...junk },
      goodKept: ratio(good.kept, good.in), junkDropped: ratio(junkDropped, junk.in),
      precision: ratio(junkDropped, junkDropped + goodDropped), recall: ratio(junkDropped, junk.in),
    };
  }
  return out;
}

/** <work>/rejects.jsonl: every part's dropped documents, then the duplicates dropped by the merge. */
async function gatherRejects(cfg: PrepConfig, parts: number): Promise<string> {
  const target = path.join(cfg.work!, 'rejects.jsonl');
  const tmp = tempPathFor(target); // shard jobs that finish together each gather into their own file
  const out = fs.createWriteStream(tmp);
  const sources = [...Array.from({ length: parts }, (_, p) => path.join(cfg.work!, `part-${p}`, 'rejects.jsonl')), path.join(cfg.work!, 'merge', 'rejects.jsonl')];
  for (const f of sources) {
    if (!fs.existsSync(f)) continue;
    for await (const chunk of fs.createReadStream(f)) if (!out.write(chunk)) await once(out, 'drain');
  }
  await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
  await fs.promises.rename(tmp, target);
  return target;
}

/** Gathers the report from whatever parts have finished; written to <output>/prep-report.json. */
export async function writeReport(cfg: PrepConfig, parts: number, redone: string[] = []): Promise<PrepReport> {
  const ledger = new Ledger();
  for (let p = 0; p < parts; p++) {
    const f = path.join(cfg.work!, `part-${p}`, 'ledger.json');
    const l = readJson<LedgerJSON & { configHash?: string }>(f);
    if (l && l.configHash === scanHash(cfg, p, parts)) ledger.merge(l);
  }
  const scanned = ledger.toJSON();
  const merged = readMerge(cfg);
  const m = merged && merged.configHash === mergeHash(cfg, parts) ? merged : null;
  if (m) {
    ledger.kept -= m.exact + m.near;
    if (m.exact) ledger.drop('exact-duplicate', m.exact);
    if (m.near) ledger.drop('near-duplicate', m.near);
  }
  const stages: PrepReport['stages'] = {};
  for (const [stage, st] of Object.entries(cfg.stages)) {
    const capped = m ? cappedStageFactors(st, m.available, cfg.maxRepeat) : { factors: {}, wanted: {}, shortTokens: {}, warnings: [] };
    const cats: PrepReport['stages'][string]['categories'] = {};
    let tokens = 0;
    for (let p = 0; p < parts; p++) {
      const dir = path.join(cfg.output, stage, `part-${p}`);
      const mfile = path.join(dir, 'manifest.json');
      const hfile = path.join(dir, 'config-hash');
      if (!fs.existsSync(mfile) || !fs.existsSync(hfile) || fs.readFileSync(hfile, 'utf8').trim() !== emitHash(cfg, parts, stage)) continue;
      const man = JSON.parse(fs.readFileSync(mfile, 'utf8')) as { categories: Record<string, { tokens: number; documents: number }> };
      for (const [c, v] of Object.entries(man.categories)) {
        const x = (cats[c] ??= { documents: 0, tokens: 0, factor: capped.factors[c] ?? 0, wantedFactor: capped.wanted[c] ?? 0, shortTokens: capped.shortTokens[c] ?? 0 });
        x.documents += v.documents;
        x.tokens += v.tokens;
        tokens += v.tokens;
      }
    }
    stages[stage] = { tokens, categories: cats, warnings: capped.warnings };
  }
  const doc = ledger.toJSON();
  const report: PrepReport = {
    parts,
    documents: { in: doc.in, kept: doc.kept, dropped: doc.dropped, bytes: doc.bytes },
    categories: scanned.categories,
    filterQuality: filterQuality(scanned.labels),
    files: { failed: scanned.failedFiles, skipped: scanned.skippedPaths },
    rejects: await gatherRejects(cfg, parts),
    redone,
    duplicates: { exact: m?.exact ?? 0, near: m?.near ?? 0, clusters: m?.clusters ?? 0, largestClusters: m?.largestClusters ?? [], largestClusterSizes: m?.largestClusterSizes ?? [] },
    available: m?.available ?? {},
    stages,
    tokenizer: cfg.tokenizer.type === 'sentencepiece' ? cfg.tokenizer.model! : cfg.tokenizer.type,
  };
  await fs.promises.mkdir(cfg.output, { recursive: true });
  await writeFileAtomic(path.join(cfg.output, 'prep-report.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}

/**
 * Runs the pipeline (or one phase of it for one part). With parts = 1 and phase 'all' (the
 * default) everything runs here. Restarting after an interruption resumes at the first
 * unfinished phase and gives the same output. A phase whose output was written with another
 * config (its config hash: scan in the part's ledger, merge in merge.json, emit in each stage
 * part's config-hash) is redone, and so is every phase after it; the report lists them in
 * 'redone'. A merge over parts scanned with another config is refused (E_CONFIG).
 */
export async function prep(cfg: PrepConfig, opts: PrepOptions = {}): Promise<PrepReport> {
  const parts = opts.parts ?? 1;
  const part = opts.part ?? 0;
  if (!Number.isInteger(parts) || parts < 1 || !Number.isInteger(part) || part < 0 || part >= parts)
    throw new PatentGPTError('E_ARGUMENT', `prep: --shard must be i/N with 0 <= i < N, got ${part}/${parts}`);
  const phase = opts.phase ?? 'all';
  await fs.promises.mkdir(cfg.work!, { recursive: true });
  const stale = (dir: string): boolean => fs.existsSync(dir);
  const redone: string[] = [];
  if (phase === 'scan' || phase === 'all') {
    const had = stale(path.join(cfg.work!, `part-${part}`, 'ledger.json'));
    if ((await scan(cfg, part, parts, opts)) && had) redone.push(`scan ${part}/${parts}`);
  }
  if (phase === 'merge' || (phase === 'all' && parts === 1)) {
    const had = stale(path.join(cfg.work!, 'merge', 'merge.json'));
    if ((await merge(cfg, parts, opts.mergeBudgetBytes ?? MERGE_BUDGET)) && had) redone.push('merge');
  }
  if (phase === 'emit' || (phase === 'all' && parts === 1)) {
    const had = Object.keys(cfg.stages).some((s) => stale(path.join(cfg.output, s, `part-${part}`, 'manifest.json')));
    if ((await emit(cfg, part, parts, opts)) && had) redone.push(`emit ${part}/${parts}`);
  }
  await recordConfig(cfg, part, parts);
  return writeReport(cfg, parts, redone);
}
