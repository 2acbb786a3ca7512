// ThreadedEngine: the Engine in a worker thread, so that model steps never run on the caller's
// thread (an HTTP server in the same process answers while it generates). Same generate() and
// stats() as Engine; the weights live in the worker (loaded there from a folder, or copied over
// once from a model in this thread). Tokenizers cross as data: SentencePieceTokenizer (its
// tokenizer.model bytes) or ByteTokenizer.
import type { Worker } from 'node:worker_threads';
import { PatentGPTError, type ErrorCode } from '../errors.js';
import { startWorker } from '../util/worker.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../tokenizer/index.js';
import { DeltaStream, collect, type Completion, type EngineOptions, type EngineStats, type GenerateOptions, type GenerationDelta } from './engine.js';
import type { FromWorker, ToWorker, WorkerInit, WorkerTokenizer } from './worker.js';

function tokenizerData(t: EngineOptions['tokenizer']): WorkerTokenizer {
  if (t === undefined) return null;
  if (t instanceof ByteTokenizer) return { kind: 'byte' };
  if (t instanceof SentencePieceTokenizer) return { kind: 'sentencepiece', bytes: t.serialize() };
  throw new PatentGPTError('E_ARGUMENT', 'ThreadedEngine: the tokenizer must be a SentencePieceTokenizer or a ByteTokenizer (it is rebuilt in the worker)');
}

export class ThreadedEngine {
  readonly #worker: Worker;
  readonly #streams = new Map<number, DeltaStream>();
  readonly #statsWaiters = new Map<number, { resolve: (s: EngineStats) => void; reject: (e: unknown) => void }>();
  #nextId = 0;
  #closed = false;
  /** The longest sequence (prompt + output) the engine in the worker serves, as Engine.maxModelLen. */
  readonly maxModelLen: number;

  private constructor(worker: Worker, maxModelLen: number) {
    this.#worker = worker;
    this.maxModelLen = maxModelLen;
    worker.on('message', (m: FromWorker) => {
      if (m.kind === 'delta') this.#streams.get(m.id)?.push(m.delta);
      else if (m.kind === 'error') this.#streams.get(m.id)?.fail(new PatentGPTError(m.code as ErrorCode, m.message));
      else if (m.kind === 'stats') this.#statsWaiters.get(m.id)?.resolve(m.stats);
      if ((m.kind === 'delta' && m.delta.finishReason !== null) || m.kind === 'error') this.#streams.delete(m.id);
      if (m.kind === 'stats') this.#statsWaiters.delete(m.id);
    });
    worker.on('error', (err) => this.#failAll(err));
    worker.on('exit', () => {
      this.#closed = true; // nothing would answer later calls
      this.#failAll(new PatentGPTError('E_DISPOSED', 'ThreadedEngine: the worker exited'));
    });
  }

  /** An engine whose worker loads the model folder itself (the weights exist once, in the worker). */
  static async fromPretrained(dir: string, opts: EngineOptions = {}): Promise<ThreadedEngine> {
    const { tokenizer, ...engine } = opts;
    return ThreadedEngine.#start({ model: { dir }, engine, tokenizer: tokenizerData(tokenizer) }, []);
  }

  /** An engine over a copy of `model`'s weights (dense LLaMA; the caller keeps its model). */
  static async fromModel(model: LlamaForCausalLM, opts: EngineOptions = {}): Promise<ThreadedEngine> {
    const { tokenizer, ...engine } = opts;
    const params = model.namedParameters().map(([n, p]): [string, Float32Array] => [n, p.toArray() as Float32Array]);
    return ThreadedEngine.#start(
      { model: { config: model.config, params }, engine, tokenizer: tokenizerData(tokenizer) },
      params.map(([, a]) => a.buffer as ArrayBuffer),
    );
  }

  static async #start(init: WorkerInit, transfer: ArrayBuffer[]): Promise<ThreadedEngine> {
    const worker = await startWorker(new URL('./worker.js', import.meta.url), { workerData: init, transferList: transfer });
    const maxModelLen = await new Promise<number>((resolve, reject) => {
      const onMessage = (m: FromWorker): void => {
        if (m.kind === 'ready') resolve(m.maxModelLen);
        else if (m.kind === 'error' && m.id === -1) reject(new PatentGPTError(m.code as ErrorCode, m.message));
        else return;
        worker.off('message', onMessage);
        worker.off('error', reject);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    });
    return new ThreadedEngine(worker, maxModelLen);
  }

  /**
   * As Engine.generate; an invalid request rejects the iterator's first next() (the check runs
   * in the worker). The signal cancels the request there.
   */
  generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): AsyncIterableIterator<GenerationDelta> {
    this.#checkOpen('generate()');
    const { signal, ...rest } = options;
    if (signal?.aborted) throw signal.reason;
    const id = this.#nextId++;
    const stream = new DeltaStream();
    this.#streams.set(id, stream);
    const cancel = (): void => {
      if (!this.#streams.has(id)) return;
      this.#streams.delete(id);
      this.#post({ kind: 'cancel', id });
      stream.fail(signal?.reason ?? new PatentGPTError('E_ABORTED', 'generate: aborted'));
    };
    signal?.addEventListener('abort', cancel, { once: true });
    stream.onReturn = () => {
      this.#streams.delete(id);
      this.#post({ kind: 'cancel', id });
    };
    this.#post({ kind: 'generate', id, prompt: typeof prompt === 'string' ? prompt : Array.from(prompt), options: rest });
    return stream;
  }

  /** Tokens and text of a whole completion (the same Completion as Engine.complete). */
  async complete(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Promise<Completion> {
    this.#checkOpen('complete()');
    return collect(this.generate(prompt, options));
  }

  async stats(): Promise<EngineStats> {
    this.#checkOpen('stats()');
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#statsWaiters.set(id, { resolve, reject });
      this.#post({ kind: 'stats', id });
    });
  }

  /** Fails open requests, frees the worker's model and caches, and ends the worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#post({ kind: 'close' });
    this.#failAll(new PatentGPTError('E_DISPOSED', 'generate: the engine was closed'));
    await closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #checkOpen(op: string): void {
    if (this.#closed) throw new PatentGPTError('E_DISPOSED', `ThreadedEngine: ${op} after close(); its worker has ended: make a new engine`);
  }

  #post(m: ToWorker): void {
    this.#worker.postMessage(m);
  }

  #failAll(err: unknown): void {
    for (const s of this.#streams.values()) s.fail(err);
    this.#streams.clear();
    for (const w of this.#statsWaiters.values()) w.reject(err); // a stats() in flight would otherwise wait forever
    this.#statsWaiters.clear();
  }
}
