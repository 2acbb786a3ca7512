// patentgpt generate: the continuation of one prompt by a model folder, streamed to stdout as the
// engine produces it (text deltas from the incremental detokenizer, so a character split over
// byte tokens is never printed half). stdout holds exactly the generated text; the summary and
// diagnostics go to stderr. Ctrl-C stops the generation, keeps what was printed, exits 130.
//
// Sampling defaults follow the folder's generation_config.json as transformers' generate() reads
// it: greedy unless do_sample is true, then its temperature / top_p / top_k; flags override.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { PatentGPTError } from '../errors.js';
import { Engine, type GenerateOptions, type GenerationDelta } from '../infer/index.js';
import { GENERATION_CONFIG_FILE, holdsModel } from '../models/index.js';
import type { KvCacheDType } from '../tensor/index.js';
import { intArg, numberArg } from './args.js';
import { kvCacheDtypeOption } from './kv-cache-flag.js';
import { tokenizerFromSpec } from './tokenizer-spec.js';

/** The flags generate and chat share (model, tokenizer, sampling, engine budget). */
export interface SamplingFlags {
  model: string;
  tokenizer?: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop: string[];
  ignoreEos?: boolean;
  kvCacheMb: number;
  kvCacheDtype: KvCacheDType;
}

/** Adds the shared flags to a command. */
export function withSamplingFlags(cmd: Command): Command {
  return cmd
    .requiredOption('--model <dir>', 'model folder (config.json + safetensors, with its tokenizer)')
    .option('--tokenizer <spec>', "tokenizer.model path, 'llama2' or 'byte' (default: the one the model folder records)")
    .option('--max-tokens <n>', 'most new tokens (default: 256 for generate, 512 a turn for chat, less when the context has less room)', intArg('--max-tokens', 1))
    .option('--temperature <t>', "0 is greedy (default: generation_config.json's when do_sample is true, else 0)", numberArg('--temperature', (x) => x >= 0, 'a number >= 0'))
    .option('--top-p <p>', 'nucleus sampling: keep the most likely tokens up to this probability mass, in (0, 1]', numberArg('--top-p', (x) => x > 0 && x <= 1, 'a number in (0, 1]'))
    .option('--top-k <k>', 'keep the k most likely tokens (0: all)', intArg('--top-k', 0))
    .option('--seed <s>', 'seed of the random draws (same seed, same text)', intArg('--seed', 0))
    .addOption(new Option('--stop <text>', 'stop when the text contains this (not printed); repeat for several').argParser((v: string, prev: string[]) => [...prev, v]).default([]))
    .option('--ignore-eos', 'keep going after the end-of-sequence token (up to --max-tokens)')
    .option('--kv-cache-mb <n>', 'KV cache budget in MiB', intArg('--kv-cache-mb', 1), 256)
    .addOption(kvCacheDtypeOption());
}

