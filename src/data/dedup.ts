// Deduplication: exact (a hash of the normalised text) and near-duplicate (MinHash signatures
// from the native kernel, banded LSH for candidates, then the signature's Jaccard estimate
// against the threshold). Clusters are union-find components; the lowest index is kept.
// Works across parts: each part saves its signatures and exact keys (savePart), and merge
// runs over all parts in order, so every part's decision is the same wherever it ran.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import { PatentGPTError } from '../errors.js';
import { minhashSignatures } from '../text/minhash.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface DedupConfig {
  /** Exact duplicates (normalised text hash). Default true. */
  exact?: boolean;
  /** Near duplicates by MinHash LSH. Default true. */
  near?: boolean;
  /** Jaccard similarity of shingle sets at or above which two documents are duplicates. Default 0.8. */
  threshold?: number;
  /** Signature length. Default 128. */
  permutations?: number;
  /** Words (or CJK characters) per shingle. Default 5. */
  shingle?: number;
  /** LSH bands x rows = permutations; default: chosen for the threshold (few false negatives). */
  bands?: number;
  seed?: number;
}

export interface ResolvedDedup {
  exact: boolean;
  near: boolean;
  threshold: number;
  permutations: number;
  shingle: number;
  bands: number;
  rows: number;
  seed: number;
}

const CJK_RE = /([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])/g;
const SEPARATOR_RE = /^[\p{P}\p{S}\s]$/u;
/** Per UTF-16 unit: 0 not known yet, 1 a separator (punctuation, symbol, blank), 2 not. */
const separatorUnits = new Uint8Array(65536);

function isSeparator(t: string, i: number): boolean {
  const c = t.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdfff) return SEPARATOR_RE.test(String.fromCodePoint(t.codePointAt(i)!));
  let k = separatorUnits[c]!;
  if (k === 0) separatorUnits[c] = k = SEPARATOR_RE.test(t[i]!) ? 1 : 2;
  return k === 1;
}

function isPairAt(t: string, i: number): boolean {
  const c = t.charCodeAt(i);
  if (c < 0xd800 || c > 0xdbff || i + 1 >= t.length) return false;
  const d = t.charCodeAt(i + 1);
  return d >= 0xdc00 && d <= 0xdfff;
}

/** Per ASCII unit: 1 when it is in [\p{P}\p{S}\s] (from the same test as the rest). */
const ASCII_SEPARATOR = Uint8Array.from({ length: 128 }, (_, c) => +isSeparator(String.fromCharCode(c), 0));

let collapseScratch = new Uint16Array(1 << 16);

/** `t.replace(/[\p{P}\p{S}\s]+/gu, ' ').trim()` without the regex (a table per code unit: 5x
 *  faster), written unit by unit into one array: no string per word (2x faster again). */
function collapseSeparators(t: string): string {
  // one buffer reused across calls (the string is copied out of it), a fresh one past 8M units
  if (t.length > collapseScratch.length && t.length <= 8 << 20) collapseScratch = new Uint16Array(Math.min(8 << 20, Math.max(t.length, 2 * collapseScratch.length)));
  const out = t.length <= collapseScratch.length ? collapseScratch : new Uint16Array(t.length);
  let n = 0;
  let space = false; // a separator since the last word unit
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    const ascii = c < 0x80;
    const pair = !ascii && isPairAt(t, i); // the low half belongs to the same code point
    if (ascii ? ASCII_SEPARATOR[c] === 1 : isSeparator(t, i)) {
      space = n > 0;
      if (pair) i++;
      continue;
    }
    if (space) {
      out[n++] = 0x20;
      space = false;
    }
    out[n++] = c;
    if (pair) out[n++] = t.charCodeAt(++i);
  }
  // utf16le keeps lone surrogates as they are, as String.slice does
  return Buffer.from(out.buffer, 0, 2 * n).toString('utf16le');
}

const ASCII_RE = /^[\x00-\x7f]*$/;

/** Text as dedup sees it: NFKC, lower case, punctuation and symbols gone, each CJK character a word
 *  (the same as .replace(/[\p{P}\p{S}]+/gu, ' ').replace(CJK_RE, ' $1 ').replace(/\s+/g, ' ').trim()). */
