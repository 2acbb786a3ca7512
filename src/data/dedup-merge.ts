// Dedup over every part's saved state (keys.bin, sigs.bin) in bounded memory: the same clusters
// and representatives as findDuplicates (dedup.ts) over all documents in part order, computed
// with external sorts instead of in-memory tables:
//   exact: records (md5 key, index) sorted; in each run of equal keys the first index is kept.
//   near:  per band, records (bucket, index) sorted; in each bucket the first index is checked
//          against the others, signatures read back from sigs.bin (pread), as findDuplicates does.
// Documents that are exact duplicates stay out of the bands: their signature equals their first
// occurrence's, so every bucket holding one holds that earlier document too and the clusters are
// the same. Memory: the sort budget, plus a union-find parent (4 bytes) and a bit per document.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type DedupResult, type ResolvedDedup, bandBucket, find, readPartMeta, union } from './dedup.js';
import { RunSorter } from './runs.js';

/** Documents read from keys.bin / sigs.bin per chunk. */
const CHUNK_DOCS = 2048;

export type Bits = Uint8Array;
export const newBits = (n: number): Bits => new Uint8Array(Math.ceil(n / 8));
export const hasBit = (b: Bits, i: number): boolean => (b[i >> 3]! & (1 << (i & 7))) !== 0;
export const setBit = (b: Bits, i: number): void => {
  b[i >> 3]! |= 1 << (i & 7);
};

/** The external dedup's answer: rep as in DedupResult, the exact duplicates as bits. */
export interface PartsDedup {
  /** Documents per part, in order; global index = the part's offset + row. */
  counts: number[];
  /** Representative of each document (itself when kept). */
  rep: Int32Array;
  /** Bit i: document i is an exact duplicate (else, when rep[i] !== i, a near one). */
  exact: Bits;
  exactDuplicates: number;
  nearDuplicates: number;
  /** Sorted runs spilled to disk (0 when every sort fit its budget). */
  spilledRuns: number;
}

