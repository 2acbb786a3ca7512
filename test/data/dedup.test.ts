// MinHash dedup: the native signature against a BigInt reference of the same hash, LSH
// precision/recall on generated near-duplicate pairs, and the per-part state round trip.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PartWriter, exactKey, findDuplicates, loadPart, lshParams, normalizeForDedup, resolveDedup, savePart, signatures } from '../../src/data/dedup.js';
import { minhashSignatures } from '../../src/text/minhash.js';
import { rng } from './rng.js';

const M64 = (1n << 64n) - 1n;
function mix64(x: bigint): bigint {
  x = (x + 0x9e3779b97f4a7c15n) & M64;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & M64;
  return x ^ (x >> 31n);
}

// The kernel's definition, written independently: FNV-1a 64 per token, splitmix chain per shingle,
// multiply-shift permutations with parameters from a splitmix64 stream.
function referenceSignature(text: string, P: number, k: number, seed: number, unit: 'word' | 'char'): Uint32Array {
  const bytes = new TextEncoder().encode(text);
  const toks: Uint8Array[] = [];
  if (unit === 'word') {
    let i = 0;
    while (i < bytes.length) {
      while (i < bytes.length && ' \n\t\r\f\v'.includes(String.fromCharCode(bytes[i]!))) i++;
      const s = i;
      while (i < bytes.length && !' \n\t\r\f\v'.includes(String.fromCharCode(bytes[i]!))) i++;
      if (i > s) toks.push(bytes.subarray(s, i));
    }
  } else {
    for (const ch of text) if (!/\s/.test(ch)) toks.push(new TextEncoder().encode(ch));
  }
  const th = toks.map((t) => {
    let h = 0xcbf29ce484222325n;
    for (const b of t) h = ((h ^ BigInt(b)) * 0x100000001b3n) & M64;
    return h;
  });
  const a: bigint[] = [];
  const b: bigint[] = [];
  let s = BigInt(seed);
  for (let p = 0; p < P; p++) {
    s = (s + 0x9e3779b97f4a7c15n) & M64;
    a.push(mix64(s) | 1n);
    s = (s + 0x9e3779b97f4a7c15n) & M64;
    b.push(mix64(s));
  }
  const sig = new Uint32Array(P).fill(0xffffffff);
  const shingles: bigint[] = [];
  const chain = (ts: bigint[]): bigint => ts.reduce((h, t) => mix64(h ^ t), 0x243f6a8885a308d3n);
  if (th.length > 0 && th.length < k) shingles.push(chain(th));
  for (let i = 0; i + k <= th.length; i++) shingles.push(chain(th.slice(i, i + k)));
  for (const h of shingles)
    for (let p = 0; p < P; p++) {
      const v = Number((((a[p]! * h) & M64) + b[p]!) & M64) >>> 0;
      const v32 = Number(((((a[p]! * h) & M64) + b[p]!) & M64) >> 32n);
      void v;
      if (v32 < sig[p]!) sig[p] = v32;
    }
  return sig;
}

describe('minhash kernel', () => {
  it('equals the BigInt reference, words and characters, short and empty documents', () => {
    const texts = ['the quick brown fox jumps over the lazy dog again and again', 'two words', '', '   ', '一种 基于自然语言处理的银行客服会话问答 处理方法', 'é ü ß ok'];
    for (const unit of ['word', 'char'] as const) {
      const sig = minhashSignatures(texts, { permutations: 16, shingle: 3, unit, seed: 7 });
      texts.forEach((t, i) => {
        expect(Array.from(sig.subarray(i * 16, i * 16 + 16)), `${unit} ${JSON.stringify(t)}`).toEqual(Array.from(referenceSignature(t, 16, 3, 7, unit)));
      });
    }
  });

  it('rejects bad arguments with the op name', () => {
    expect(() => minhashSignatures(['x'], { permutations: 0, shingle: 3, unit: 'word', seed: 1 })).toThrow(/permutations/);
    expect(() => minhashSignatures(['x'], { permutations: 8, shingle: 40, unit: 'word', seed: 1 })).toThrow(/shingle/);
  });
});

function shingleSet(text: string, k: number): Set<string> {
  const w = normalizeForDedup(text).split(' ').filter((x) => x);
  const out = new Set<string>();
  if (w.length < k) out.add(w.join(' '));
  for (let i = 0; i + k <= w.length; i++) out.add(w.slice(i, i + k).join(' '));
  return out;
}

