// The demo's data and tokenizer steps: the bundled IP corpus (examples/demo-data), with the
// built-in sample corpus and generated junk beside it so the filters and the dedup have work,
// through `data prep` twice (bytes first, to train the tokenizer on the cleaned text; then the
// merged tokenizer for the training shards), a BPE tokenizer trained and merged as the paper does
// (a general vocabulary extended with domain pieces), and the held-out documents that survived the
// dedup against the training text, for the perplexity task.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadPrepConfig, prep, type PrepReport } from '../data/prep.js';
import { ShardSet } from '../data/shards.js';
import { junkDocuments } from '../data/junk.js';
import { sampleCorpus } from '../data/sample/index.js';
import { ByteTokenizer, isHeldOut, mergeVocabularies, SentencePieceTokenizer, tokenizerStats, trainBpe } from '../tokenizer/index.js';
import { PatentGPTError } from '../errors.js';

/** examples/demo-data of this package (from src/demo or dist/src/demo alike). */
export function demoDataDir(): string {
  let dir = path.dirname(new URL(import.meta.url).pathname);
  for (let i = 0; i < 5; i++) {
    const cand = path.join(dir, 'examples', 'demo-data');
    if (fs.existsSync(path.join(cand, 'SOURCES.md'))) return cand;
    dir = path.dirname(dir);
  }
  throw new PatentGPTError('E_IO', 'the demo data (examples/demo-data) is missing from this package; reinstall patentgpt');
}

const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

/** Writes the inputs the bundle does not carry as files: the sample corpus and junk documents. */
export function writeExtraInputs(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  // The templated sample patents repeat their structure: near-duplicates for the MinHash dedup.
  const sample = sampleCorpus({ generated: 120, seed: 3 }).map((d, i) => ({ id: `sample-${i}`, text: d.text, category: d.category === 'qa' ? 'law' : d.category }));
  fs.writeFileSync(path.join(dir, 'sample.jsonl'), jsonl(sample));
  fs.writeFileSync(path.join(dir, 'junk.jsonl'), jsonl(junkDocuments(60, ['patent', 'law'], 5).map((d) => ({ id: `junk-${d.id}`, text: d.text, category: d.category }))));
}

export interface PrepFiles {
  config: string;
  output: string;
}

/** The demo's prep config: filters of examples/prep.json's kind, MinHash dedup, the held-out patents as their own category. */
export function writePrepConfig(dir: string, data: string, extra: string, tokenizer: { type: 'byte' } | { type: 'sentencepiece'; model: string }): PrepFiles {
  const output = path.join(dir, 'out');
  const cfg = {
    $comment: 'written by patentgpt demo',
    output,
    inputs: [
      { path: path.join(data, 'corpus', 'patents.jsonl'), category: 'patent', lang: 'en' },
      { path: path.join(data, 'corpus', 'title35.jsonl'), category: 'law', lang: 'en' },
      { path: path.join(data, 'heldout-patents.jsonl'), category: 'heldout', lang: 'en' },
      { path: path.join(extra, 'sample.jsonl'), fields: { category: 'category' }, lang: 'en' },
      { path: path.join(extra, 'junk.jsonl'), fields: { category: 'category' }, lang: 'en', label: 'junk' },
    ],
    filters: {
      minWords: 40, maxWords: 200000, meanWordLength: [2.5, 12], maxDigitRatio: 0.35, maxSymbolRatio: 0.3,
      maxDupLineFraction: 0.3, maxDupLineCharFraction: 0.2,
      maxTopNgramCharFraction: { 2: 0.2, 3: 0.18, 4: 0.16 },
      maxDupNgramCharFraction: { 5: 0.6, 7: 0.5, 10: 0.45 },
      languages: ['en'],
    },
    dedup: { threshold: 0.7, permutations: 128, shingle: 5 },
    tokenizer: tokenizer.type === 'byte' ? { type: 'byte', eos: true } : { type: 'sentencepiece', model: tokenizer.model, eos: true },
    seed: 1,
    maxRepeat: 1,
    // Weights are copy factors here (no token budget): every kept document once, so no document
    // is both in a run's training and validation split.
    stages: {
      stage1: { weights: { patent: 1, law: 1 } },
      stage2: { weights: { patent: 1, law: 0.5 } },
      heldout: { weights: { heldout: 1 } },
    },
  };
  const config = path.join(dir, 'prep.json');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(config, JSON.stringify(cfg, null, 2) + '\n');
  return { config, output };
}

export async function runPrep(files: PrepFiles, onProgress?: (phase: string, done: number, total: number) => void): Promise<PrepReport> {
  const cfg = loadPrepConfig(files.config);
  // The scan reports bytes of a known total; the emit phases (a fraction of a second here) no total, so no bar.
  return prep(cfg, { workers: 0, onProgress: (e) => (e.totalBytes ? onProgress?.(e.phase, e.bytes, e.totalBytes) : undefined) });
}

