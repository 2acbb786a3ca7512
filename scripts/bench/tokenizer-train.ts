// npm run bench -- tokenizer-train [--mb 8] [--vocab 20000] [--threads 2]: BPE training beside
// sentencepiece's spm_train (Python binding, timed inside Python) on the same corpus (IP text of
// ../shared/data, English and Chinese, lines round-robin over documents) with the same options,
// then the two models compared: overlap of the piece sets, same merge order, and identical
// encodings (as piece strings) of held-out lines (every 20th line, never trained on).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SentencePieceTokenizer, trainBpe } from '../../src/tokenizer/index.js';
import { dataDir, textDocuments, type Doc } from '../../test/tokenizer/corpus.js';
import { findPython } from './_peers.js';
import { execFileSync } from 'node:child_process';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : dflt;
};
const mb = Number(opt('mb', '8'));
const vocab = Number(opt('vocab', '20000'));
const threads = Number(opt('threads', '2'));

const data = dataDir();
if (!data) {
  console.log('tokenizer-train bench skipped: no ../shared/data (set PATENTGPT_DATA)');
  process.exit(0);
}
const { python, why } = findPython(['sentencepiece']);
if (!python) {
  console.log(`tokenizer-train bench skipped: ${why}`);
  process.exit(0);
}

const IP = /^(uspto-|us-claims|us-abstract|patentsview|us-code|cn-ip-laws|cn-patents|cn-patent-agent)/;
const docs = textDocuments(data).filter((d: Doc) => IP.test(d.path));
const sources = docs.map((d) => d.text.split('\n').filter((l) => l.length > 0));
const train: string[] = [];
const heldOut: string[] = [];
let bytes = 0;
let k = 0;
for (let i = 0; bytes < mb * 1e6; i++) {
  let any = false;
  for (const s of sources) {
    if (i >= s.length) continue;
    any = true;
    if (k++ % 20 === 0) heldOut.push(s[i]!);
    else if (bytes < mb * 1e6) {
      train.push(s[i]!);
      bytes += Buffer.byteLength(s[i]!) + 1;
    }
  }
  if (!any) break;
}
const dir = mkdtempSync(join(tmpdir(), 'bpe-bench-'));
const corpus = join(dir, 'corpus.txt');
writeFileSync(corpus, train.join('\n') + '\n');

// The spm_train options that are this trainer's defaults.
const spmOptions = {
  model_type: 'bpe',
  vocab_size: vocab,
  character_coverage: 0.9995,
  byte_fallback: true,
  normalization_rule_name: 'identity',
  remove_extra_whitespaces: false,
  add_dummy_prefix: true,
  max_sentencepiece_length: 16,
  max_sentence_length: 4192,
  input_sentence_size: 0,
  shuffle_input_sentence: false,
  unk_id: 0,
  bos_id: 1,
  eos_id: 2,
  pad_id: -1,
  num_threads: threads,
};
const py = `
import json, sys, time, sentencepiece as spm
opts = json.loads(sys.argv[1])
t = time.perf_counter()
spm.SentencePieceTrainer.train(input=sys.argv[2], model_prefix=sys.argv[3], minloglevel=2, **opts)
print(json.dumps({"seconds": time.perf_counter() - t}))
`;
const spmRuns: number[] = [];
for (let r = 0; r < 2; r++) {
  const out = execFileSync(python, ['-c', py, JSON.stringify(spmOptions), corpus, join(dir, 'spm')], { encoding: 'utf8' });
  spmRuns.push((JSON.parse(out.trim().split('\n').pop()!) as { seconds: number }).seconds);
}
const spmSec = Math.min(...spmRuns);

const oursRuns: number[] = [];
let result: Awaited<ReturnType<typeof trainBpe>> | null = null;
for (let r = 0; r < 2; r++) {
  const t = performance.now();
  result = await trainBpe({ files: [corpus] }, { vocabSize: vocab });
  oursRuns.push((performance.now() - t) / 1000);
}
const oursSec = Math.min(...oursRuns);
const ours = result!.tokenizer;
const theirs = SentencePieceTokenizer.load(readFileSync(join(dir, 'spm.model')));

