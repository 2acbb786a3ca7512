// TokenizerPool: batch encoding on several worker threads. Each worker rebuilds the tokenizer from
// its tokenizer.model bytes (its own segment cache), takes chunks of texts from a shared queue and
// sends back the ids as one transferred Int32Array per chunk, so the ids cross without copying.
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PatentGPTError } from '../errors.js';
import type { EncodeOptions } from './sentencepiece.js';
import { SentencePieceTokenizer } from './sentencepiece.js';
import type { PoolReply, PoolRequest } from './pool-worker.js';

const CHUNK_BYTES = 64 * 1024; // texts per message: enough to hide the message cost

/** Code that starts a worker module: the compiled .js, or the .ts source through tsx in a checkout. */
export function workerBootstrap(module: URL): string {
  const js = new URL(module.href.replace(/\.ts$/, '.js'));
  if (existsSync(fileURLToPath(js))) return `import(${JSON.stringify(js.href)});`;
  const ts = new URL(module.href.replace(/\.js$/, '.ts'));
  const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
  const exp = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!;
  const api = pathToFileURL(join(dirname(pkg), exp.import.default)).href;
  return `import(${JSON.stringify(api)}).then((m) => { (m.register ?? m.default.register)(); return import(${JSON.stringify(ts.href)}); });`;
}

export interface TokenizerPoolOptions {
  /** Worker threads (default: the machine's available parallelism). */
  threads?: number;
}

export class TokenizerPool {
  readonly threads: number;
  readonly #workers: Worker[] = [];
  readonly #ready: Promise<void>[] = [];
  #closed = false;
  #busy = Promise.resolve();

  constructor(tokenizer: SentencePieceTokenizer, options: TokenizerPoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
      throw new PatentGPTError('E_ARGUMENT', `TokenizerPool: threads must be an integer in [1, 256], got ${threads}`);
    }
    if (!(tokenizer instanceof SentencePieceTokenizer)) throw new PatentGPTError('E_ARGUMENT', 'TokenizerPool takes a SentencePieceTokenizer');
    this.threads = threads;
    const bytes = tokenizer.serialize();
    const code = workerBootstrap(new URL('./pool-worker.ts', import.meta.url));
    for (let i = 0; i < threads; i++) {
      const w = new Worker(code, { eval: true, workerData: { model: bytes, name: tokenizer.name } });
      w.unref();
      this.#workers.push(w);
      this.#ready.push(
        new Promise((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', reject);
        }),
      );
    }
  }

  /**
   * Token ids of each text, in order; the texts are spread over the workers in chunks of about
   * 64 KB. Calls are served one after another.
   */
  encodeBatch(texts: readonly string[], opts: EncodeOptions = {}): Promise<Int32Array[]> {
    if (this.#closed) return Promise.reject(new PatentGPTError('E_ARGUMENT', 'TokenizerPool: encodeBatch after close()'));
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
      return Promise.reject(new PatentGPTError('E_ARGUMENT', 'TokenizerPool.encodeBatch takes an array of strings'));
    }
    const run = this.#busy.then(() => this.#run(texts, opts));
    this.#busy = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async #run(texts: readonly string[], opts: EncodeOptions): Promise<Int32Array[]> {
    await Promise.all(this.#ready);
    const chunks: [number, number][] = [];
    for (let start = 0; start < texts.length; ) {
      let end = start;
      let bytes = 0;
      while (end < texts.length && (end === start || bytes < CHUNK_BYTES)) bytes += texts[end++]!.length;
      chunks.push([start, end]);
      start = end;
    }
    const out = new Array<Int32Array>(texts.length);
    let next = 0;
    const drive = (w: Worker): Promise<void> =>
      new Promise((resolve, reject) => {
        const send = (): void => {
          if (next >= chunks.length) {
            w.off('message', onMessage);
            w.off('error', reject);
            resolve();
            return;
          }
          const [start, end] = chunks[next++]!;
          const req: PoolRequest = { start, texts: texts.slice(start, end) as string[], bos: !!opts.bos, eos: !!opts.eos };
          w.postMessage(req);
        };
        const onMessage = (r: PoolReply): void => {
          if ('error' in r) {
            w.off('message', onMessage);
            reject(new PatentGPTError(r.code as 'E_ARGUMENT', r.error));
            return;
          }
          for (let i = 0; i + 1 < r.offsets.length; i++) out[r.start + i] = r.ids.subarray(r.offsets[i]!, r.offsets[i + 1]!);
          send();
        };
        w.on('message', onMessage);
        w.once('error', reject);
        send();
      });
    await Promise.all(this.#workers.map(drive));
    return out;
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#busy;
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