/** The documents of a stage's shards as text (byte shards decode exactly). */
export async function shardTexts(output: string, stage: string): Promise<{ category: string; text: string }[]> {
  const set = await ShardSet.open(path.join(output, stage, 'part-0'));
  const byte = new ByteTokenizer();
  const out: { category: string; text: string }[] = [];
  try {
    for (const sh of set.shards) for (let d = 0; d < sh.documents; d++) out.push({ category: sh.category, text: byte.decode(await sh.document(d)) });
  } finally {
    set.close();
  }
  return out;
}

/** Ids of the documents a stage kept (its provenance.tsv). */
export function stageIds(output: string, stage: string): Set<string> {
  const tsv = fs.readFileSync(path.join(output, stage, 'part-0', 'provenance.tsv'), 'utf8').split('\n').slice(1);
  return new Set(tsv.filter((l) => l).map((l) => l.split('\t')[1]!));
}

export interface TokenizerResult {
  base: string;
  domain: string;
  merged: string;
  vocab: { base: number; domain: number; merged: number; added: number };
  /** Characters per token on held-out lines (1 in HOLD_OUT, never trained on). */
  charsPerToken: { byte: number; base: number; merged: number };
  heldOutLines: number;
}

const HOLD_OUT = 10;

/**
 * The paper's tokenizer step at toy scale: a general vocabulary (`base`, trained on all the
 * cleaned text, standing in for LLaMA-2's) extended with the pieces of a domain vocabulary
 * trained on the patents alone, up to `mergedSize`. Lines 1 in 10 are held out of both trainings
 * and measured.
 */
export async function trainTokenizers(dir: string, docs: { category: string; text: string }[], sizes: { base: number; domain: number; merged: number }): Promise<TokenizerResult> {
  fs.mkdirSync(dir, { recursive: true });
  const lines = (cats?: string[]): string[] => docs.filter((d) => !cats || cats.includes(d.category)).flatMap((d) => d.text.split('\n')).filter((l) => l.trim() !== '');
  const base = await trainBpe({ lines: lines() }, { vocabSize: sizes.base, holdOut: HOLD_OUT });
  const domain = await trainBpe({ lines: lines(['patent']) }, { vocabSize: sizes.domain, holdOut: HOLD_OUT });
  const merged = mergeVocabularies(base.tokenizer, domain.tokenizer, sizes.merged);
  const files = { base: path.join(dir, 'base.model'), domain: path.join(dir, 'domain.model'), merged: path.join(dir, 'tokenizer.model') };
  fs.writeFileSync(files.base, base.tokenizer.serialize());
  fs.writeFileSync(files.domain, domain.tokenizer.serialize());
  fs.writeFileSync(files.merged, merged.tokenizer.serialize());
  const statsDocs = docs.filter((d) => d.category === 'patent').map((d, i) => ({ path: `doc-${i}`, text: d.text }));
  const mergedTok = SentencePieceTokenizer.load(files.merged);
  const rows = tokenizerStats([
    { name: 'base', tokenizer: base.tokenizer },
    { name: 'merged', tokenizer: mergedTok },
  ], statsDocs, { holdOut: HOLD_OUT });
  const en = (name: string): number => rows.find((r) => r.model === name && r.language === 'en')?.charsPerToken ?? Number.NaN;
  const heldOutLines = statsDocs.flatMap((d) => d.text.split('\n')).filter((l) => l.length > 0 && isHeldOut(l, HOLD_OUT));
  const chars = heldOutLines.reduce((s, l) => s + [...l].length, 0);
  const bytes = heldOutLines.reduce((s, l) => s + Buffer.byteLength(l), 0);
  return {
    ...files,
    vocab: { base: base.tokenizer.vocabSize, domain: domain.tokenizer.vocabSize, merged: mergedTok.vocabSize, added: mergedTok.vocabSize - base.tokenizer.vocabSize },
    charsPerToken: { byte: chars / Math.max(1, bytes), base: en('base'), merged: en('merged') },
    heldOutLines: heldOutLines.length,
  };
}

/** The held-out patents that survived the filters and the dedup against everything else: the perplexity task's documents. */
export function heldOutDocs(data: string, prepOutput: string): { id: string; text: string; category: string }[] {
  const kept = stageIds(prepOutput, 'heldout');
  return fs.readFileSync(path.join(data, 'heldout-patents.jsonl'), 'utf8').split('\n').filter((l) => l)
    .map((l) => JSON.parse(l) as { id: string; text: string })
    .filter((d) => kept.has(d.id))
    .map((d) => ({ ...d, category: 'held-out patents' }));
}