// Piece sets and order.
const pieceList = (t: SentencePieceTokenizer): string[] => Array.from({ length: t.vocabSize }, (_, i) => t.idToPiece(i));
const a = pieceList(ours);
const b = pieceList(theirs);
const bSet = new Set(b);
const common = a.filter((p) => bSet.has(p)).length;
let samePrefix = 0;
while (samePrefix < Math.min(a.length, b.length) && a[samePrefix] === b[samePrefix]) samePrefix++;
const sameId = a.filter((p, i) => b[i] === p).length;
// Held-out encodings, as pieces (ids of a piece differ when the order differs).
let sameLines = 0;
let tokOurs = 0;
let tokTheirs = 0;
for (const line of heldOut) {
  const x = ours.encodeAsPieces(line);
  const y = theirs.encodeAsPieces(line);
  tokOurs += x.length;
  tokTheirs += y.length;
  if (x.length === y.length && x.every((p, i) => p === y[i])) sameLines++;
}
rmSync(dir, { recursive: true, force: true });

const mbIn = bytes / 1e6;
console.log(`BPE training: ${vocab} pieces on ${mbIn.toFixed(1)} MB of IP text (${train.length} lines, en + zh), ${docs.length} documents`);
console.log('| trainer | seconds (best of 2) | MB/s | ratio |');
console.log('|---|---:|---:|---:|');
console.log(`| spm_train (sentencepiece, ${threads} threads) | ${spmSec.toFixed(2)} | ${(mbIn / spmSec).toFixed(2)} | 1.00 |`);
console.log(`| patentgpt trainBpe (read ${result!.stats.readMs.toFixed(0)} ms, merge ${result!.stats.mergeMs.toFixed(0)} ms) | ${oursSec.toFixed(2)} | ${(mbIn / oursSec).toFixed(2)} | ${(spmSec / oursSec).toFixed(2)}x |`);
console.log(`pieces in common: ${common} / ${a.length} (${((100 * common) / a.length).toFixed(2)}%); same id: ${sameId}; identical prefix: ${samePrefix} ids`);
// Where the orders part: the frequency each piece had when this trainer merged it (spm's merge
// order is by frequency too, so a piece spm takes earlier with a lower frequency was missing from
// its active set, the most frequent 5% of candidates refreshed every 100 merges).
const merged0 = a.findIndex((p) => !p.startsWith('<')) ; // first merged piece id
const freqOf = (p: string): number | null => {
  const i = a.indexOf(p);
  return i >= merged0 && i - merged0 < result!.mergeFreqs.length ? result!.mergeFreqs[i - merged0]! : null;
};
const differences: { id: number; ours: string; oursFreq: number | null; spm: string; spmPieceFreqInOurs: number | null }[] = [];
for (let i = samePrefix; i < a.length && differences.length < 12; i++) {
  if (a[i] !== b[i]) differences.push({ id: i, ours: a[i]!, oursFreq: freqOf(a[i]!), spm: b[i]!, spmPieceFreqInOurs: freqOf(b[i]!) });
}
if (samePrefix < a.length) {
  console.log(`first difference at id ${samePrefix}: ours ${JSON.stringify(a[samePrefix])}, spm ${JSON.stringify(b[samePrefix])}`);
  console.log('first differing ids (frequency when this trainer merged the piece):');
  for (const d of differences) console.log(`  id ${d.id}: ours ${JSON.stringify(d.ours)} (${d.oursFreq}), spm ${JSON.stringify(d.spm)} (ours merged it at ${d.spmPieceFreqInOurs})`);
  console.log(`only in ours: ${JSON.stringify(a.filter((p) => !bSet.has(p)).map((p) => [p, freqOf(p)]))}`);
  const aSet = new Set(a);
  console.log(`only in spm: ${JSON.stringify(b.filter((p) => !aSet.has(p)))}`);
}
console.log(`held-out lines encoded identically: ${sameLines} / ${heldOut.length} (${((100 * sameLines) / heldOut.length).toFixed(2)}%); tokens ours ${tokOurs}, spm ${tokTheirs}`);
console.log(
  JSON.stringify({
    bench: 'tokenizer-train',
    mb: mbIn,
    vocab,
    threads,
    spmSeconds: spmSec,
    oursSeconds: oursSec,
    speedup: spmSec / oursSec,
    commonPieces: common,
    sameIdPieces: sameId,
    identicalPrefix: samePrefix,
    heldOutLines: heldOut.length,
    heldOutIdentical: sameLines,
    tokensOurs: tokOurs,
    tokensSpm: tokTheirs,
  }),
);
