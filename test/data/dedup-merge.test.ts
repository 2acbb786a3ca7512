// The bounded-memory dedup (external sorts, dedup-merge.ts) against the in-memory findDuplicates
// on a generated corpus of near-duplicate clusters and exact copies split into parts: the same
// representative and kind for every document, whether the sorts spill to disk or not; and the
// prep merge's clusters.tsv and duplicate bits the same at any memory budget.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exactKey, findDuplicates, loadPart, normalizeForDedup, resolveDedup, savePart, signatures, type DedupConfig } from '../../src/data/dedup.js';
import { dedupParts, kindsOf } from '../../src/data/dedup-merge.js';
import { prep, validatePrepConfig } from '../../src/data/prep.js';
import { RunSorter } from '../../src/data/runs.js';
import { rng } from './rng.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-dedup-merge-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Bases with 0-4 variants each (word edits at rates around the threshold, sentence swaps) and
 *  exact copies (case and punctuation changed), shuffled so that a cluster's first member is
 *  not always its base. */
function corpus(bases: number, seed: number): string[] {
  const r = rng(seed);
  const vocab = Array.from({ length: 5000 }, (_, i) => `w${i.toString(36)}`);
  const word = (): string => vocab[Math.floor(r() ** 2 * vocab.length)]!;
  const docs: string[] = [];
  for (let b = 0; b < bases; b++) {
    const sentences = Array.from({ length: 4 + Math.floor(r() * 6) }, () => Array.from({ length: 6 + Math.floor(r() * 10) }, word).join(' ') + '.');
    docs.push(sentences.join(' '));
    const variants = Math.floor(r() * 5);
    for (let v = 0; v < variants; v++) {
      if (r() < 0.25) {
        docs.push(sentences.join(' ').toUpperCase().replace(/\./g, '!'));
        continue;
      }
      const s = sentences.slice();
      if (r() < 0.5) {
        const i = Math.floor(r() * s.length);
        const j = Math.floor(r() * s.length);
        [s[i], s[j]] = [s[j]!, s[i]!];
      }
      const rate = r() * 0.1;
      docs.push(s.map((x) => x.split(' ').flatMap((w) => (r() < rate ? (r() < 0.5 ? [] : [word()]) : [w])).join(' ')).join(' '));
    }
  }
  for (let i = docs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [docs[i], docs[j]] = [docs[j]!, docs[i]!];
  }
  return docs;
}