export function normalizeForDedup(text: string): string {
  // ASCII (most patents) is its own NFKC form and holds no CJK: skip both passes
  if (ASCII_RE.test(text)) return collapseSeparators(text.toLowerCase());
  return collapseSeparators(text.normalize('NFKC').toLowerCase().replace(CJK_RE, ' $1 '));
}

/** 128-bit hex key of the normalised text. */
export function exactKey(normalized: string): string {
  return createHash('md5').update(normalized).digest('hex');
}

// Probability that a pair of similarity s shares at least one of b bands of r rows.
function collision(s: number, b: number, r: number): number {
  return 1 - (1 - s ** r) ** b;
}

/** (bands, rows) with bands * rows <= P minimising weighted false positives and negatives
 *  (false negatives weigh 19x: candidates are verified, misses are lost). */
export function lshParams(threshold: number, P: number): { bands: number; rows: number } {
  let best = { bands: 1, rows: P, cost: Infinity };
  const steps = 200;
  for (let b = 1; b <= P; b++) {
    const r = Math.floor(P / b);
    if (r < 1) break;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < steps; i++) {
      const s = (i + 0.5) / steps;
      if (s < threshold) fp += collision(s, b, r) / steps;
      else fn += (1 - collision(s, b, r)) / steps;
    }
    const cost = 0.05 * fp + 0.95 * fn;
    if (cost < best.cost) best = { bands: b, rows: r, cost };
  }
  return { bands: best.bands, rows: best.rows };
}

export function resolveDedup(cfg: DedupConfig = {}): ResolvedDedup {
  const known = new Set(['exact', 'near', 'threshold', 'permutations', 'shingle', 'bands', 'seed']);
  for (const k of Object.keys(cfg)) if (!known.has(k)) throw new PatentGPTError('E_CONFIG', `dedup: unknown field '${k}' (known: ${[...known].join(', ')})`);
  const threshold = cfg.threshold ?? 0.8;
  if (!(threshold > 0 && threshold <= 1)) throw new PatentGPTError('E_CONFIG', `dedup.threshold must be in (0, 1], got ${threshold}`);
  const P = cfg.permutations ?? 128;
  if (!Number.isInteger(P) || P < 2 || P > 4096) throw new PatentGPTError('E_CONFIG', `dedup.permutations must be an integer in [2, 4096], got ${P}`);
  const shingle = cfg.shingle ?? 5;
  if (!Number.isInteger(shingle) || shingle < 1 || shingle > 32) throw new PatentGPTError('E_CONFIG', `dedup.shingle must be an integer in [1, 32], got ${shingle}`);
  let { bands, rows } = lshParams(threshold, P);
  if (cfg.bands !== undefined) {
    if (!Number.isInteger(cfg.bands) || cfg.bands < 1 || cfg.bands > P) throw new PatentGPTError('E_CONFIG', `dedup.bands must be an integer in [1, ${P}], got ${cfg.bands}`);
    bands = cfg.bands;
    rows = Math.floor(P / bands);
  }
  return { exact: cfg.exact ?? true, near: cfg.near ?? true, threshold, permutations: P, shingle, bands, rows, seed: cfg.seed ?? 1 };
}

/** Signatures of normalised texts under a resolved config. */
export function signatures(normalized: readonly string[], c: ResolvedDedup): Uint32Array {
  return minhashSignatures(normalized, { permutations: c.permutations, shingle: c.shingle, unit: 'word', seed: c.seed });
}

/** Estimated Jaccard similarity: the share of equal signature entries. */
export function estimateJaccard(sig: Uint32Array, i: number, j: number, P: number): number {
  let eq = 0;
  const a = i * P;
  const b = j * P;
  for (let p = 0; p < P; p++) if (sig[a + p] === sig[b + p]) eq++;
  return eq / P;
}

