// Token shards: documents of token ids on disk, read back by positioned reads (no whole-file load).
//
// A shard set is a folder:
//   manifest.json       what the folder holds (ShardManifest below), written last and atomically
//   shard-00000.bin     token ids, little-endian uint16 when vocabSize <= 65536, else uint32
//   shard-00000.idx     document offsets into the .bin, in tokens: little-endian uint64,
//                       documents + 1 entries, the first 0 and the last the shard's token count
// Document boundaries live in the .idx (not as an EOS id in the stream), so a reader finds any
// document without scanning, and a document may carry its own BOS/EOS or none (the tokenizer
// decides). Each shard holds documents of one category; the manifest sums tokens and documents
// per category, for mixture weights. Every file carries a sha256 in the manifest.
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic.js';

export type TokenDType = 'uint16' | 'uint32';

export interface ShardEntry {
  /** Token file, relative to the manifest's folder. */
  file: string;
  /** Document-offset file, relative to the manifest's folder. */
  index: string;
  category: string;
  tokens: number;
  documents: number;
  /** Hex sha256 of the token file. */
  sha256: string;
  /** Hex sha256 of the index file. */
  indexSha256: string;
}

export interface ShardManifest {
  format: 'patentgpt-token-shards';
  version: 1;
  /** Every id in the shards is < vocabSize. */
  vocabSize: number;
  dtype: TokenDType;
  /** Free text naming the tokenizer that produced the ids ("byte", a tokenizer.json path, ...). */
  tokenizer?: string;
  tokens: number;
  documents: number;
  categories: Record<string, { tokens: number; documents: number }>;
  shards: ShardEntry[];
}

export const MANIFEST_NAME = 'manifest.json';

/** uint16 while every id fits in 16 bits, else uint32. */
export function dtypeForVocab(vocabSize: number): TokenDType {
  return vocabSize <= 65536 ? 'uint16' : 'uint32';
}

function widthOf(dtype: TokenDType): 2 | 4 {
  return dtype === 'uint16' ? 2 : 4;
}

function dataError(file: string, field: string, message: string): PatentGPTError {
  return new PatentGPTError('E_DATA', `${file}: ${field}: ${message}`);
}

function checkLittleEndian(): void {
  if (os.endianness() !== 'LE') throw new PatentGPTError('E_DATA', 'token shards are little-endian; this machine is big-endian');
}

const CATEGORY_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

// ---------------------------------------------------------------- writing

export interface ShardWriterOptions {
  vocabSize: number;
  /** A shard is closed once it holds this many tokens (a longer document gets a shard of its own). Default 2^28. */
  maxShardTokens?: number;
  tokenizer?: string;
  /** Tokens buffered per open shard before a write. Default 2^18. */
  bufferTokens?: number;
  /** Replace an existing shard set in the folder (its manifest is removed first). Default false. */
  overwrite?: boolean;
}

interface OpenShard {
  entry: ShardEntry;
  bin: fsp.FileHandle;
  idx: fsp.FileHandle;
  binHash: Hash;
  idxHash: Hash;
  buf: Uint16Array | Uint32Array;
  bufLen: number;
  offsets: BigUint64Array;
  offLen: number;
}

/**
 * Streams documents into a shard set with constant memory (one buffer per open category).
 * add() documents, then close() writes the manifest; until then the folder has no manifest and
 * no reader accepts it.
 */
export class ShardWriter {
  readonly dir: string;
  readonly vocabSize: number;
  readonly dtype: TokenDType;
  private readonly maxShardTokens: number;
  private readonly bufferTokens: number;
  private readonly tokenizer: string | undefined;
  private readonly open = new Map<string, OpenShard>();
  private readonly done: ShardEntry[] = [];
  private nextShard = 0;
  private closed = false;

  private constructor(dir: string, opts: ShardWriterOptions) {
    this.dir = dir;
    this.vocabSize = opts.vocabSize;
    this.dtype = dtypeForVocab(opts.vocabSize);
    this.maxShardTokens = opts.maxShardTokens ?? 2 ** 28;
    this.bufferTokens = opts.bufferTokens ?? 2 ** 18;
    this.tokenizer = opts.tokenizer;
  }

