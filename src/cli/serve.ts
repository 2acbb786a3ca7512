// patentgpt serve: an OpenAI-compatible HTTP server over a model folder (src/serve).
//
// One line on stdout once it listens ("listening on http://HOST:PORT (model NAME)"), so scripts
// and tests can wait for it. SIGTERM and SIGINT drain: the server stops taking requests (503),
// lets the generations in flight finish (at most --drain-timeout), frees the model and exits 0;
// a second signal exits at once.
import { basename, resolve } from 'node:path';
import { Command } from 'commander';
import { createServer } from '../serve/index.js';
import type { KvCacheDType } from '../tensor/index.js';
import { intArg } from './args.js';
import { kvCacheDtypeOption } from './kv-cache-flag.js';

interface ServeFlags {
  model: string;
  host: string;
  port: number;
  apiKey?: string;
  modelName?: string;
  maxConcurrency?: number;
  queueSize?: number;
  maxPromptTokens?: number;
  maxModelLen?: number;
  bodyLimit?: number;
  requestTimeout: number;
  drainTimeout: number;
  kvCacheMb?: number;
  kvCacheDtype: KvCacheDType;
  maxNumSeqs?: number;
  log: boolean;
}

export function serveCommand() {
  return new Command('serve')
    .description('serve a model folder over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /metrics)')
    .requiredOption('--model <dir>', 'a model folder (savePretrained or a training checkpoint) with its tokenizer')
    .option('--host <host>', 'address to bind; other than loopback needs an API key', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', intArg('--port', 0), 8000)
    .option('--api-key <key>', 'Bearer key clients must send (default: $PATENTGPT_API_KEY; none on loopback)')
    .option('--model-name <name>', 'the model id clients send (default: the folder name)')
    .option('--max-concurrency <n>', 'requests in the engine at once', intArg('--max-concurrency', 1))
    .option('--queue-size <n>', 'requests waiting beyond those; more are answered 429', intArg('--queue-size', 0))
    .option('--max-prompt-tokens <n>', 'longest prompt in tokens (default: the context less one)', intArg('--max-prompt-tokens', 1))
    .option('--max-model-len <n>', "context length (default: the model's)", intArg('--max-model-len', 2))
    .option('--body-limit <bytes>', 'largest request body (default 1 MiB)', intArg('--body-limit', 1))
    .option('--request-timeout <ms>', 'time limit of a generation request, queue included (0: none)', intArg('--request-timeout', 0), 600_000)
    .option('--drain-timeout <ms>', 'on SIGTERM, how long in-flight requests may take to finish', intArg('--drain-timeout', 0), 30_000)
    .option('--kv-cache-mb <n>', 'MiB of KV cache (default 256)', intArg('--kv-cache-mb', 1))
    .addOption(kvCacheDtypeOption())
    .option('--max-num-seqs <n>', 'most sequences in one engine step (default 64)', intArg('--max-num-seqs', 1))
    .option('--log', 'log every request (JSON lines on stdout)', false)
    .addHelpText('after', [
      '',
      'Example:',
      '  patentgpt serve --model runs/tiny-sft/checkpoints/step-200 --port 8000',
      "  curl localhost:8000/v1/completions -H 'content-type: application/json' \\",
      '    -d \'{"model": "step-200", "prompt": "A method for", "max_tokens": 32}\'',
    ].join('\n'))
    .action(async (o: ServeFlags) => {
      const app = await createServer({
        model: o.model,
        host: o.host,
        apiKey: o.apiKey ?? process.env.PATENTGPT_API_KEY,
        modelName: o.modelName,
        maxConcurrency: o.maxConcurrency,
        queueSize: o.queueSize,
        maxPromptTokens: o.maxPromptTokens,
        maxModelLen: o.maxModelLen,
        bodyLimit: o.bodyLimit,
        requestTimeoutMs: o.requestTimeout,
        drainTimeoutMs: o.drainTimeout,
        engineOptions: {
          ...(o.kvCacheMb !== undefined ? { kvCacheBytes: o.kvCacheMb * 2 ** 20 } : {}),
          kvCacheDType: o.kvCacheDtype,
          ...(o.maxNumSeqs !== undefined ? { maxNumSeqs: o.maxNumSeqs } : {}),
        },
        logger: o.log,
      });
      const url = await app.listen({ host: o.host, port: o.port });
      const name = o.modelName ?? basename(resolve(o.model)); // createServer's default
      console.log(`listening on ${url} (model ${name})`);
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) process.exit(130); // a second signal: no more waiting
        stopping = true;
        console.error(`${signal}: draining (new requests get 503; up to ${o.drainTimeout} ms for those in flight)`);
        app.close().then(() => {
          console.error('stopped');
          process.exit(0);
        }, (err: unknown) => {
          console.error(err instanceof Error ? err.message : String(err));
          process.exit(1);
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