/** LSH bucket of one band: FNV-1a over its rows, 32 bits (candidates are verified, so chance collisions cost only time). */
export function bandBucket(sig: Uint32Array, at: number, rows: number): number {
  let h = 0x811c9dc5;
  for (let r = 0; r < rows; r++) h = Math.imul(h ^ sig[at + r]!, 0x01000193);
  return h >>> 0;
}

export interface DedupResult {
  /** Representative (kept document) of each document; rep[i] === i means kept. */
  rep: Int32Array;
  /** Why each duplicate goes: 1 exact, 2 near; 0 for kept documents. */
  kind: Uint8Array;
  exactDuplicates: number;
  nearDuplicates: number;
  /** Clusters of two or more documents, each as its member indices (representative first), by representative. */
  clusters: number[][];
}

/** Union-find root of x, halving the path. */
export function find(parent: Int32Array, x: number): number {
  while (parent[x] !== x) {
    parent[x] = parent[parent[x]!]!;
    x = parent[x]!;
  }
  return x;
}

/** Joins the sets of a and b; the lower index stays the root (the first occurrence is kept). */
export function union(parent: Int32Array, a: number, b: number): void {
  const ra = find(parent, a);
  const rb = find(parent, b);
  if (ra === rb) return;
  // the lower index stays the root: the first occurrence is the one kept
  if (ra < rb) parent[rb] = ra;
  else parent[ra] = rb;
}

/**
 * Duplicate clusters over n documents in order. keys: exact keys (or null to skip exact);
 * sig: (n, P) signatures (or null to skip near). Memory: n * 8 bytes per band pass, plus sig.
 */
export function findDuplicates(n: number, keys: readonly string[] | null, sig: Uint32Array | null, c: ResolvedDedup): DedupResult {
  const parent = new Int32Array(n);
  for (let i = 0; i < n; i++) parent[i] = i;
  const exactOf = new Int32Array(n).fill(-1);
  if (keys && c.exact) {
    const first = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const f = first.get(keys[i]!);
      if (f === undefined) first.set(keys[i]!, i);
      else {
        exactOf[i] = f;
        union(parent, f, i);
      }
    }
  }
  if (sig && c.near && n > 1) {
    const P = c.permutations;
    const order = new BigUint64Array(n);
    for (let band = 0; band < c.bands; band++) {
      const off = band * c.rows;
      for (let i = 0; i < n; i++) {
        order[i] = (BigInt(bandBucket(sig, i * P + off, c.rows)) << 32n) | BigInt(i);
      }
      order.sort();
      let g = 0;
      while (g < n) {
        const key = order[g]! >> 32n;
        let e = g + 1;
        while (e < n && order[e]! >> 32n === key) e++;
        if (e - g > 1) {
          const first = Number(order[g]! & 0xffffffffn);
          for (let m = g + 1; m < e; m++) {
            const j = Number(order[m]! & 0xffffffffn);
            if (find(parent, first) === find(parent, j)) continue;
            if (estimateJaccard(sig, first, j, P) >= c.threshold) union(parent, first, j);
          }
        }
        g = e;
      }
    }
  }
  const rep = new Int32Array(n);
  const kind = new Uint8Array(n);
  const members = new Map<number, number[]>();
  let exactDuplicates = 0;
  let nearDuplicates = 0;
  for (let i = 0; i < n; i++) {
    const r = find(parent, i);
    rep[i] = r;
    if (r !== i) {
      const exact = exactOf[i]! >= 0 || (keys !== null && c.exact && keys[i] === keys[r]);
      kind[i] = exact ? 1 : 2;
      if (exact) exactDuplicates++;
      else nearDuplicates++;
      let m = members.get(r);
      if (!m) members.set(r, (m = [r]));
      m.push(i);
    }
  }
  return { rep, kind, exactDuplicates, nearDuplicates, clusters: [...members.values()].sort((a, b) => a[0]! - b[0]!) };
}

// ------------------------------------------------------------------ per-part state on disk

/** Streams one part's exact keys and signatures to a folder (keys.bin, sigs.bin, meta.json), so a
 *  scan holds one batch at a time; merge reads every part back in order. */
export class PartWriter {
  private n = 0;
  private readonly keys: fs.WriteStream;
  private readonly sigs: fs.WriteStream;