  static async create(dir: string, opts: ShardWriterOptions): Promise<ShardWriter> {
    checkLittleEndian();
    if (!Number.isSafeInteger(opts.vocabSize) || opts.vocabSize < 1 || opts.vocabSize > 2 ** 32)
      throw new PatentGPTError('E_ARGUMENT', `ShardWriter: vocabSize must be an integer in [1, 2^32], got ${opts.vocabSize}`);
    if (opts.maxShardTokens !== undefined && (!Number.isSafeInteger(opts.maxShardTokens) || opts.maxShardTokens < 1))
      throw new PatentGPTError('E_ARGUMENT', `ShardWriter: maxShardTokens must be a positive integer, got ${opts.maxShardTokens}`);
    if (opts.bufferTokens !== undefined && (!Number.isSafeInteger(opts.bufferTokens) || opts.bufferTokens < 1))
      throw new PatentGPTError('E_ARGUMENT', `ShardWriter: bufferTokens must be a positive integer, got ${opts.bufferTokens}`);
    await fsp.mkdir(dir, { recursive: true });
    const manifest = path.join(dir, MANIFEST_NAME);
    if (fs.existsSync(manifest)) {
      if (!opts.overwrite)
        throw new PatentGPTError('E_ARGUMENT', `ShardWriter: ${manifest} exists; pass overwrite: true to replace that shard set`);
      await fsp.rm(manifest);
    }
    return new ShardWriter(dir, opts);
  }

  /** Appends one document (its ids, each an integer in [0, vocabSize)) to the category's shard. */
  async add(ids: ArrayLike<number>, category = 'default'): Promise<void> {
    if (this.closed) throw new PatentGPTError('E_ARGUMENT', 'ShardWriter.add after close()');
    if (!CATEGORY_RE.test(category))
      throw new PatentGPTError('E_ARGUMENT', `ShardWriter: category "${category}" must match ${CATEGORY_RE} (letters, digits, _ . -)`);
    // integer typed arrays (what the scan hands over) need only the range check, and are copied whole
    const typed = ids instanceof Int32Array || ids instanceof Uint32Array || ids instanceof Uint16Array ? ids : null;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if ((typed === null && !Number.isInteger(id)) || id < 0 || id >= this.vocabSize)
        throw new PatentGPTError('E_DATA', `ShardWriter: token ${i} of a "${category}" document is ${id}, not an id in [0, ${this.vocabSize})`);
    }
    let shard = this.open.get(category);
    if (shard && shard.entry.tokens > 0 && shard.entry.tokens + ids.length > this.maxShardTokens) {
      await this.finish(shard);
      this.open.delete(category);
      shard = undefined;
    }
    if (!shard) {
      shard = await this.start(category);
      this.open.set(category, shard);
    }
    for (let i = 0; i < ids.length; ) {
      const n = Math.min(ids.length - i, shard.buf.length - shard.bufLen);
      if (typed) shard.buf.set(typed.subarray(i, i + n), shard.bufLen);
      else for (let j = 0; j < n; j++) shard.buf[shard.bufLen + j] = ids[i + j]!;
      shard.bufLen += n;
      i += n;
      if (shard.bufLen === shard.buf.length) await this.flushTokens(shard);
    }
    shard.entry.tokens += ids.length;
    shard.entry.documents += 1;
    shard.offsets[shard.offLen++] = BigInt(shard.entry.tokens);
    if (shard.offLen === shard.offsets.length) await this.flushOffsets(shard);
  }

  /** Flushes and closes every shard, writes manifest.json atomically and returns it. */
  async close(): Promise<ShardManifest> {
    if (this.closed) throw new PatentGPTError('E_ARGUMENT', 'ShardWriter.close called twice');
    for (const shard of this.open.values()) await this.finish(shard);
    this.open.clear();
    this.closed = true;
    const shards = [...this.done].sort((a, b) => (a.file < b.file ? -1 : 1));
    const { categories, tokens, documents } = totals(shards);
    const manifest: ShardManifest = {
      format: 'patentgpt-token-shards',
      version: 1,
      vocabSize: this.vocabSize,
      dtype: this.dtype,
      ...(this.tokenizer !== undefined ? { tokenizer: this.tokenizer } : {}),
      tokens,
      documents,
      categories,
      shards,
    };
    await writeFileAtomic(path.join(this.dir, MANIFEST_NAME), JSON.stringify(manifest, null, 2) + '\n');
    return manifest;
  }

  /** Closes the files without writing a manifest (the folder stays unreadable as a shard set). */
  async abort(): Promise<void> {
    this.closed = true;
    for (const s of this.open.values()) {
      await s.bin.close();
      await s.idx.close();
    }
    this.open.clear();
  }

  private async start(category: string): Promise<OpenShard> {
    const stem = `shard-${String(this.nextShard++).padStart(5, '0')}`;
    const entry: ShardEntry = { file: `${stem}.bin`, index: `${stem}.idx`, category, tokens: 0, documents: 0, sha256: '', indexSha256: '' };
    const bin = await fsp.open(path.join(this.dir, entry.file), 'w');
    const idx = await fsp.open(path.join(this.dir, entry.index), 'w');
    const shard: OpenShard = {
      entry,
      bin,
      idx,
      binHash: createHash('sha256'),
      idxHash: createHash('sha256'),
      buf: this.dtype === 'uint16' ? new Uint16Array(this.bufferTokens) : new Uint32Array(this.bufferTokens),
      bufLen: 0,
      offsets: new BigUint64Array(4096),
      offLen: 0,
    };
    shard.offsets[shard.offLen++] = 0n;
    return shard;
  }

  private async flushTokens(s: OpenShard): Promise<void> {
    if (s.bufLen === 0) return;
    const bytes = new Uint8Array(s.buf.buffer, 0, s.bufLen * s.buf.BYTES_PER_ELEMENT);
    await writeAll(s.bin, bytes);
    s.binHash.update(bytes);
    s.bufLen = 0;
  }

  private async flushOffsets(s: OpenShard): Promise<void> {
    if (s.offLen === 0) return;
    const bytes = new Uint8Array(s.offsets.buffer, 0, s.offLen * 8);
    await writeAll(s.idx, bytes);
    s.idxHash.update(bytes);
    s.offLen = 0;
  }

  private async finish(s: OpenShard): Promise<void> {
    await this.flushTokens(s);
    await this.flushOffsets(s);
    await s.bin.sync();
    await s.idx.sync();
    await s.bin.close();
    await s.idx.close();
    s.entry.sha256 = s.binHash.digest('hex');
    s.entry.indexSha256 = s.idxHash.digest('hex');
    this.done.push(s.entry);
  }
}

