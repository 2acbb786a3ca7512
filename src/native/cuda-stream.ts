// A CUDA stream of its own for an inference engine or a trainer (issue 18). Kernels and copies of
// this thread go on its current stream, by default the process's (native/include/patentgpt/
// cuda_ops.h); an owner makes its stream current around its work and the previous one current
// again after. Each switch makes the new stream wait for the old one on the device (an event),
// since the caching allocator is not stream-aware: work stays in issue order across owners, and a
// block freed by one is never touched by another before the first is done with it.
import { addon } from './loader.js';

/** The stream rows of the addon (bindings/runtime.cpp); absent from an addon built before them. */
interface StreamAddon {
  cudaStreamCreate(): number;
  cudaStreamRelease(stream: number): void;
  setCurrentStream(stream: number): number;
}

function streams(): StreamAddon | null {
  const a = addon() as unknown as Partial<StreamAddon>;
  return typeof a.cudaStreamCreate === 'function' ? (a as StreamAddon) : null;
}

export class CudaStream {
  #handle: number;

  private constructor(handle: number) {
    this.#handle = handle;
  }

  /** A stream of its own; null where the addon has no CUDA (or predates streams): then the process stream serves. */
  static create(): CudaStream | null {
    const s = streams();
    const h = s ? s.cudaStreamCreate() : 0;
    return h > 0 ? new CudaStream(h) : null;
  }

  /** Runs `f` (synchronous work) with this stream current, and the previous stream current again after, also on a throw. */
  run<T>(f: () => T): T {
    const leave = this.enter();
    try {
      return f();
    } finally {
      leave();
    }
  }

  /** Makes this stream current until the returned function restores the previous one. */
  enter(): () => void {
    if (this.#handle === 0) return () => {};
    const s = streams()!;
    const prev = s.setCurrentStream(this.#handle);
    return () => void s.setCurrentStream(prev);
  }

  /** Releases the stream after its work (the process stream waits for it); idempotent. */
  dispose(): void {
    if (this.#handle === 0) return;
    streams()!.cudaStreamRelease(this.#handle);
    this.#handle = 0;
  }
}
