// TokenizerPool: batch encoding on several threads, with exactly the ids of encode().
//
// Two backends. "native" (the default where the model allows it: BPE with the identity
// normalizer and no USER_DEFINED/UNUSED pieces, as LLaMA-2 and the trained and merged models):
// the texts go as one UTF-8 buffer to native/cpu/bpe_encode.cpp, which normalizes and encodes
// them on the addon's thread pool off the event loop and returns one Int32Array of ids. "workers":
// worker threads that each rebuild the tokenizer from its tokenizer.model bytes, take chunks of
// texts from a shared queue and send back one transferred Int32Array per chunk.
//
// Why native: measured with `npm run bench -- tokenizer`, the worker backend pays per text a
// structured clone of the string and a cold per-worker segment cache (the JS encoder is ~10x
// faster warm than cold, and each worker warms its own cache on its share of the text), so 2
// workers gain little over 1; the native encoder shares nothing between threads but its model
// and is several times faster per thread.
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { PatentGPTError } from '../errors.js';
import { NativeBpeEncoderHandle } from '../text/bpe-encoder.js';
import { packTexts } from '../text/batch.js';
import { startWorker } from '../util/worker.js';
import { PieceType } from './model.js';
import type { EncodeOptions } from './sentencepiece.js';
import { SentencePieceTokenizer } from './sentencepiece.js';
import type { PoolReply, PoolRequest } from './pool-worker.js';

const CHUNK_BYTES = 64 * 1024; // texts per worker message: enough to hide the message cost
const NATIVE_CHUNK_UNITS = 1 << 23; // UTF-16 units per native call: bounds the UTF-8 buffer (3 bytes a unit)

export type TokenizerPoolBackend = 'native' | 'workers';

export interface TokenizerPoolOptions {
  /** Threads (default: the machine's available parallelism); native: at most the addon pool's size (setNumThreads). */
  threads?: number;
  /** Default 'native' where the model allows it (see the file comment), else 'workers'. */
  backend?: TokenizerPoolBackend;
}

/** Why the native encoder cannot take this model, or null when it can. */
function nativeUnsupported(tokenizer: SentencePieceTokenizer): string | null {
  const { trainerSpec: t, normalizerSpec: n, pieces } = tokenizer.model;
  if (t.modelType !== 'BPE') return `a ${t.modelType} model`;
  if (n.precompiledCharsmap.length > 0) return `the normalizer "${n.name}" with a character map`;
  if (t.treatWhitespaceAsSuffix) return 'treat_whitespace_as_suffix';
  if (pieces.some((p) => p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED)) return 'USER_DEFINED or UNUSED pieces';
  return null;
}

export class TokenizerPool {
  readonly threads: number;
  readonly backend: TokenizerPoolBackend;
  readonly #tokenizer: SentencePieceTokenizer;
  readonly #native: NativeBpeEncoderHandle | null = null;
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
    if (options.backend !== undefined && options.backend !== 'native' && options.backend !== 'workers') {
      throw new PatentGPTError('E_ARGUMENT', `TokenizerPool: backend must be 'native' or 'workers', got ${String(options.backend)}`);
    }
    this.threads = threads;
    this.#tokenizer = tokenizer;
    const why = nativeUnsupported(tokenizer);
    if (options.backend === 'native' && why) throw new PatentGPTError('E_ARGUMENT', `TokenizerPool: the native backend cannot encode ${why}; use backend 'workers'`);
    this.backend = options.backend ?? (why ? 'workers' : 'native');
    if (this.backend === 'native') {
      const { trainerSpec: t, normalizerSpec: n } = tokenizer.model;
      this.#native = new NativeBpeEncoderHandle({
        pieces: tokenizer.model.pieces,
        unkId: t.unkId,
        byteFallback: t.byteFallback,
        addDummyPrefix: n.addDummyPrefix,
        removeExtraWhitespaces: n.removeExtraWhitespaces,
        escapeWhitespaces: n.escapeWhitespaces,
      });
      return;
    }
    const bytes = tokenizer.serialize();
    for (let i = 0; i < threads; i++) {
      const ready = startWorker(new URL('./pool-worker.js', import.meta.url), { workerData: { model: bytes, name: tokenizer.name } }).then(
          (w) => {
            w.unref();
            this.#workers.push(w);
            return new Promise<void>((resolve, reject) => {
              w.once('message', () => resolve());
              w.once('error', reject);
            });
          },
        );
      ready.catch(() => undefined); // reported by encodeBatch; an unused pool must not crash the process
      this.#ready.push(ready);
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
    if (this.#native) return this.#runNative(this.#native, texts, opts);
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

  async #runNative(native: NativeBpeEncoderHandle, texts: readonly string[], opts: EncodeOptions): Promise<Int32Array[]> {
    const tok = this.#tokenizer;
    if (opts.bos && tok.bosId < 0) throw new PatentGPTError('E_ARGUMENT', 'encode: bos requested but the model has no BOS piece');
    if (opts.eos && tok.eosId < 0) throw new PatentGPTError('E_ARGUMENT', 'encode: eos requested but the model has no EOS piece');
    const out = new Array<Int32Array>(texts.length);
    for (let start = 0; start < texts.length; ) {
      let end = start;
      let units = 0;
      while (end < texts.length && (end === start || units + texts[end]!.length <= NATIVE_CHUNK_UNITS)) units += texts[end++]!.length;
      const { bytes, offsets } = packTexts(texts.slice(start, end)); // lone surrogates: U+FFFD, as encode() reads them
      const r = await native.encodeBatch(bytes, offsets, this.threads, opts.bos ? tok.bosId : -1, opts.eos ? tok.eosId : -1);
      for (let i = start; i < end; i++) out[i] = r.ids.subarray(r.offsets[i - start]!, r.offsets[i - start + 1]!);
      start = end;
    }
    return out;
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled(this.#ready);
    await this.#busy;
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