async function writeAll(fh: fsp.FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += (await fh.write(bytes, done, bytes.byteLength - done)).bytesWritten;
}

/** Writes documents (already tokenized) as one shard set; returns the manifest. */
export async function writeShards(
  dir: string,
  docs: Iterable<{ ids: ArrayLike<number>; category?: string }> | AsyncIterable<{ ids: ArrayLike<number>; category?: string }>,
  opts: ShardWriterOptions,
): Promise<ShardManifest> {
  const w = await ShardWriter.create(dir, opts);
  try {
    for await (const d of docs) await w.add(d.ids, d.category);
  } catch (err) {
    await w.abort();
    throw err;
  }
  return w.close();
}

// ---------------------------------------------------------------- reading

export interface OpenShardsOptions {
  /**
   * The model's vocabulary: the manifest's vocabSize must not exceed it (ids would fall outside
   * the embedding). Omit to accept any.
   */
  vocabSize?: number;
  /**
   * 'full' (default) streams every token file once: sha256 and every id < vocabSize.
   * 'size' checks sizes, index files and their checksums only (fast for large sets);
   * ids are still checked as batches read them.
   */
  verify?: 'full' | 'size';
}

/** One shard of an open set: document offsets in memory, tokens read on demand. */
export class Shard {
  readonly file: string;
  readonly category: string;
  readonly tokens: number;
  readonly documents: number;
  /** Document d is tokens [offsets[d], offsets[d + 1]). */
  readonly offsets: Float64Array;
  readonly dtype: TokenDType;
  readonly vocabSize: number;
  /** sha256 of the token file, from the manifest: a stable identity for the shard's documents. */
  readonly sha256: string;
  private fd: number | null = null;
  private scratch = new ArrayBuffer(0);

