// `patentgpt data synth`: rewriting and synthesis over documents with a generator backend
// (an OpenAI-compatible endpoint, this package's engine, or the offline extractive one).
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { PatentGPTError } from '../errors.js';
import { OfflineGenerator, OpenAIHttpGenerator, TEMPLATE_NAMES, getTemplate, synthesize, doneLogPath, type Generator, type SynthReport, type TemplateName } from '../data/generate/index.js';
import { EngineGenerator } from '../infer/generator.js';
import { FORMATS, type Format } from '../data/readers/index.js';
import { loadPretrained } from '../models/index.js';
import { Progress } from '../train/progress.js';
import { tokenizerFromSpec } from './tokenizer-spec.js';

function number(name: string, min: number, max = Infinity, integer = false) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
      throw new InvalidArgumentError(`${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`);
    return n;
  };
}

interface SynthCliOptions {
  input: string[]; template: string; backend: 'offline' | 'http' | 'engine'; out: string;
  url?: string; keyEnv?: string; model?: string; api: 'chat' | 'completions'; tokenizer?: string; kvCacheMb: number;
  maxTokens: number; temperature: number; topP?: number; seed: number;
  concurrency?: number; rpm?: number; tpm?: number; timeout: number; retries: number;
  limit?: number; maxSourceChars: number; questions: number;
  format?: Format; category?: string; lang?: string; json?: boolean; quiet?: boolean;
}

async function makeGenerator(o: SynthCliOptions): Promise<Generator & { close?(): void }> {
  const need = (v: string | undefined, flag: string): string => {
    if (!v) throw new PatentGPTError('E_ARGUMENT', `--backend ${o.backend} needs ${flag}`);
    return v;
  };
  if (o.backend === 'offline') return new OfflineGenerator({ ...(o.concurrency ? { concurrency: o.concurrency } : {}) });
  if (o.backend === 'http') {
    const keyVar = o.keyEnv ?? 'OPENAI_API_KEY';
    const apiKey = process.env[keyVar];
    if (o.keyEnv && !apiKey) throw new PatentGPTError('E_ARGUMENT', `--key-env ${o.keyEnv}: that environment variable is not set`);
    return new OpenAIHttpGenerator({
      baseURL: need(o.url, '--url (e.g. https://api.openai.com/v1)'), model: need(o.model, '--model NAME'), apiKey, api: o.api,
      timeoutMs: Math.round(o.timeout * 1000), maxRetries: o.retries,
      ...(o.rpm ? { requestsPerMinute: o.rpm } : {}), ...(o.tpm ? { tokensPerMinute: o.tpm } : {}), ...(o.concurrency ? { concurrency: o.concurrency } : {}),
    });
  }
  const dir = need(o.model, '--model DIR (a model folder: config.json + safetensors)');
  const tok = tokenizerFromSpec(o.tokenizer, dir); // --tokenizer, else the one the folder records
  const model = await loadPretrained(dir);
  if (tok.vocabSize > model.config.vocabSize)
    throw new PatentGPTError('E_ARGUMENT', `tokenizer ${o.tokenizer ?? `recorded in ${dir}`} has ${tok.vocabSize} tokens; the model's vocabulary has ${model.config.vocabSize}`);
  return EngineGenerator.fromModel(model, tok, path.basename(path.resolve(dir)), { kvCacheBytes: o.kvCacheMb * 2 ** 20, ...(o.concurrency ? { concurrency: o.concurrency } : {}) });
}

export function formatSynthReport(r: SynthReport): string {
  const failed = Object.entries(r.tasks.failed);
  const rejected = Object.entries(r.documents.rejected);
  return [
    `${r.status}: documents in ${r.documents.in}${rejected.length ? `, rejected ${rejected.reduce((s, [, v]) => s + v, 0)}` : ''}`,
    ...rejected.map(([k, v]) => `  ${k}: ${v}`),
    `tasks ${r.tasks.total}: generated ${r.tasks.ok}, resumed ${r.tasks.resumed}, failed ${failed.reduce((s, [, v]) => s + v, 0)}`,
    ...failed.map(([k, v]) => `  ${k}: ${v}${r.examples[k] ? ` (e.g. ${r.examples[k]!.slice(0, 160)})` : ''}`),
    `records written ${r.generated}${r.malformed ? `, malformed reply parts skipped ${r.malformed}` : ''}`,
    `tokens: prompt ${r.usage.promptTokens}, completion ${r.usage.completionTokens}; ${r.elapsedSec.toFixed(1)} s`,
    `output: ${r.out} (resume log ${doneLogPath(r.out)})`,
  ].join('\n');
}

