// npm run bench -- tokenizer [--mb N] [--sets en,zh,qa]: LLaMA-2 encode throughput (MB/s of
// UTF-8 in) beside sentencepiece (Python, one thread, timed inside Python) and llama-tokenizer-js
// on the same lines of the shared data, with the ids of all three checked equal.
// Batch encoding with TokenizerPool on 1 and 2 threads, both backends (native: the addon's thread
// pool; workers: worker_threads running the JS encoder), fresh pools (empty caches, as for new
// text; compare with "cold"), gives the thread scaling, its ids checked against encode(). The load
// average is printed: on a shared machine, 2 threads cannot scale when the cores are busy.
// "cold" is the first pass of a fresh tokenizer (empty segment cache), "warm" the best of three
// further passes; sentencepiece has no cache: best of three.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import llamaTokenizerJs from 'llama-tokenizer-js';
import { packageRoot } from '../../src/package.js';
import { SentencePieceTokenizer, TokenizerPool, type TokenizerPoolBackend } from '../../src/tokenizer/index.js';
import { dataDir, llama2ModelPath, textDocuments, type Doc } from '../../test/tokenizer/corpus.js';
import { findPython } from './_peers.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : dflt;
};
const mbPerSet = Number(opt('mb', '2'));
const setNames = opt('sets', 'en,zh,qa').split(',');

const SETS: Record<string, { what: string; match: (p: string) => boolean }> = {
  en: { what: 'English patents (USPTO full text, claims, abstracts)', match: (p) => /^(uspto-|us-claims|us-abstract|patentsview)/.test(p) },
  zh: { what: 'Chinese patents and IP laws', match: (p) => /^(cn-ip-laws|cn-patents|cn-patent-agent)/.test(p) },
  qa: { what: 'Q&A / instruction data (en + zh)', match: (p) => /^(general-sft|preference-demo)/.test(p) },
};

const data = dataDir();
const modelPath = llama2ModelPath();
if (!data || !modelPath) {
  console.log('tokenizer bench skipped: no ../shared/data with tokenizers/llama2/tokenizer.model (set PATENTGPT_DATA)');
  process.exit(0);
}
const docs = textDocuments(data);