describe('external sort', () => {
  it('sorts records of one and several words, spilled or not', () => {
    const r = rng(3);
    for (const [width, budget] of [[1, 64], [1, 1 << 20], [3, 200], [3, 1 << 20]] as const) {
      const s = new RunSorter(path.join(root, `sort-${width}-${budget}`), 'x', width, budget);
      const recs: number[][] = [];
      for (let i = 0; i < 1000; i++) {
        // few distinct high words, so that ties are broken by the lower words
        const rec = Array.from({ length: 2 * width }, (_, k) => (k % 2 === 0 ? Math.floor(r() * 4) : Math.floor(r() * 2 ** 32)));
        recs.push(rec);
        s.add(rec);
      }
      if (budget < 1000) expect(s.spilled).toBeGreaterThan(0);
      const key = (x: number[]): bigint => x.reduce((k, v) => (k << 32n) | BigInt(v), 0n);
      const want = recs.map(key).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const got: bigint[] = [];
      s.forEach((rec, at) => {
        const halves: number[] = [];
        for (let w = 0; w < width; w++) halves.push(rec[at + 2 * w + 1]!, rec[at + 2 * w]!);
        got.push(key(halves));
      });
      expect(got).toEqual(want);
      const dir = path.join(root, `sort-${width}-${budget}`);
      expect(fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.run')) : [], 'run files removed').toEqual([]);
    }
  });
});

describe('bounded-memory dedup', () => {
  it('equals findDuplicates on near-duplicate clusters across parts, spilled or in memory', async () => {
    const docs = corpus(250, 7).map(normalizeForDedup);
    const configs: DedupConfig[] = [{ threshold: 0.7, permutations: 64, shingle: 3 }, { threshold: 0.5, permutations: 32, shingle: 2, exact: false }, { threshold: 0.9, near: false }];
    for (const [ci, cfg] of configs.entries()) {
      const c = resolveDedup(cfg);
      const cuts = [0, 211, 212, docs.length]; // three parts, one of a single document
      const dirs: string[] = [];
      for (let p = 0; p + 1 < cuts.length; p++) {
        const part = docs.slice(cuts[p], cuts[p + 1]);
        const dir = path.join(root, `c${ci}-p${p}`);
        await savePart(dir, part.map(exactKey), signatures(part, c), c);
        dirs.push(dir);
      }
      const loaded = dirs.map((d) => loadPart(d, c));
      const sig = new Uint32Array(docs.length * c.permutations);
      let at = 0;
      for (const l of loaded) (sig.set(l.sig, at), (at += l.sig.length));
      const want = findDuplicates(docs.length, loaded.flatMap((l) => l.keys), sig, c);
      expect(want.clusters.length).toBeGreaterThan(cfg.near === false ? 10 : 50);
      if (cfg.near !== false) expect(want.nearDuplicates).toBeGreaterThan(50);
      if (cfg.exact !== false) expect(want.exactDuplicates).toBeGreaterThan(10);
      for (const budget of [512, 64 << 20]) {
        const got = dedupParts(dirs, c, path.join(root, `scratch-${ci}-${budget}`), budget);
        if (budget === 512) expect(got.spilledRuns).toBeGreaterThan(10);
        else expect(got.spilledRuns).toBe(0);
        const k = kindsOf(got);
        expect(Array.from(k.rep), `config ${ci} budget ${budget}`).toEqual(Array.from(want.rep));
        expect(Array.from(k.kind), `config ${ci} budget ${budget}`).toEqual(Array.from(want.kind));
        expect([got.exactDuplicates, got.nearDuplicates]).toEqual([want.exactDuplicates, want.nearDuplicates]);
      }
    }
  });

  it('prep merge: clusters.tsv and duplicate bits the same with a tiny budget, and as findDuplicates says', async () => {
    const texts = corpus(120, 11);
    const data = path.join(root, 'data');
    fs.mkdirSync(data);
    // two input files: two parts with --shard i/2
    const half = Math.floor(texts.length / 2);
    fs.writeFileSync(path.join(data, 'a.jsonl'), texts.slice(0, half).map((t, i) => JSON.stringify({ id: `a${i}`, text: t })).join('\n') + '\n');
    fs.writeFileSync(path.join(data, 'b.jsonl'), texts.slice(half).map((t, i) => JSON.stringify({ id: `b${i}`, text: t })).join('\n') + '\n');
    const dedup = { threshold: 0.7, permutations: 64, shingle: 3 };
    const run = async (name: string, budget: number): Promise<string> => {
      const cfg = validatePrepConfig({ output: path.join(root, name), inputs: [{ path: data, category: 'general', filters: false }], dedup, tokenizer: { type: 'byte' }, stages: { s: { weights: { general: 1 } } } }, root);
      for (const part of [0, 1]) await prep(cfg, { part, parts: 2, phase: 'scan', workers: 0 });
      await prep(cfg, { parts: 2, phase: 'merge', mergeBudgetBytes: budget });
      for (const part of [0, 1]) await prep(cfg, { part, parts: 2, phase: 'emit' });
      return path.join(cfg.work!, 'merge');
    };
    const small = await run('small', 256);
    const large = await run('large', 64 << 20);
    for (const f of ['clusters.tsv', 'merge.json', 'drop-0.bin', 'drop-1.bin']) expect(fs.readFileSync(path.join(small, f)), f).toEqual(fs.readFileSync(path.join(large, f)));
    expect(fs.readFileSync(path.join(root, 'small', 's', 'part-1', 'provenance.tsv'), 'utf8')).toEqual(fs.readFileSync(path.join(root, 'large', 's', 'part-1', 'provenance.tsv'), 'utf8'));
    const ids = [...texts.slice(0, half).map((_, i) => `a${i}`), ...texts.slice(half).map((_, i) => `b${i}`)];
    const norm = texts.map(normalizeForDedup);
    const c = resolveDedup(dedup);
    const want = findDuplicates(texts.length, norm.map(exactKey), signatures(norm, c), c);
    const wantTsv = want.clusters.map((cl) => cl.map((g) => ids[g]).join('\t')).join('\n') + '\n';
    expect(want.clusters.length).toBeGreaterThan(20);
    expect(fs.readFileSync(path.join(small, 'clusters.tsv'), 'utf8')).toBe(wantTsv);
    const m = JSON.parse(fs.readFileSync(path.join(small, 'merge.json'), 'utf8'));
    expect([m.exact, m.near, m.clusters]).toEqual([want.exactDuplicates, want.nearDuplicates, want.clusters.length]);
    const biggest = [...want.clusters].sort((a, b) => b.length - a.length || a[0]! - b[0]!)[0]!;
    expect(m.largestClusters[0]).toEqual(biggest.map((g) => ids[g]));
    expect(m.largestClusterSizes[0]).toBe(biggest.length);
    const drop1 = fs.readFileSync(path.join(small, 'drop-1.bin'));
    for (let i = 0; i < texts.length - half; i++) expect((drop1[i >> 3]! >> (i & 7)) & 1, `b${i}`).toBe(want.rep[half + i] !== half + i ? 1 : 0);
  });
});