function jaccard(a: Set<string>, b: Set<string>): number {
  let inter = 0;
  for (const x of a) if (b.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

describe('normalizeForDedup', () => {
  it('equals its regex definition on mixed scripts, symbols, blanks and surrogates', () => {
    const CJK = /([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])/g;
    const byRegex = (t: string): string => t.normalize('NFKC').toLowerCase().replace(/[\p{P}\p{S}]+/gu, ' ').replace(CJK, ' $1 ').replace(/\s+/g, ' ').trim();
    const alphabet = [...'aB9 ,.\t\n-', '・', '゠', '゛', '中', '文', 'ア', '\u00a0', '\u3000', '！', '#', '€', 'É', 'ﬁ', '①', '가', '😀', '𠀀', '\ud800', '\udc00', '𝐀', '\u2028'];
    const r = rng(5);
    for (let i = 0; i < 5000; i++) {
      let t = '';
      for (let k = 0; k < 12; k++) t += alphabet[Math.floor(r() * alphabet.length)];
      expect(normalizeForDedup(t), JSON.stringify(t)).toBe(byRegex(t));
    }
    // every ASCII unit, alone and beside non-ASCII separators (the fast path's class of separators)
    for (let c = 0; c < 128; c++) {
      const u = String.fromCharCode(c);
      for (const t of [`a${u}b`, `${u}x${u}${u}y${u}`, `a ${u}  b`, `—${u}z　${u}`, `${u}€ ${u}`]) expect(normalizeForDedup(t), JSON.stringify(t)).toBe(byRegex(t));
    }
    expect(normalizeForDedup('A claim — comprising: 一种装置!')).toBe('a claim comprising 一 种 装 置');
  });
});

describe('near-duplicate detection', () => {
  it('precision and recall >= 0.95 at the threshold on generated pairs', () => {
    const r = rng(42);
    const vocab = Array.from({ length: 20000 }, (_, i) => `w${i.toString(36)}`);
    const word = (): string => vocab[Math.floor(r() ** 2 * vocab.length)]!;
    const docs: string[] = [];
    const pairs: [number, number][] = [];
    for (let p = 0; p < 400; p++) {
      const sentences = Array.from({ length: 8 + Math.floor(r() * 12) }, () => Array.from({ length: 8 + Math.floor(r() * 14) }, word).join(' ') + '.');
      const base = sentences.join(' ');
      let variant = sentences.slice();
      if (r() < 0.5) {
        // reorder: swap two sentences
        const i = Math.floor(r() * variant.length);
        const j = Math.floor(r() * variant.length);
        [variant[i], variant[j]] = [variant[j]!, variant[i]!];
      }
      // edits at a rate that spreads the pairs' similarity over [0.3, 1]
      const rate = r() * 0.12;
      variant = variant.map((s) =>
        s
          .split(' ')
          .flatMap((w) => (r() < rate ? (r() < 0.4 ? [] : r() < 0.5 ? [word()] : [w, word()]) : [w]))
          .join(' '),
      );
      pairs.push([docs.length, docs.length + 1]);
      docs.push(base, variant.join(' '));
    }
    const c = resolveDedup({ threshold: 0.7, permutations: 256, shingle: 5 });
    const norm = docs.map(normalizeForDedup);
    const res = findDuplicates(docs.length, norm.map(exactKey), signatures(norm, c), c);
    let tp = 0;
    let fp = 0;
    let fn = 0;
    let positives = 0;
    let negatives = 0;
    let excluded = 0;
    for (const [a, b] of pairs) {
      const j = jaccard(shingleSet(docs[a]!, 5), shingleSet(docs[b]!, 5));
      // the estimator's own resolution (sd ~0.03 at 256 permutations): pairs this close are a coin toss
      if (Math.abs(j - c.threshold) < 0.05) {
        excluded++;
        continue;
      }
      const truth = j >= c.threshold;
      const pred = res.rep[b] === res.rep[a];
      if (truth) positives++;
      else negatives++;
      if (pred && truth) tp++;
      else if (pred && !truth) fp++;
      else if (!pred && truth) fn++;
    }
    // no pair may merge with another pair's documents
    for (let i = 0; i < docs.length; i++) expect(Math.floor(res.rep[i]! / 2)).toBe(Math.floor(i / 2));
    expect(positives).toBeGreaterThan(80);
    expect(negatives).toBeGreaterThan(80);
    expect(excluded).toBeLessThan(pairs.length * 0.2);
    const precision = tp / (tp + fp);
    const recall = tp / (tp + fn);
    console.log(`minhash dedup: precision ${precision.toFixed(3)} recall ${recall.toFixed(3)} (${positives} positive, ${negatives} negative, ${excluded} within 0.05 of the threshold)`);
    expect(precision).toBeGreaterThanOrEqual(0.95);
    expect(recall).toBeGreaterThanOrEqual(0.95);
  });

  it('exact duplicates after normalisation, clusters with the first occurrence kept', () => {
    const c = resolveDedup({ threshold: 0.8 });
    const docs = ['A claim, comprising: a widget.', 'a claim comprising a widget', 'Something else entirely different here.', 'A CLAIM — comprising a widget!'];
    const norm = docs.map(normalizeForDedup);
    const res = findDuplicates(docs.length, norm.map(exactKey), signatures(norm, c), c);
    expect(Array.from(res.rep)).toEqual([0, 0, 2, 0]);
    expect(Array.from(res.kind)).toEqual([0, 1, 0, 1]);
    expect(res.clusters).toEqual([[0, 1, 3]]);
  });

  it('LSH parameters put the S-curve below the threshold', () => {
    for (const t of [0.5, 0.7, 0.8, 0.9]) {
      const { bands, rows } = lshParams(t, 128);
      expect(bands * rows).toBeLessThanOrEqual(128);
      expect(1 - (1 - t ** rows) ** bands).toBeGreaterThan(0.9);
    }
  });

  it('PartWriter finishes whichever of its two files drains first (it once waited for a drain already past)', () => {
    // in a child process, where the old code hung every time (here the test runner's own I/O hid it)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-dedup-w-'));
    const script = path.join(dir, 'writer.mts');
    fs.writeFileSync(script, `
import { PartWriter, resolveDedup } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../src/data/dedup.ts'))};
const watchdog = setTimeout(() => { console.log('hung'); process.exit(2); }, 20000);
for (const [P, n] of [[128, 1000], [2, 20000]]) {
  const w = new PartWriter(${JSON.stringify(dir)} + '/p' + P, resolveDedup({ permutations: P }));
  const keys = Array.from({ length: n }, (_, i) => i.toString(16).padStart(32, '0'));
  for (let b = 0; b < 100; b++) await w.add(keys, new Uint32Array(n * P));
  await w.close();
}
clearTimeout(watchdog);
console.log('done');
`);
    const out = execFileSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8' });
    expect(out.trim()).toBe('done');
    expect(fs.statSync(path.join(dir, 'p2', 'keys.bin')).size).toBe(100 * 20000 * 16);
    fs.rmSync(dir, { recursive: true });
  });

  it('per-part state round-trips and merging parts equals one pass', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-dedup-'));
    const c = resolveDedup({ threshold: 0.8, permutations: 64 });
    const all = ['alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega', 'one two three four five six seven', 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega again', 'one two three four five six seven'].map(normalizeForDedup);
    const parts = [all.slice(0, 2), all.slice(2)];
    for (let p = 0; p < 2; p++) await savePart(path.join(dir, `p${p}`), parts[p]!.map(exactKey), signatures(parts[p]!, c), c);
    const loaded = [0, 1].map((p) => loadPart(path.join(dir, `p${p}`), c));
    const keys = loaded.flatMap((l) => l.keys);
    const sig = new Uint32Array(loaded.reduce((n, l) => n + l.sig.length, 0));
    sig.set(loaded[0]!.sig, 0);
    sig.set(loaded[1]!.sig, loaded[0]!.sig.length);
    const merged = findDuplicates(4, keys, sig, c);
    const direct = findDuplicates(4, all.map(exactKey), signatures(all, c), c);
    expect(Array.from(merged.rep)).toEqual(Array.from(direct.rep));
    expect(Array.from(merged.rep)).toEqual([0, 1, 0, 1]);
    expect(() => loadPart(path.join(dir, 'p0'), resolveDedup({ permutations: 32 }))).toThrow(/permutations 64/);
    fs.writeFileSync(path.join(dir, 'p0', 'sigs.bin'), fs.readFileSync(path.join(dir, 'p0', 'sigs.bin')).subarray(0, 100));
    expect(() => loadPart(path.join(dir, 'p0'), c)).toThrow(/truncated/);
    expect(() => loadPart(path.join(dir, 'nope'), c)).toThrow(/scan first/);
    fs.rmSync(dir, { recursive: true });
  });
});