  /** @internal built by ShardSet.open. */
  constructor(file: string, entry: ShardEntry, offsets: Float64Array, dtype: TokenDType, vocabSize: number) {
    this.file = file;
    this.category = entry.category;
    this.tokens = entry.tokens;
    this.documents = entry.documents;
    this.offsets = offsets;
    this.dtype = dtype;
    this.vocabSize = vocabSize;
    this.sha256 = entry.sha256;
  }

  docLength(d: number): number {
    return this.offsets[d + 1]! - this.offsets[d]!;
  }

  /**
   * Copies `count` ids starting at token `start` of the shard into out[outOffset...] with a
   * positioned read. An id >= vocabSize (a corrupt file) throws E_DATA naming the file.
   */
  read(start: number, count: number, out: Int32Array, outOffset = 0): void {
    if (count === 0) return;
    if (start < 0 || count < 0 || start + count > this.tokens)
      throw new PatentGPTError('E_ARGUMENT', `${this.file}: read of tokens [${start}, ${start + count}) outside [0, ${this.tokens})`);
    const width = widthOf(this.dtype);
    const bytes = count * width;
    if (this.scratch.byteLength < bytes) this.scratch = new ArrayBuffer(Math.max(bytes, 2 * this.scratch.byteLength));
    const view = new Uint8Array(this.scratch, 0, bytes);
    this.fd ??= fs.openSync(this.file, 'r');
    let got = 0;
    while (got < bytes) {
      const n = fs.readSync(this.fd, view, got, bytes - got, start * width + got);
      if (n === 0) throw dataError(this.file, 'tokens', `file ended at byte ${start * width + got}; the manifest says ${this.tokens} tokens (truncated?)`);
      got += n;
    }
    const ids = width === 2 ? new Uint16Array(this.scratch, 0, count) : new Uint32Array(this.scratch, 0, count);
    const vocab = this.vocabSize;
    for (let i = 0; i < count; i++) {
      const id = ids[i]!;
      if (id >= vocab) throw dataError(this.file, 'vocabSize', `token ${start + i} is ${id}, not below the manifest's vocabSize ${vocab}`);
      out[outOffset + i] = id;
    }
  }