/** Reads a part's fixed-size records in chunks: calls each(buffer, first index, count). */
function streamRecords(file: string, recordBytes: number, each: (buf: Buffer, first: number, count: number) => void): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(CHUNK_DOCS * recordBytes);
    for (let first = 0, pos = 0; ; ) {
      const got = fs.readSync(fd, buf, 0, buf.length, pos);
      const count = Math.floor(got / recordBytes);
      if (count === 0) return;
      each(buf, first, count);
      first += count;
      pos += count * recordBytes;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Random access to signatures by global index (positional reads of the parts' sigs.bin). */
class Signatures {
  private readonly fds: number[];

  constructor(private readonly dirs: readonly string[], private readonly offsets: readonly number[], private readonly P: number) {
    this.fds = dirs.map((d) => fs.openSync(path.join(d, 'sigs.bin'), 'r'));
  }

  read(g: number, out: Uint32Array): Uint32Array {
    let p = this.offsets.length - 2;
    while (this.offsets[p]! > g) p--;
    fs.readSync(this.fds[p]!, out, 0, out.byteLength, (g - this.offsets[p]!) * this.P * 4);
    return out;
  }

  close(): void {
    for (const fd of this.fds) fs.closeSync(fd);
  }
}

/**
 * Dedup of the parts (their dedup folders, in order). `scratch` holds the spilled runs (removed
 * as they are read); `budgetBytes` bounds the sort buffers.
 */
export function dedupParts(dirs: readonly string[], c: ResolvedDedup, scratch: string, budgetBytes: number): PartsDedup {
  const counts = dirs.map((d) => readPartMeta(d, c).n);
  const offsets = [0];
  for (const n of counts) offsets.push(offsets[offsets.length - 1]! + n);
  const n = offsets[offsets.length - 1]!;
  const parent = new Int32Array(n);
  for (let i = 0; i < n; i++) parent[i] = i;
  const exact = newBits(n);
  let spilledRuns = 0;

  if (c.exact) {
    const keys = new RunSorter(scratch, 'exact', 3, budgetBytes);
    const rec = new Uint32Array(6);
    dirs.forEach((d, p) =>
      streamRecords(path.join(d, 'keys.bin'), 16, (buf, first, count) => {
        for (let i = 0; i < count; i++) {
          for (let w = 0; w < 4; w++) rec[w] = buf.readUInt32BE(16 * i + 4 * w);
          rec[4] = 0;
          rec[5] = offsets[p]! + first + i;
          keys.add(rec);
        }
      }),
    );
    let firstOfKey = -1;
    const prev = new Uint32Array(4);
    keys.forEach((r, at) => {
      // layout per word: [lo, hi]; the key is words 0 and 1
      const same = firstOfKey >= 0 && r[at + 1] === prev[0] && r[at] === prev[1] && r[at + 3] === prev[2] && r[at + 2] === prev[3];
      const g = r[at + 4]!;
      if (!same) {
        firstOfKey = g;
        prev[0] = r[at + 1]!;
        prev[1] = r[at]!;
        prev[2] = r[at + 3]!;
        prev[3] = r[at + 2]!;
        return;
      }
      setBit(exact, g);
      union(parent, firstOfKey, g);
    });
    spilledRuns += keys.spilled;
  }

  if (c.near && n > 1) {
    const P = c.permutations;
    const bands = Array.from({ length: c.bands }, (_, b) => new RunSorter(scratch, `band${b}`, 1, budgetBytes / c.bands));
    dirs.forEach((d, p) =>
      streamRecords(path.join(d, 'sigs.bin'), 4 * P, (buf, first, count) => {
        const sig = new Uint32Array(buf.buffer, buf.byteOffset, count * P);
        for (let i = 0; i < count; i++) {
          const g = offsets[p]! + first + i;
          if (c.exact && hasBit(exact, g)) continue;
          for (let b = 0; b < c.bands; b++) bands[b]!.add1(bandBucket(sig, i * P + b * c.rows, c.rows), g);
        }
      }),
    );
    const sigs = new Signatures(dirs, offsets, P);
    const a = new Uint32Array(P);
    const b = new Uint32Array(P);
    try {
      for (const band of bands) {
        let bucket = -1;
        let first = -1;
        let firstRead = false;
        band.forEach((r, at) => {
          const h = r[at + 1]!;
          const g = r[at]!;
          if (h !== bucket || first < 0) {
            bucket = h;
            first = g;
            firstRead = false;
            return;
          }
          if (find(parent, first) === find(parent, g)) return;
          if (!firstRead) (sigs.read(first, a), (firstRead = true));
          sigs.read(g, b);
          let eq = 0;
          for (let q = 0; q < P; q++) if (a[q] === b[q]) eq++;
          if (eq / P >= c.threshold) union(parent, first, g);
        });
        spilledRuns += band.spilled;
      }
    } finally {
      sigs.close();
    }
  }

  // roots are the lowest index of each component and parent[x] <= x, so one ascending pass
  // leaves every entry pointing at its root
  let exactDuplicates = 0;
  let nearDuplicates = 0;
  for (let i = 0; i < n; i++) {
    parent[i] = parent[parent[i]!]!;
    if (parent[i] !== i) {
      if (hasBit(exact, i)) exactDuplicates++;
      else nearDuplicates++;
    }
  }
  return { counts, rep: parent, exact, exactDuplicates, nearDuplicates, spilledRuns };
}

/** The in-memory result's shape (kind per document), for comparing with findDuplicates. */
export function kindsOf(d: PartsDedup): Pick<DedupResult, 'rep' | 'kind'> {
  const kind = new Uint8Array(d.rep.length);
  for (let i = 0; i < d.rep.length; i++) if (d.rep[i] !== i) kind[i] = hasBit(d.exact, i) ? 1 : 2;
  return { rep: d.rep, kind };
}
