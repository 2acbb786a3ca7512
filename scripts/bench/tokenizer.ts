// npm run bench -- tokenizer [--mb N] [--sets en,zh,qa]: LLaMA-2 encode throughput (MB/s of
// UTF-8 in) beside sentencepiece (Python, one thread, timed inside Python) and llama-tokenizer-js
// on the same lines of the shared data, with the ids of all three checked equal.
// Batch encoding with TokenizerPool on 1 and 2 worker threads (fresh pools: empty caches, as for
// new text; compare with "cold") gives the thread scaling, its ids checked against encode().
// "cold" is the first pass of a fresh tokenizer (empty segment cache), "warm" the best of three
// further passes; sentencepiece has no cache: best of three.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import llamaTokenizerJs from 'llama-tokenizer-js';
import { packageRoot } from '../../src/package.js';
import { SentencePieceTokenizer, TokenizerPool } from '../../src/tokenizer/index.js';
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
  pool1: number;
  pool2: number;
  idsEqualPool: boolean;
}

/**
 * MB/s of a fresh TokenizerPool of `threads` workers on texts it has not seen (empty caches, as
 * for new data; workers started before timing), best of 2 pools; its ids checked.
 */
async function poolSpeed(tok: SentencePieceTokenizer, texts: string[], threads: number, expected: Int32Array[]): Promise<{ mbs: number; same: boolean }> {
  const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
  let best = Infinity;
  let ok = true;
  for (let r = 0; r < 2; r++) {
    await using pool = new TokenizerPool(tok, { threads });
    await pool.encodeBatch(['warm-up: start the workers']);
    const t0 = performance.now();
    const ids = await pool.encodeBatch(texts);
    best = Math.min(best, (performance.now() - t0) / 1e3);
    ok &&= ids.every((x, i) => same(x, expected[i]!));
  }
  return { mbs: bytes / 1e6 / best, same: ok };
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
    const p1 = await poolSpeed(tok, texts, 1, ours);
    const p2 = await poolSpeed(tok, texts, 2, ours);
    rows.push({
      pool1: p1.mbs,
      pool2: p2.mbs,
      idsEqualPool: p1.same && p2.same,
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
console.log('\nBatch encoding (TokenizerPool, fresh pools: empty caches), MB/s');
console.log('| set | 1 thread | 2 threads | 2 / 1 | ids = encode() |');
console.log('|---|---:|---:|---:|---|');
for (const r of rows) console.log(`| ${r.set} | ${f(r.pool1)} | ${f(r.pool2)} | ${f(r.pool2 / r.pool1)} | ${r.idsEqualPool} |`);
console.log(JSON.stringify({ bench: 'tokenizer', unit: 'MB/s', rows }));
if (rows.some((r) => r.idsEqualSentencepiece === false || !r.idsEqualLlamaJs || !r.idsEqualPool)) {
  console.error('ids differ from a peer');
  process.exitCode = 1;
}
