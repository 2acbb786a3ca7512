// patentgpt tokenizer train | merge | stats | export-hf: BPE training on IP text, merging with
// LLaMA-2's vocabulary (the paper's 55,296), characters-per-token figures of tokenizers on data
// (held-out lines too), and the Hugging Face tokenizer.json export.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { Progress } from '../train/progress.js';
import { exportHfTokenizer, mergeVocabularies, SentencePieceTokenizer, tokenizerStats, trainBpe } from '../tokenizer/index.js';
import { sentencePieceFromSpec } from './tokenizer-spec.js';

function int(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got ${v}`);
  return n;
}
function holdOut(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError(`expected an integer >= 2 (1 line in N is held out), got ${v}`);
  return n;
}
const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** Files under the given paths (folders walked, sorted). */
function files(paths: string[]): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) for (const e of readdirSync(p).sort()) walk(join(p, e));
    else out.push(p);
  };
  paths.forEach(walk);
  return out;
}

export function tokenizerCommand(): Command {
  const cmd = new Command('tokenizer').description('train, merge and measure SentencePiece BPE tokenizers');
  cmd
    .command('train')
    .description('train a SentencePiece BPE tokenizer.model (spm_train --model_type=bpe semantics, identity normalizer, byte fallback)')
    .requiredOption('--input <path>', 'text file or folder, one sentence a line (repeatable)', collect, [])
    .requiredOption('--vocab-size <n>', 'pieces in the model, meta pieces included', int)
    .requiredOption('--out <file>', 'where to write the tokenizer.model')
    .option('--character-coverage <x>', 'share of characters kept (rarer ones fall back to bytes)', '0.9995')
    .option('--input-sentence-size <n>', 'use at most the first N sentences', '0')
    .option('--hold-out <n>', 'leave out 1 line in N (by a hash of the line) for `tokenizer stats --hold-out N`', holdOut)
    .action(async (o: { input: string[]; vocabSize: number; out: string; characterCoverage: string; inputSentenceSize: string; holdOut?: number }) => {
      let bar: Progress | null = null;
      const r = await trainBpe({ files: files(o.input) }, {
        vocabSize: o.vocabSize,
        characterCoverage: Number(o.characterCoverage),
        inputSentenceSize: Number(o.inputSentenceSize),
        holdOut: o.holdOut,
        onProgress: (p) => {
          if (p.phase !== 'merge') return;
          bar ??= new Progress({ total: p.total, label: 'merges' });
          bar.update(p.done);
        },
      });
      (bar as Progress | null)?.done();
      writeFileSync(o.out, r.tokenizer.serialize());
      console.log(JSON.stringify({ out: o.out, pieces: r.tokenizer.vocabSize, ...r.stats }));
    });
  cmd
    .command('merge')
    .description("append a domain model's new pieces to a base vocabulary up to a size (paper: LLaMA-2 + IP = 55,296)")
    .option('--base <model>', "base tokenizer.model, or 'llama2'", 'llama2')
    .requiredOption('--domain <model>', 'domain tokenizer.model (e.g. from tokenizer train)')
    .option('--size <n>', 'target vocabulary size', int, 55296)
    .requiredOption('--out <file>', 'where to write the merged tokenizer.model')
    .action((o: { base: string; domain: string; size: number; out: string }) => {
      const { tokenizer, stats } = mergeVocabularies(sentencePieceFromSpec(o.base), SentencePieceTokenizer.load(o.domain), o.size);
      writeFileSync(o.out, tokenizer.serialize());
      console.log(JSON.stringify({ out: o.out, ...stats }));
    });
  cmd
    .command('stats')
    .description('characters per token and tokens per document of tokenizers on text files, Chinese and English lines apart')
    .requiredOption('--model <model>', "tokenizer.model or 'llama2' (repeatable)", collect, [])
    .requiredOption('--data <path>', 'text file or folder (repeatable); each file is a document', collect, [])
    .option('--hold-out <n>', 'measure only the held-out lines of `tokenizer train --hold-out N`', holdOut)
    .action((o: { model: string[]; data: string[]; holdOut?: number }) => {
      const docs = files(o.data).map((path) => ({ path, text: readFileSync(path, 'utf8') }));
      const rows = o.model.flatMap((m) => {
        const bar = new Progress({ total: docs.length, label: m });
        const r = tokenizerStats([{ name: m, tokenizer: sentencePieceFromSpec(m) }], docs, { holdOut: o.holdOut, onDocument: (d) => bar.update(d) });
        bar.done();
        return r;
      });
      console.log(`| model | vocab | language | documents | lines${o.holdOut ? ' (held out)' : ''} | chars/token | tokens/doc |`);
      console.log('|---|---:|---|---:|---:|---:|---:|');
      for (const r of rows) {
        console.log(`| ${r.model} | ${r.vocab} | ${r.language} | ${r.documents} | ${r.lines} | ${r.charsPerToken.toFixed(3)} | ${r.tokensPerDocument.toFixed(1)} |`);
      }
      console.log(JSON.stringify({ holdOut: o.holdOut ?? 0, stats: rows }));
    });
  cmd
    .command('export-hf')
    .description('write a Hugging Face tokenizer.json and tokenizer_config.json (transformers, @huggingface/tokenizers) that give sentencepiece\'s ids')
    .requiredOption('--model <model>', "tokenizer.model or 'llama2'")
    .requiredOption('--out <dir>', 'folder to write into')
    .option('--prefix <how>', "dummy prefix by 'normalizer' (Prepend, exact) or 'metaspace' (what transformers writes)", 'normalizer')
    .option('--no-bos', 'do not add BOS in the post-processor')
    .action((o: { model: string; out: string; prefix: string; bos: boolean }) => {
      if (o.prefix !== 'normalizer' && o.prefix !== 'metaspace') throw new InvalidArgumentError(`--prefix must be normalizer or metaspace, got ${o.prefix}`);
      const written = exportHfTokenizer(sentencePieceFromSpec(o.model), o.out, { prefix: o.prefix, addBos: o.bos });
      console.log(JSON.stringify({ written }));
    });
  return cmd;
}
