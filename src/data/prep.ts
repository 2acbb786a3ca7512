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
import { writeFileAtomic } from '../util/atomic.js';
import { Ledger } from './document.js';
import { type DedupConfig, PartWriter, resolveDedup } from './dedup.js';
import { dedupParts, hasBit, newBits, setBit } from './dedup-merge.js';
import { RunSorter } from './runs.js';
import { type FilterConfig, type PerplexityScorer, buildFilters } from './filters.js';
import { FORMATS, type FieldMap, type Format, listFiles, readRaw } from './readers/index.js';
import { ScanContext, ScanPool, type ScanItem, type ScanResult, type ScanSetup, type TokenizerConfig } from './scan.js';
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
}

export interface StageConfig {
  /** Token budget of the stage; without it, weights are copy factors (1 = every document once). */
  tokens?: number;
  /** Category -> weight; categories not listed are left out of the stage. */
  weights: Record<string, number>;
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
}

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
  const known = ['output', 'work', 'inputs', 'filters', 'dedup', 'tokenizer', 'stages', 'seed', 'maxDocBytes', 'batchDocs', '$comment'];
  for (const k of Object.keys(c)) if (!known.includes(k)) throw cfgError(name, `unknown field '${k}' (known: ${known.join(', ')})`);
  if (typeof c.output !== 'string' || !c.output) throw cfgError(name, "'output' must name a folder");
  if (!Array.isArray(c.inputs) || c.inputs.length === 0) throw cfgError(name, "'inputs' must be a non-empty array of {path, category, ...}");
  const inputs = c.inputs.map((x, i) => {
    if (!x || typeof x !== 'object' || typeof (x as InputConfig).path !== 'string') throw cfgError(name, `inputs[${i}].path must be a string`);
    const inp = { ...(x as InputConfig) };
    const ik = ['path', 'category', 'format', 'lang', 'fields', 'header', 'columns', 'split', 'filters', 'exclude', '$comment'];
    for (const k of Object.keys(inp)) if (!ik.includes(k)) throw cfgError(name, `inputs[${i}]: unknown field '${k}' (known: ${ik.join(', ')})`);
    if (inp.format !== undefined && !FORMATS.includes(inp.format)) throw cfgError(name, `inputs[${i}].format must be one of ${FORMATS.join(', ')}`);
    if (inp.category !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(inp.category)) throw cfgError(name, `inputs[${i}].category must be a short name of letters, digits, '_', '.', '-'`);
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
  }
  // validate filter and dedup configs now, not halfway through a run
  buildFilters((c.filters as FilterConfig) ?? {});
  for (const inp of inputs) if (inp.filters) buildFilters({ ...((c.filters as FilterConfig) ?? {}), ...inp.filters });
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

export interface PrepReport {
  parts: number;
  documents: { in: number; kept: number; dropped: Record<string, number>; bytes: number };
  /** largestClusters: ids (representative first, at most 100 listed) of the 20 largest clusters;
   *  every cluster is in <work>/merge/clusters.tsv. */
  duplicates: { exact: number; near: number; clusters: number; largestClusters: string[][]; largestClusterSizes: number[] };
  /** After dedup, per category: documents and tokens available to the stages. */
  available: Record<string, { documents: number; tokens: number }>;
  stages: Record<string, { tokens: number; categories: Record<string, { documents: number; tokens: number; factor: number }> }>;
  tokenizer: string;
}

function partFiles<T>(all: T[], part: number, parts: number): T[] {
  return all.filter((_, i) => i % parts === part);
}

async function inputFiles(cfg: PrepConfig): Promise<{ file: string; input: number }[]> {
  const out: { file: string; input: number }[] = [];
  for (let i = 0; i < cfg.inputs.length; i++) {
    const inp = cfg.inputs[i]!;
    let files: string[];
    try {
      files = await listFiles(inp.path);
    } catch (err) {
      throw new PatentGPTError('E_IO', `inputs[${i}].path ${inp.path}: ${err instanceof Error ? err.message : String(err)}; fix the path in the config`);
    }
    const ex = inp.exclude ? new RegExp(inp.exclude) : null;
    for (const f of files) if (!ex || !ex.test(path.basename(f))) out.push({ file: f, input: i });
  }
  return out;
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

/** Phase 1 for one part. Output: work/part-<i>/{spool/, docs.tsv, dedup/, ledger.json}.
 *  This thread reads and splits the files; workers (and this thread, when they are all busy or
 *  not yet started) parse, filter, tokenize and sign the documents; results are written in input
 *  order, so the output does not depend on timing. */
async function scan(cfg: PrepConfig, part: number, parts: number, opts: PrepOptions): Promise<void> {
  const final = path.join(cfg.work!, `part-${part}`);
  if (fs.existsSync(path.join(final, 'ledger.json'))) return;
  const tmp = `${final}.tmp`;
  await rmrf(tmp);
  await fs.promises.mkdir(tmp, { recursive: true });
  const setup: ScanSetup = {
    filters: cfg.inputs.map((inp) => (inp.filters === false ? false : { ...cfg.filters, ...(inp.filters ?? {}) })),
    overrides: cfg.inputs.map((inp) => ({ category: inp.category, lang: inp.lang })),
    tokenizer: cfg.tokenizer,
    dedup: cfg.dedup ?? {},
    maxPerplexity: cfg.filters?.maxPerplexity,
  };
  const files = partFiles(await inputFiles(cfg), part, parts);
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
  const ledger = new Ledger();
  let doneBytes = 0;
  // batches in flight, oldest first: written in this order whatever order workers finish in
  const inflight: Promise<ScanResult>[] = [];
  const maxInflight = Math.max(2, 2 * threads);
  const write = async (r: ScanResult): Promise<void> => {
    const keys: string[] = [];
    for (const o of r.outcomes) {
      ledger.in++;
      if ('reason' in o) {
        ledger.drop(o.reason);
        continue;
      }
      await (await spool()).add(o.ids, o.category);
      await writeLine(rows, `${o.category}\t${o.id.replace(/[\t\n]/g, ' ')}\t${o.source.replace(/[\t\n]/g, ' ')}\t${o.lang}\t${o.ids.length}\n`);
      keys.push(o.key);
      ledger.kept++;
    }
    if (keys.length > 0) await dedupW.add(keys, r.sig);
    opts.onProgress?.({ phase: 'scan', documents: ledger.in, bytes: doneBytes, totalBytes, kept: ledger.kept });
  };
  let batch: ScanItem[] = [];
  let batchBytes = 0;
  const submit = async (): Promise<void> => {
    if (batch.length === 0) return;
    inflight.push(pool && poolReady && !pool.busy ? pool.submit(batch) : (local ??= new ScanContext(setup)).process(batch, opts.perplexity));
    batch = [];
    batchBytes = 0;
    while (inflight.length >= maxInflight) await write(await inflight.shift()!);
  };
  try {
    for (const { file, input } of files) {
      const inp = cfg.inputs[input]!;
      const rel = path.relative(path.dirname(inp.path), file);
      const base = doneBytes;
      for await (const item of readRaw(file, {
        format: inp.format, fields: inp.fields, header: inp.header, columns: inp.columns,
        split: inp.split, maxDocBytes: cfg.maxDocBytes, onBytes: (n) => (doneBytes = base + n),
      })) {
        batch.push({ input, source: rel, item });
        batchBytes += 'raw' in item ? item.bytes.length : item.ok ? item.doc.text.length : 0;
        if (batch.length >= BATCH_DOCS || batchBytes >= BATCH_BYTES) await submit();
      }
      doneBytes = base + (await fs.promises.stat(file)).size;
    }
    await submit();
    while (inflight.length > 0) await write(await inflight.shift()!);
    await spool(); // before the pool closes: with no document, the tokenizer comes from here
  } finally {
    await Promise.allSettled(inflight);
    await pool?.close();
  }
  ledger.bytes = doneBytes;
  opts.onProgress?.({ phase: 'scan', documents: ledger.in, bytes: doneBytes, totalBytes, kept: ledger.kept });
  await dedupW.close();
  await new Promise<void>((r, j) => rows.end((e?: Error | null) => (e ? j(e) : r())));
  await (await spool()).close();
  await writeFileAtomic(path.join(tmp, 'ledger.json'), JSON.stringify(ledger.toJSON()));
  await rmrf(final);
  await fs.promises.rename(tmp, final);
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
async function merge(cfg: PrepConfig, parts: number, budgetBytes: number): Promise<void> {
  const final = path.join(cfg.work!, 'merge');
  if (fs.existsSync(path.join(final, 'merge.json'))) return;
  const dd = resolveDedup(cfg.dedup);
  const partDirs: string[] = [];
  for (let p = 0; p < parts; p++) {
    const dir = path.join(cfg.work!, `part-${p}`);
    if (!fs.existsSync(path.join(dir, 'ledger.json'))) throw new PatentGPTError('E_IO', `${dir}: part ${p}/${parts} has not been scanned; run 'patentgpt data prep --shard ${p}/${parts}' first`);
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
        const id = Buffer.from(row.id);
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
      if (cur?.rep !== root) {
        closeCluster();
        cur = { rep: root, size: 0, ids: [] };
        clusters++;
      } else out.write(Buffer.from('\t'));
      out.write(idBytes);
      cur.size++;
      if (cur.ids.length < LISTED_MEMBERS) cur.ids.push(idBytes.toString());
    });
    closeCluster();
  } finally {
    fs.closeSync(idsFd);
    out.close();
  }
  await rmrf(scratch);
  const m: MergeResult = {
    available, exact: d.exactDuplicates, near: d.nearDuplicates, clusters,
    largestClusters: largest.map((c) => c.ids), largestClusterSizes: largest.map((c) => c.size),
  };
  await writeFileAtomic(path.join(tmp, 'merge.json'), JSON.stringify(m));
  await rmrf(final);
  await fs.promises.rename(tmp, final);
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
async function emit(cfg: PrepConfig, part: number, opts: PrepOptions): Promise<void> {
  const m = readMerge(cfg);
  const dropFile = path.join(cfg.work!, 'merge', `drop-${part}.bin`);
  if (!m || !fs.existsSync(dropFile)) throw new PatentGPTError('E_IO', `${path.join(cfg.work!, 'merge')} is missing or incomplete: run 'patentgpt data prep' with the merge phase (after every part's scan) before emit`);
  const partDir = path.join(cfg.work!, `part-${part}`);
  const drop = fs.readFileSync(dropFile);
  const dropped = (i: number): boolean => (i >> 3) < drop.length && hasBit(drop, i);
  const seed = cfg.seed ?? 1;
  for (const [stage, st] of Object.entries(cfg.stages)) {
    const final = path.join(cfg.output, stage, `part-${part}`);
    if (fs.existsSync(path.join(final, 'manifest.json'))) continue;
    const tmp = `${final}.tmp`;
    await rmrf(tmp);
    const factors = stageFactors(st, m.available);
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
    } finally {
      spool.close();
    }
    await fs.promises.mkdir(path.dirname(final), { recursive: true });
    await rmrf(final);
    await fs.promises.rename(tmp, final);
  }
}

/** Gathers the report from whatever parts have finished; written to <output>/prep-report.json. */
export async function writeReport(cfg: PrepConfig, parts: number): Promise<PrepReport> {
  const ledger = new Ledger();
  for (let p = 0; p < parts; p++) {
    const f = path.join(cfg.work!, `part-${p}`, 'ledger.json');
    if (fs.existsSync(f)) ledger.merge(JSON.parse(fs.readFileSync(f, 'utf8')));
  }
  const m = readMerge(cfg);
  if (m) {
    ledger.kept -= m.exact + m.near;
    if (m.exact) ledger.drop('exact-duplicate', m.exact);
    if (m.near) ledger.drop('near-duplicate', m.near);
  }
  const stages: PrepReport['stages'] = {};
  for (const [stage, st] of Object.entries(cfg.stages)) {
    const factors = m ? stageFactors(st, m.available) : {};
    const cats: Record<string, { documents: number; tokens: number; factor: number }> = {};
    let tokens = 0;
    for (let p = 0; p < parts; p++) {
      const mfile = path.join(cfg.output, stage, `part-${p}`, 'manifest.json');
      if (!fs.existsSync(mfile)) continue;
      const man = JSON.parse(fs.readFileSync(mfile, 'utf8')) as { categories: Record<string, { tokens: number; documents: number }> };
      for (const [c, v] of Object.entries(man.categories)) {
        const x = (cats[c] ??= { documents: 0, tokens: 0, factor: factors[c] ?? 0 });
        x.documents += v.documents;
        x.tokens += v.tokens;
        tokens += v.tokens;
      }
    }
    stages[stage] = { tokens, categories: cats };
  }
  const report: PrepReport = {
    parts,
    documents: ledger.toJSON(),
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
 * unfinished phase and gives the same output.
 */
export async function prep(cfg: PrepConfig, opts: PrepOptions = {}): Promise<PrepReport> {
  const parts = opts.parts ?? 1;
  const part = opts.part ?? 0;
  if (!Number.isInteger(parts) || parts < 1 || !Number.isInteger(part) || part < 0 || part >= parts)
    throw new PatentGPTError('E_ARGUMENT', `prep: --shard must be i/N with 0 <= i < N, got ${part}/${parts}`);
  const phase = opts.phase ?? 'all';
  await fs.promises.mkdir(cfg.work!, { recursive: true });
  if (phase === 'scan' || phase === 'all') await scan(cfg, part, parts, opts);
  if (phase === 'merge' || (phase === 'all' && parts === 1)) await merge(cfg, parts, opts.mergeBudgetBytes ?? MERGE_BUDGET);
  if (phase === 'emit' || (phase === 'all' && parts === 1)) await emit(cfg, part, opts);
  return writeReport(cfg, parts);
}