/** transformers' reading of generation_config.json: sampling settings only when do_sample is true. */
export function folderSampling(dir: string): Pick<GenerateOptions, 'temperature' | 'topP' | 'topK'> {
  const path = join(dir, GENERATION_CONFIG_FILE);
  if (!existsSync(path)) return {};
  let g: Record<string, unknown>;
  try {
    g = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${path} is not valid JSON (${(err as Error).message}); fix or delete it`);
  }
  if (g.do_sample !== true) return { temperature: 0 };
  const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  return {
    temperature: num(g.temperature) ?? 1,
    ...(num(g.top_p) !== undefined ? { topP: num(g.top_p) } : {}),
    ...(num(g.top_k) !== undefined ? { topK: num(g.top_k) } : {}),
  };
}

/** The request options from the flags over the folder's defaults (maxTokens is the caller's). */
export function samplingOptions(o: SamplingFlags): GenerateOptions {
  const d = folderSampling(o.model);
  const pick = <K extends 'temperature' | 'topP' | 'topK'>(k: K): GenerateOptions[K] => (o[k] !== undefined ? o[k] : d[k]);
  const opts: GenerateOptions = {};
  const temperature = pick('temperature');
  const topP = pick('topP');
  const topK = pick('topK');
  if (temperature !== undefined) opts.temperature = temperature;
  if (topP !== undefined) opts.topP = topP;
  if (topK !== undefined) opts.topK = topK;
  if (o.seed !== undefined) opts.seed = o.seed;
  if (o.stop.length > 0) opts.stop = o.stop;
  if (o.ignoreEos) opts.ignoreEos = true;
  return opts;
}

/** An engine over the folder with its tokenizer (prompts go in as ids); a clear error when the folder holds no model. */
export async function engineFor(o: SamplingFlags): Promise<{ engine: Engine; tokenizer: ReturnType<typeof tokenizerFromSpec> }> {
  if (!existsSync(o.model) || !(await holdsModel(o.model)))
    throw new PatentGPTError('E_ARGUMENT', `--model ${o.model}: no model folder there (config.json and model.safetensors); pass a folder that savePretrained, a training run's checkpoint or 'patentgpt model init' wrote`);
  const tokenizer = tokenizerFromSpec(o.tokenizer, o.model);
  const engine = await Engine.fromPretrained(o.model, { tokenizer, kvCacheBytes: o.kvCacheMb * 2 ** 20, kvCacheDType: o.kvCacheDtype });
  return { engine, tokenizer };
}

/** Writes to stdout, waiting when the pipe is full (a slow reader holds the generation back). */
export async function writeOut(text: string): Promise<void> {
  if (text.length === 0) return;
  if (!process.stdout.write(text)) await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
}

/** Streams a request's text to stdout; returns the tokens made and why it ended ('aborted' when the signal fired). */
export async function streamTo(deltas: AsyncIterable<GenerationDelta>, signal: AbortSignal, onText: (t: string) => void = () => {}): Promise<{ tokens: number; finish: string }> {
  let tokens = 0;
  let finish = 'length';
  try {
    for await (const d of deltas) {
      tokens += d.tokens.length;
      onText(d.text);
      await writeOut(d.text);
      if (d.finishReason) finish = d.finishReason;
    }
  } catch (err) {
    if (!signal.aborted) throw err;
    finish = 'aborted';
  }
  return { tokens, finish };
}

interface GenerateFlags extends SamplingFlags {
  prompt: string;
  addBos: boolean;
  quiet?: boolean;
}

export function generateCommand(): Command {
  return withSamplingFlags(
    new Command('generate')
      .description('continue a prompt with a model folder, streaming the text to stdout (summary on stderr)')
      .requiredOption('--prompt <text>', "the prompt ('-' reads it from stdin)"),
  )
    .option('--no-add-bos', 'no BOS token in front of the prompt (default: BOS, as LLaMA models are trained)')
    .option('--quiet', 'no summary line on stderr')
    .action(async (o: GenerateFlags) => {
      const text = o.prompt === '-' ? readFileSync(0, 'utf8') : o.prompt;
      const { engine, tokenizer } = await engineFor(o);
      const ac = new AbortController();
      const onSigint = (): void => ac.abort();
      process.once('SIGINT', onSigint);
      try {
        const prompt = Array.from(tokenizer.encode(text, { bos: o.addBos }));
        const maxTokens = o.maxTokens ?? Math.max(1, Math.min(256, engine.maxModelLen - prompt.length));
        const t0 = performance.now();
        const r = await streamTo(engine.generate(prompt, { ...samplingOptions(o), maxTokens, signal: ac.signal }), ac.signal);
        if (process.stdout.isTTY) await writeOut('\n');
        const sec = (performance.now() - t0) / 1000;
        if (!o.quiet)
          console.error(`patentgpt generate: ${prompt.length} prompt tokens, ${r.tokens} new in ${sec.toFixed(2)} s (${(r.tokens / Math.max(sec, 1e-9)).toFixed(1)} tokens/s), finish: ${r.finish}${o.kvCacheDtype === 'f32' ? '' : `, KV cache ${engine.stats().kvCacheDType}`}`);
        if (r.finish === 'aborted') process.exitCode = 130;
      } finally {
        process.off('SIGINT', onSigint);
        engine.close();
      }
    });
}