/** Non-empty lines of the set's documents, round-robin over documents, up to `mb` MB. */
function lines(match: (p: string) => boolean, mb: number): string[] {
  const sources = docs.filter((d: Doc) => match(d.path)).map((d) => d.text.split('\n').filter((l) => l.length > 0));
  const out: string[] = [];
  let bytes = 0;
  const budget = mb * 1e6;
  for (let i = 0; bytes < budget; i++) {
    let any = false;
    for (const s of sources) {
      if (i < s.length && bytes < budget) {
        out.push(s[i]!);
        bytes += Buffer.byteLength(s[i]!);
        any = true;
      }
    }
    if (!any) break;
  }
  return out;
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const py = findPython(['sentencepiece']);
const script = join(packageRoot(), 'scripts', 'tokenizer-reference.py');
interface Row {
  set: string;
  mb: number;
  lines: number;
  tokens: number;
  oursCold: number;
  oursWarm: number;
  sentencepiece: number | null;
  llamaJs: number;
  idsEqualSentencepiece: boolean | null;
  idsEqualLlamaJs: boolean;
  workers1: number;
  workers2: number;
  native1: number;
  native2: number;
  /** CPU seconds (all threads) of the native pass with 2 threads over that with 1: 1.0 = no extra work. */
  nativeCpu2over1: number;
  workersCpu2over1: number;
  idsEqualPool: boolean;
}

/**
 * MB/s of a fresh TokenizerPool of `threads` threads on texts it has not seen (empty caches, as
 * for new data; workers started before timing), best of 3 pools, with the process CPU seconds of
 * that pass (all threads); its ids checked.
 */
async function poolSpeed(tok: SentencePieceTokenizer, texts: string[], threads: number, backend: TokenizerPoolBackend, expected: Int32Array[]): Promise<{ mbs: number; cpu: number; same: boolean }> {
  const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
  let best = Infinity;
  let cpu = Infinity;
  let ok = true;
  for (let r = 0; r < 3; r++) {
    await using pool = new TokenizerPool(tok, { threads, backend });
    await pool.encodeBatch(['warm-up: start the workers']);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const ids = await pool.encodeBatch(texts);
    const wall = (performance.now() - t0) / 1e3;
    const c = process.cpuUsage(c0);
    if (wall < best) {
      best = wall;
      cpu = (c.user + c.system) / 1e6; // every thread of the process: the work done, whatever the load
    }
    ok &&= ids.every((x, i) => same(x, expected[i]!));
  }
  return { mbs: bytes / 1e6 / best, cpu, same: ok };
}
const rows: Row[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'bench-tok-'));
try {
  for (const name of setNames) {
    const set = SETS[name];
    if (!set) throw new Error(`unknown set ${name}; sets: ${Object.keys(SETS).join(', ')}`);
    const texts = lines(set.match, mbPerSet);
    const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
    const mbs = (s: number): number => bytes / 1e6 / s;

    const tok = SentencePieceTokenizer.load(modelPath);
    let t0 = performance.now();
    const ours = texts.map((t) => tok.encode(t));
    const cold = (performance.now() - t0) / 1e3;
    let warm = Infinity;
    for (let r = 0; r < 3; r++) {
      t0 = performance.now();
      for (const t of texts) tok.encode(t);
      warm = Math.min(warm, (performance.now() - t0) / 1e3);
    }
    const tokens = ours.reduce((a, x) => a + x.length, 0);

    let spm: number | null = null;
    let eqSpm: boolean | null = null;
    if (py.python) {
      writeFileSync(join(tmp, 'texts.json'), JSON.stringify(texts));
      const out = execFileSync(py.python, [script, 'bench', modelPath, join(tmp, 'texts.json'), join(tmp, 'ids.json')], {
        encoding: 'utf8',
        env: { ...process.env, OMP_NUM_THREADS: '1' },
      });
      spm = (JSON.parse(out.trim().split('\n').pop()!) as { seconds: number }).seconds;
      const ids = JSON.parse(readFileSync(join(tmp, 'ids.json'), 'utf8')) as number[][];
      eqSpm = ids.length === ours.length && ids.every((x, i) => same(x, ours[i]!));
    }

    let js = Infinity;
    let eqJs = true;
    for (let r = 0; r < 2; r++) {
      t0 = performance.now();
      const theirs = texts.map((t) => llamaTokenizerJs.encode(t, false, true));
      js = Math.min(js, (performance.now() - t0) / 1e3);
      if (r === 0) eqJs = theirs.every((x, i) => same(x, ours[i]!));
    }
    const w1 = await poolSpeed(tok, texts, 1, 'workers', ours);
    const w2 = await poolSpeed(tok, texts, 2, 'workers', ours);
    const n1 = await poolSpeed(tok, texts, 1, 'native', ours);
    const n2 = await poolSpeed(tok, texts, 2, 'native', ours);
    rows.push({
      workers1: w1.mbs,
      workers2: w2.mbs,
      native1: n1.mbs,
      native2: n2.mbs,
      nativeCpu2over1: n2.cpu / n1.cpu,
      workersCpu2over1: w2.cpu / w1.cpu,
      idsEqualPool: w1.same && w2.same && n1.same && n2.same,
      set: name,
      mb: bytes / 1e6,
      lines: texts.length,
      tokens,
      oursCold: mbs(cold),
      oursWarm: mbs(warm),
      sentencepiece: spm === null ? null : mbs(spm),
      llamaJs: mbs(js),
      idsEqualSentencepiece: eqSpm,
      idsEqualLlamaJs: eqJs,
    });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const f = (x: number | null, d = 2): string => (x === null ? 'n/a' : x.toFixed(d));
console.log(`LLaMA-2 encode, MB/s of UTF-8 input, one thread each${py.python ? '' : ` (sentencepiece: ${py.why})`}`);
console.log('| set | MB | lines | tokens | patentgpt cold | patentgpt warm | sentencepiece | llama-tokenizer-js | cold/spm | warm/spm | cold/llama-js | ids = spm | ids = llama-js |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.set} | ${f(r.mb)} | ${r.lines} | ${r.tokens} | ${f(r.oursCold)} | ${f(r.oursWarm)} | ${f(r.sentencepiece)} | ${f(r.llamaJs)} | ` +
      `${r.sentencepiece ? f(r.oursCold / r.sentencepiece) : 'n/a'} | ${r.sentencepiece ? f(r.oursWarm / r.sentencepiece) : 'n/a'} | ` +
      `${f(r.oursCold / r.llamaJs)} | ${r.idsEqualSentencepiece ?? 'n/a'} | ${r.idsEqualLlamaJs} |`,
  );
}
for (const name of setNames) console.log(`  ${name}: ${SETS[name]!.what}`);
const load = loadavg().map((x) => x.toFixed(1)).join(' ');
console.log(`\nBatch encoding (TokenizerPool, fresh pools: empty caches), MB/s; load average ${load} on ${availableParallelism()} cores`);
console.log('CPU 2/1: CPU seconds of all threads with 2 threads over 1 (1.00: the split adds no work, so 2 free cores would halve the time)');
console.log('| set | workers 1 | workers 2 | workers 2/1 | workers CPU 2/1 | native 1 | native 2 | native 2/1 | native CPU 2/1 | native 1 / spm | ids = encode() |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
for (const r of rows) {
  console.log(
    `| ${r.set} | ${f(r.workers1)} | ${f(r.workers2)} | ${f(r.workers2 / r.workers1)} | ${f(r.workersCpu2over1)} | ${f(r.native1)} | ${f(r.native2)} | ` +
      `${f(r.native2 / r.native1)} | ${f(r.nativeCpu2over1)} | ${r.sentencepiece ? f(r.native1 / r.sentencepiece) : 'n/a'} | ${r.idsEqualPool} |`,
  );
}
console.log(JSON.stringify({ bench: 'tokenizer', unit: 'MB/s', loadavg: loadavg(), rows }));
if (rows.some((r) => r.idsEqualSentencepiece === false || !r.idsEqualLlamaJs || !r.idsEqualPool)) {
  console.error('ids differ from a peer');
  process.exitCode = 1;
}