export function synthCommand(): Command {
  return new Command('synth')
    .description('rewrite and synthesize documents with a generator (OpenAI-compatible HTTP, the engine, or offline); JSONL with provenance, resumable')
    .requiredOption('--input <path...>', 'files or folders of documents (any format data prep reads)')
    .requiredOption('--template <names>', `comma-separated: ${TEMPLATE_NAMES.join(', ')}`)
    .addOption(new Option('--backend <name>', 'who writes the replies').choices(['http', 'engine', 'offline']).makeOptionMandatory())
    .requiredOption('--out <file>', 'output JSONL (rerun the same command to resume)')
    .option('--url <baseURL>', 'http: API base URL, e.g. https://api.openai.com/v1')
    .option('--key-env <VAR>', 'http: environment variable holding the API key (default OPENAI_API_KEY when set)')
    .option('--model <name|dir>', 'http: model name; engine: model folder')
    .addOption(new Option('--api <api>', 'http: chat (/chat/completions) or completions (/completions)').choices(['chat', 'completions']).default('chat'))
    .option('--tokenizer <spec>', "engine: tokenizer.model path, 'llama2' or 'byte' (default <model>/tokenizer.model)")
    .option('--kv-cache-mb <n>', 'engine: KV cache size', number('--kv-cache-mb', 1), 256)
    .option('--max-tokens <n>', 'most new tokens per reply', number('--max-tokens', 1, Infinity, true), 512)
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', number('--temperature', 0, 2), 0)
    .option('--top-p <p>', 'nucleus sampling', number('--top-p', 0, 1))
    .option('--seed <s>', 'base seed; each task gets its own from it', number('--seed', 0, Number.MAX_SAFE_INTEGER, true), 0)
    .option('--concurrency <n>', 'requests in flight (default http 4, engine 8)', number('--concurrency', 1, 1024, true))
    .option('--rpm <n>', 'http: requests per minute', number('--rpm', 0.001))
    .option('--tpm <n>', 'http: tokens per minute (prompt + max tokens)', number('--tpm', 1))
    .option('--timeout <sec>', 'http: per-request timeout', number('--timeout', 0.001), 60)
    .option('--retries <n>', 'http: retries on 408/429/5xx/network/timeout', number('--retries', 0, 100, true), 4)
    .option('--limit <n>', 'read at most N documents', number('--limit', 0, Infinity, true))
    .option('--max-source-chars <n>', 'longest document excerpt in a prompt', number('--max-source-chars', 100, Infinity, true), 6000)
    .option('--questions <n>', 'patent-to-qa: pairs asked for', number('--questions', 1, 50, true), 3)
    .addOption(new Option('--format <format>', 'input format (default: detected)').choices(FORMATS as string[]))
    .option('--category <name>', 'category of every input document')
    .option('--lang <code>', 'language of every input document (default: identified per document)')
    .option('--json', 'print the closing report as JSON')
    .option('--quiet', 'no progress output')
    .addHelpText('after', [
      '',
      'Examples:',
      '  patentgpt data synth --input patents.jsonl --template claim-to-abstract --backend http \\',
      '      --url https://api.openai.com/v1 --key-env OPENAI_API_KEY --model gpt-4o-mini --rpm 500 --out pairs.jsonl',
      '  patentgpt data synth --input ../shared/data/uspto-ppd-samples --template patent-to-qa,sft-instruction \\',
      '      --backend engine --model runs/sft/final --tokenizer llama2 --out qa.jsonl',
      'Ctrl-C stops cleanly (exit code 130); the same command resumes.',
    ].join('\n'))
    .action(async (o: SynthCliOptions) => {
      const templates = o.template.split(',').map((s) => s.trim()).filter((s) => s !== '');
      templates.forEach(getTemplate); // unknown names fail before any model loads
      const generator = await makeGenerator(o);
      const ac = new AbortController();
      const onSignal = (): void => ac.abort(new PatentGPTError('E_ABORTED', 'interrupted'));
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let bar: Progress | null = null;
      try {
        const report = await synthesize({
          inputs: o.input, templates: templates as TemplateName[], generator, out: o.out,
          read: { ...(o.format ? { format: o.format } : {}), ...(o.category ? { category: o.category } : {}), ...(o.lang ? { lang: o.lang } : {}) },
          params: { maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed, ...(o.topP !== undefined ? { topP: o.topP } : {}) },
          templateOptions: { maxSourceChars: o.maxSourceChars, questions: o.questions },
          ...(o.limit !== undefined ? { limit: o.limit } : {}),
          ...(o.concurrency ? { concurrency: o.concurrency } : {}),
          signal: ac.signal,
          onProgress: o.quiet ? undefined : (p) => {
            bar ??= new Progress({ total: Math.max(1, p.totalBytes), label: 'synth', stream: process.stderr.isTTY ? process.stderr : process.stdout });
            bar.update(p.bytes, { docs: p.documents, tasks: p.tasksDone, records: p.generated, failed: p.failed });
          },
        });
        (bar as Progress | null)?.done({ records: report.generated });
        console.log(o.json ? JSON.stringify(report) : formatSynthReport(report));
        if (report.status === 'aborted') process.exitCode = 130;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        generator.close?.();
      }
    });
}