  /** The ids of document d. */
  document(d: number): Int32Array {
    const out = new Int32Array(this.docLength(d));
    this.read(this.offsets[d]!, out.length, out);
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** An open shard set: its manifest and shards, checked against the vocabulary and checksums. */
export class ShardSet {
  readonly manifestPath: string;
  readonly dir: string;
  readonly manifest: ShardManifest;
  readonly shards: readonly Shard[];

  private constructor(manifestPath: string, manifest: ShardManifest, shards: Shard[]) {
    this.manifestPath = manifestPath;
    this.dir = path.dirname(manifestPath);
    this.manifest = manifest;
    this.shards = shards;
  }

  get vocabSize(): number {
    return this.manifest.vocabSize;
  }

  /**
   * Opens a shard set from its manifest.json (or the folder holding it). Refuses, with E_DATA
   * naming the file and the field, a manifest with a missing or wrong field, a vocabulary larger
   * than opts.vocabSize, a dtype that does not match the vocabulary, a file whose size does not
   * match its token or document count (truncated), a checksum mismatch, or an id >= vocabSize.
   */
  static async open(manifestOrDir: string, opts: OpenShardsOptions = {}): Promise<ShardSet> {
    checkLittleEndian();
    let manifestPath = manifestOrDir;
    if (fs.existsSync(manifestOrDir) && fs.statSync(manifestOrDir).isDirectory()) manifestPath = path.join(manifestOrDir, MANIFEST_NAME);
    let text: string;
    try {
      text = await fsp.readFile(manifestPath, 'utf8');
    } catch (err) {
      throw new PatentGPTError('E_DATA', `${manifestPath}: cannot read the shard manifest (${(err as Error).message}); write shards with ShardWriter first`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw dataError(manifestPath, 'manifest', `not valid JSON (${(err as Error).message})`);
    }
    const manifest = checkManifest(raw, manifestPath);
    if (opts.vocabSize !== undefined && manifest.vocabSize > opts.vocabSize)
      throw dataError(manifestPath, 'vocabSize', `the shards use a vocabulary of ${manifest.vocabSize} ids, larger than the model's ${opts.vocabSize}; tokenize with the model's tokenizer`);
    const dir = path.dirname(manifestPath);
    const width = widthOf(manifest.dtype);
    const shards: Shard[] = [];
    for (const [i, e] of manifest.shards.entries()) {
      const file = path.resolve(dir, e.file);
      const indexFile = path.resolve(dir, e.index);
      const field = `shards[${i}]`;
      let size: number;
      try {
        size = fs.statSync(file).size;
      } catch {
        throw dataError(file, `${field}.file`, 'the token file listed in the manifest is missing');
      }
      if (size !== e.tokens * width)
        throw dataError(file, `${field}.tokens`, `${size} bytes, expected ${e.tokens} tokens x ${width} bytes (${manifest.dtype}) = ${e.tokens * width}: truncated, or a different dtype`);
      let idxBytes: Buffer;
      try {
        idxBytes = await fsp.readFile(indexFile);
      } catch {
        throw dataError(indexFile, `${field}.index`, 'the index file listed in the manifest is missing');
      }
      if (idxBytes.byteLength !== (e.documents + 1) * 8)
        throw dataError(indexFile, `${field}.documents`, `${idxBytes.byteLength} bytes, expected (${e.documents} documents + 1) x 8 = ${(e.documents + 1) * 8}: truncated?`);
      const idxSha = createHash('sha256').update(idxBytes).digest('hex');
      if (idxSha !== e.indexSha256) throw dataError(indexFile, `${field}.indexSha256`, `checksum mismatch (file ${idxSha}, manifest ${e.indexSha256}): the file is corrupt`);
      const aligned = new BigUint64Array(e.documents + 1);
      new Uint8Array(aligned.buffer).set(idxBytes);
      const offsets = new Float64Array(e.documents + 1);
      for (let d = 0; d <= e.documents; d++) {
        offsets[d] = Number(aligned[d]!);
        if (d > 0 && offsets[d]! < offsets[d - 1]!) throw dataError(indexFile, `${field}.index`, `document offsets decrease at document ${d}`);
      }
      if (offsets[0] !== 0 || offsets[e.documents] !== e.tokens)
        throw dataError(indexFile, `${field}.index`, `offsets run from ${offsets[0]} to ${offsets[e.documents]}, expected 0 to ${e.tokens}`);
      if ((opts.verify ?? 'full') === 'full') await verifyTokens(file, e, field, manifest);
      shards.push(new Shard(file, e, offsets, manifest.dtype, manifest.vocabSize));
    }
    return new ShardSet(manifestPath, manifest, shards);
  }

  close(): void {
    for (const s of this.shards) s.close();
  }
}

/** Streams a token file once: sha256 against the manifest, and every id below vocabSize. */
async function verifyTokens(file: string, e: ShardEntry, field: string, m: ShardManifest): Promise<void> {
  const hash = createHash('sha256');
  const width = widthOf(m.dtype);
  let pos = 0;
  let carry: Buffer | null = null;
  for await (const chunk0 of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    let chunk = chunk0 as Buffer;
    hash.update(chunk);
    if (carry) {
      chunk = Buffer.concat([carry, chunk]);
      carry = null;
    }
    const whole = chunk.byteLength - (chunk.byteLength % width);
    if (whole < chunk.byteLength) carry = Buffer.from(chunk.subarray(whole));
    for (let b = 0; b < whole; b += width) {
      const id = width === 2 ? chunk.readUInt16LE(b) : chunk.readUInt32LE(b);
      if (id >= m.vocabSize) throw dataError(file, 'vocabSize', `token ${pos} is ${id}, not below the manifest's vocabSize ${m.vocabSize}`);
      pos++;
    }
  }
  const sha = hash.digest('hex');
  if (sha !== e.sha256) throw dataError(file, `${field}.sha256`, `checksum mismatch (file ${sha}, manifest ${e.sha256}): the file is corrupt`);
}

function checkManifest(raw: unknown, file: string): ShardManifest {
  const obj = (v: unknown, field: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw dataError(file, field, 'must be an object');
    return v as Record<string, unknown>;
  };
  const int = (v: unknown, field: string, min = 0): number => {
    if (!Number.isSafeInteger(v) || (v as number) < min) throw dataError(file, field, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const str = (v: unknown, field: string): string => {
    if (typeof v !== 'string' || v.length === 0) throw dataError(file, field, `must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  };
  const m = obj(raw, 'manifest');
  if (m.format !== 'patentgpt-token-shards') throw dataError(file, 'format', `must be "patentgpt-token-shards", got ${JSON.stringify(m.format)}`);
  if (m.version !== 1) throw dataError(file, 'version', `version ${JSON.stringify(m.version)} is not supported (1 is)`);
  const vocabSize = int(m.vocabSize, 'vocabSize', 1);
  if (m.dtype !== 'uint16' && m.dtype !== 'uint32') throw dataError(file, 'dtype', `must be "uint16" or "uint32", got ${JSON.stringify(m.dtype)}`);
  if (m.dtype !== dtypeForVocab(vocabSize))
    throw dataError(file, 'dtype', `${m.dtype} does not match a ${vocabSize}-token vocabulary (shards use ${dtypeForVocab(vocabSize)}: uint16 up to 65536 ids, else uint32)`);
  if (m.tokenizer !== undefined && typeof m.tokenizer !== 'string') throw dataError(file, 'tokenizer', 'must be a string');
  if (!Array.isArray(m.shards)) throw dataError(file, 'shards', 'must be an array');
  const shards: ShardEntry[] = m.shards.map((s0, i) => {
    const f = `shards[${i}]`;
    const s = obj(s0, f);
    const category = str(s.category, `${f}.category`);
    if (!CATEGORY_RE.test(category)) throw dataError(file, `${f}.category`, `"${category}" must match ${CATEGORY_RE}`);
    const entry: ShardEntry = {
      file: str(s.file, `${f}.file`),
      index: str(s.index, `${f}.index`),
      category,
      tokens: int(s.tokens, `${f}.tokens`),
      documents: int(s.documents, `${f}.documents`),
      sha256: str(s.sha256, `${f}.sha256`),
      indexSha256: str(s.indexSha256, `${f}.indexSha256`),
    };
    for (const k of ['file', 'index'] as const)
      if (path.isAbsolute(entry[k]) || entry[k].split(/[\\/]/).includes('..')) throw dataError(file, `${f}.${k}`, 'must be a path inside the manifest folder');
    return entry;
  });
  const { categories, tokens, documents } = totals(shards);
  if (int(m.tokens, 'tokens') !== tokens) throw dataError(file, 'tokens', `${m.tokens} does not equal the shards' sum ${tokens}`);
  if (int(m.documents, 'documents') !== documents) throw dataError(file, 'documents', `${m.documents} does not equal the shards' sum ${documents}`);
  const cats = obj(m.categories, 'categories');
  for (const [name, c] of Object.entries(categories)) {
    const got = obj(cats[name], `categories.${name}`);
    if (got.tokens !== c.tokens || got.documents !== c.documents)
      throw dataError(file, `categories.${name}`, `says ${JSON.stringify(got)}, the shards hold ${JSON.stringify(c)}`);
  }
  for (const name of Object.keys(cats)) if (!(name in categories)) throw dataError(file, `categories.${name}`, 'no shard has this category');
  return {
    format: 'patentgpt-token-shards',
    version: 1,
    vocabSize,
    dtype: m.dtype,
    ...(typeof m.tokenizer === 'string' ? { tokenizer: m.tokenizer } : {}),
    tokens,
    documents,
    categories,
    shards,
  };
}

/** Tokens and documents per category and in all, summed over shard entries. */
function totals(shards: readonly { category: string; tokens: number; documents: number }[]) {
  const categories: ShardManifest['categories'] = {};
  let tokens = 0;
  let documents = 0;
  for (const s of shards) {
    const c = (categories[s.category] ??= { tokens: 0, documents: 0 });
    c.tokens += s.tokens;
    c.documents += s.documents;
    tokens += s.tokens;
    documents += s.documents;
  }
  return { categories, tokens, documents };
}