  constructor(readonly dir: string, readonly c: ResolvedDedup) {
    fs.mkdirSync(dir, { recursive: true });
    this.keys = fs.createWriteStream(`${dir}/keys.bin`);
    this.sigs = fs.createWriteStream(`${dir}/sigs.bin`);
  }

  async add(keys: readonly string[], sig: Uint32Array): Promise<void> {
    if (sig.length !== keys.length * this.c.permutations) throw new PatentGPTError('E_ARGUMENT', `PartWriter: ${keys.length} keys but ${sig.length / this.c.permutations} signatures`);
    this.n += keys.length;
    const waits: Promise<unknown>[] = [];
    // listen for both drains now: awaiting one, then listening for the other, can miss it and hang
    if (!this.keys.write(Buffer.from(keys.join(''), 'hex'))) waits.push(once(this.keys, 'drain'));
    if (!this.sigs.write(Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength))) waits.push(once(this.sigs, 'drain'));
    await Promise.all(waits);
  }

  async close(): Promise<void> {
    await Promise.all([new Promise<void>((r, j) => this.keys.end((e?: Error | null) => (e ? j(e) : r()))), new Promise<void>((r, j) => this.sigs.end((e?: Error | null) => (e ? j(e) : r())))]);
    const { permutations, shingle, seed } = this.c;
    await writeFileAtomic(`${this.dir}/meta.json`, JSON.stringify({ magic: MAGIC, n: this.n, permutations, shingle, seed }));
  }
}

const MAGIC = 'PGDEDUP1';

/** Saves one part's exact keys and signatures in one go (small parts, tests). */
export async function savePart(dir: string, keys: readonly string[], sig: Uint32Array, c: ResolvedDedup): Promise<void> {
  const w = new PartWriter(dir, c);
  await w.add(keys, sig);
  await w.close();
}

export interface PartState {
  keys: string[];
  sig: Uint32Array;
}

export interface PartMeta {
  /** Documents in the part. */
  n: number;
}

/** Checks one part's dedup state (header, config, sizes) without reading the data. */
export function readPartMeta(dir: string, c: ResolvedDedup): PartMeta {
  let h: { magic: string; n: number; permutations: number; shingle: number; seed: number };
  try {
    h = JSON.parse(fs.readFileSync(`${dir}/meta.json`, 'utf8'));
  } catch (err) {
    throw new PatentGPTError('E_IO', `${dir}: no readable dedup state (${err instanceof Error ? err.message : String(err)}); run that part's scan first`);
  }
  if (h.magic !== MAGIC) throw new PatentGPTError('E_FORMAT', `${dir}/meta.json: not a dedup state; delete the folder and rescan the part`);
  if (h.permutations !== c.permutations || h.shingle !== c.shingle || h.seed !== c.seed)
    throw new PatentGPTError('E_CONFIG', `${dir}: made with permutations ${h.permutations}, shingle ${h.shingle}, seed ${h.seed}; the config says ${c.permutations}, ${c.shingle}, ${c.seed}. Rescan the parts with one config`);
  if (fs.statSync(`${dir}/keys.bin`).size !== h.n * 16 || fs.statSync(`${dir}/sigs.bin`).size !== h.n * c.permutations * 4)
    throw new PatentGPTError('E_FORMAT', `${dir}: truncated dedup state (${h.n} documents in meta.json); delete the folder and rescan the part`);
  return { n: h.n };
}

/** One part's keys and signatures in memory (tests, small parts; the prep merge streams them). */
export function loadPart(dir: string, c: ResolvedDedup): PartState {
  const { n } = readPartMeta(dir, c);
  const kb = fs.readFileSync(`${dir}/keys.bin`);
  const sb = fs.readFileSync(`${dir}/sigs.bin`);
  const hex = kb.toString('hex');
  const keys: string[] = new Array(n);
  for (let i = 0; i < n; i++) keys[i] = hex.slice(i * 32, i * 32 + 32);
  const sig = new Uint32Array(n * c.permutations);
  Buffer.from(sig.buffer).set(sb);
  return { keys, sig };
}
