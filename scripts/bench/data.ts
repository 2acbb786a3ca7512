// npm run bench -- data: MB/s of raw USPTO input through read, filter, dedup signatures and
// tokenize (the scan phase of prep), and MinHash signatures per second per core, beside
// datasketch (Python) on the same shingle count and permutations when it is installed.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalizeForDedup, resolveDedup, signatures } from '../../src/data/dedup.js';
import { applyFilters, buildFilters } from '../../src/data/filters.js';
import { listFiles, readDocuments } from '../../src/data/readers/index.js';
import { addon } from '../../src/tensor/addon.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';

const data = process.env.PATENTGPT_DATA ?? path.resolve(import.meta.dirname, '../../../shared/data');
const dirs = ['uspto-fulltext-rubyxml', 'uspto-ipg-fixtures', 'uspto-ppd-samples'].map((d) => path.join(data, d));
if (!fs.existsSync(dirs[0]!)) {
  console.log(`data bench: ${data} is absent (set PATENTGPT_DATA); skipped`);
  process.exit(0);
}
addon().setNumThreads(2);
const files = (await Promise.all(dirs.map(listFiles))).flat().filter((f) => !/cpc|\.ZIP$/.test(f));
const filters = buildFilters({ minWords: 50, maxDigitRatio: 0.35, maxDupLineFraction: 0.3, maxTopNgramCharFraction: { 2: 0.2 }, maxDupNgramCharFraction: { 5: 0.4 }, languages: ['en', 'zh'] });
const dd = resolveDedup({ permutations: 128, shingle: 5 });
const tok = SentencePieceTokenizer.llama2();

const stage = { read: 0, filter: 0, dedup: 0, tokenize: 0 };
let bytes = 0;
let docs = 0;
let tokens = 0;
const t0 = performance.now();
let batch: string[] = [];
for (const f of files) {
  bytes += fs.statSync(f).size;
  let t = performance.now();
  for await (const it of readDocuments(f)) {
    let now = performance.now();
    stage.read += now - t;
    t = now;
    if (!it.ok) continue;
    docs++;
    const r = applyFilters(filters, it.doc);
    now = performance.now();
    stage.filter += now - t;
    t = now;
    if (r) continue;
    batch.push(normalizeForDedup(it.doc.text));
    if (batch.length >= 64) {
      signatures(batch, dd);
      batch = [];
    }
    now = performance.now();
    stage.dedup += now - t;
    t = now;
    tokens += tok.encode(it.doc.text).length;
    now = performance.now();
    stage.tokenize += now - t;
    t = now;
  }
}
if (batch.length) signatures(batch, dd);
const total = (performance.now() - t0) / 1000;
const mbps = bytes / 1e6 / total;

// MinHash alone: signatures per second on 1 thread, over documents of the corpus's mean size
const sample: string[] = [];
for await (const it of readDocuments(path.join(data, 'uspto-ipg-fixtures/ipg120327.196.xml'))) if (it.ok) sample.push(normalizeForDedup(it.doc.text));
addon().setNumThreads(1);
const reps = 20;
let t1 = performance.now();
for (let r = 0; r < reps; r++) signatures(sample, dd);
const sigPerSec = (sample.length * reps) / ((performance.now() - t1) / 1000);
const shingles = sample.reduce((s, x) => s + Math.max(1, x.split(' ').length - dd.shingle + 1), 0) / sample.length;

let peer: number | null = null;
const py = '/work/main/.venv-ref/bin/python';
if (fs.existsSync(py)) {
  const code = `
import sys, json, time
try:
    from datasketch import MinHash
except ImportError:
    print('null'); sys.exit(0)
docs = json.load(sys.stdin)
sh = [[' '.join(w[i:i+5]).encode() for i in range(max(1, len(w)-4))] for w in (d.split(' ') for d in docs)]
t = time.perf_counter(); n = 0
for _ in range(3):
    for s in sh:
        m = MinHash(num_perm=128); m.update_batch(s); n += 1
print(n / (time.perf_counter() - t))`;
  try {
    const out = execFileSync(py, ['-c', code], { input: JSON.stringify(sample), encoding: 'utf8' }).trim();
    peer = out === 'null' ? null : Number(out);
  } catch {
    peer = null;
  }
}

const row = (k: string, v: string): string => `${k.padEnd(34)} ${v}`;
console.log(row('input (USPTO full text)', `${(bytes / 1e6).toFixed(1)} MB, ${files.length} files, ${docs} documents, ${tokens} tokens`));
for (const [k, v] of Object.entries(stage)) console.log(row(`  ${k}`, `${(v / 1000).toFixed(2)} s  (${(bytes / 1e6 / (v / 1000)).toFixed(1)} MB/s alone)`));
console.log(row('end to end (2 threads)', `${mbps.toFixed(1)} MB/s  (target >= 20: ${mbps >= 20 ? 'met' : 'NOT met'})`));
console.log(row('MinHash signatures / s / core', `${sigPerSec.toFixed(0)}  (128 perm, 5-word shingles, ~${shingles.toFixed(0)} shingles/doc)`));
console.log(row('datasketch (Python) / s / core', peer === null ? 'not installed' : `${peer.toFixed(0)}  (ratio ${(sigPerSec / peer).toFixed(1)}x)`));
console.log(JSON.stringify({ bench: 'data', mbPerSec: mbps, bytes, docs, tokens, stageSeconds: Object.fromEntries(Object.entries(stage).map(([k, v]) => [k, v / 1000])), minhashSigPerSecPerCore: sigPerSec, datasketchSigPerSec: peer }));
