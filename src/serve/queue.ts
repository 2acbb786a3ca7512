// Admission control of the HTTP server: at most `maxConcurrency` requests hold a slot (are in
// the engine) and at most `queueSize` more wait for one, first come first served. A request that
// finds both full is refused at once (the server answers 429 with Retry-After) rather than piling
// up unbounded work. A waiting request that is cancelled (client gone, timeout) leaves the queue.
// Plain host bookkeeping, tested alone (test/serve/queue.test.ts).
import { PatentGPTError } from '../errors.js';

/** Gives the slot back; idempotent. */
export type Release = () => void;

interface Waiter {
  grant: (r: Release) => void;
  fail: (err: unknown) => void;
}

export class AdmissionQueue {
  readonly maxConcurrency: number;
  readonly queueSize: number;
  #running = 0;
  readonly #waiting: Waiter[] = [];

  constructor(maxConcurrency: number, queueSize: number) {
    if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1)
      throw new PatentGPTError('E_ARGUMENT', `createServer: maxConcurrency must be an integer >= 1, got ${maxConcurrency}`);
    if (!Number.isInteger(queueSize) || queueSize < 0)
      throw new PatentGPTError('E_ARGUMENT', `createServer: queueSize must be an integer >= 0, got ${queueSize}`);
    this.maxConcurrency = maxConcurrency;
    this.queueSize = queueSize;
  }

  /** Requests holding a slot. */
  get running(): number {
    return this.#running;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * A slot now, a promise of one when the queue has room, or null when it is full (refuse the
   * request). The promise rejects with the signal's reason when it aborts while waiting.
   */
  acquire(signal?: AbortSignal): Release | Promise<Release> | null {
    if (this.#running < this.maxConcurrency) return this.#grant();
    if (this.#waiting.length >= this.queueSize) return null;
    return new Promise<Release>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(w);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal!.reason);
      };
      const w: Waiter = {
        grant: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r);
        },
        fail: reject,
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(w);
    });
  }

  #grant(): Release {
    this.#running++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#running--;
      // Hand the slot straight to the oldest waiter.
      const next = this.#waiting.shift();
      if (next) next.grant(this.#grant());
    };
  }
}
