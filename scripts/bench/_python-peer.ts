// What the side-by-side training benches share: a Python peer process spoken to in JSON lines
// (torch, transformers, TRL), and our model + AdamW stepped on one fixed batch, so every bench
// times the same step on our side: forward + loss, backward, clip 1.0, AdamW.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { scope } from '../../src/tensor/index.js';
import { AdamW } from '../../src/train/optimizer.js';

/** One timed training step: seconds in all, per phase (forward, backward, optimizer), the loss. */
export interface StepTiming {
  time: number;
  phases: number[];
  loss: number;
}

/**
 * A Python process answering JSON lines on stdout. Lines that are not JSON objects (library
 * chatter) are skipped; a line read while nobody waits is queued, never lost; the process's exit
 * fails the pending and later reads with its stderr's tail.
 */
export class PythonPeer {
  private readonly queue: Record<string, unknown>[] = [];
  private waiter: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void } | null = null;
  private exitCode: number | null | undefined = undefined;
  private stderr = '';

  private constructor(private readonly name: string, private readonly proc: ChildProcessWithoutNullStreams) {
    proc.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    createInterface({ input: proc.stdout }).on('line', (l) => {
      if (!l.startsWith('{"')) return;
      const v = JSON.parse(l) as Record<string, unknown>;
      const w = this.waiter;
      this.waiter = null;
      if (w) w.resolve(v);
      else this.queue.push(v);
    });
    proc.once('exit', (code) => {
      this.exitCode = code;
      this.waiter?.reject(this.exitError());
      this.waiter = null;
    });
  }

  /** Starts `python args...` with `threads` BLAS/OpenMP threads, offline. */
  static start(name: string, python: string, args: string[], threads: number, env: Record<string, string> = {}): PythonPeer {
    const t = String(threads);
    return new PythonPeer(name, spawn(python, args, {
      env: { ...process.env, OMP_NUM_THREADS: t, MKL_NUM_THREADS: t, HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1', TOKENIZERS_PARALLELISM: 'false', ...env },
    }));
  }

  private exitError(): Error {
    return new Error(`${this.name} exited (${this.exitCode}): ${this.stderr.slice(-1500)}`);
  }

  /** The next JSON line. */
  next<R = Record<string, unknown>>(): Promise<R> {
    const v = this.queue.shift();
    if (v) return Promise.resolve(v as R);
    if (this.exitCode !== undefined) return Promise.reject(this.exitError());
    return new Promise((resolve, reject) => (this.waiter = { resolve: resolve as (v: Record<string, unknown>) => void, reject }));
  }

  /** Writes one line (a JSON request, or a bare command). */
  send(line: string | Record<string, unknown>): void {
    this.proc.stdin.write((typeof line === 'string' ? line : JSON.stringify(line)) + '\n');
  }

  /** send, then the answer. */
  request<R = Record<string, unknown>>(req: string | Record<string, unknown>): Promise<R> {
    this.send(req);
    return this.next<R>();
  }

  stop(): void {
    this.proc.stdin.end();
  }
}

/** Our model and AdamW on one fixed batch of B rows of T tokens (next-token targets, the last of each row unscored). */
export class OursTrainer {
  readonly model: LlamaForCausalLM;
  private readonly opt: AdamW;
  private readonly batch: { tokens: Int32Array; targets: Int32Array; positions: Int32Array; cuSeqlens: Int32Array };

  constructor(cfg: ModelConfig, B: number, T: number, ids: Int32Array) {
    this.model = new LlamaForCausalLM(cfg, { seed: 0 });
    this.opt = new AdamW(this.model.namedParameters(), { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0 });
    const targets = new Int32Array(B * T).fill(-100);
    const positions = new Int32Array(B * T);
    const cuSeqlens = Int32Array.from({ length: B + 1 }, (_, b) => b * T);
    for (let i = 0; i < B * T; i++) {
      positions[i] = i % T;
      if ((i % T) + 1 < T) targets[i] = ids[i + 1]!;
    }
    this.batch = { tokens: ids, targets, positions, cuSeqlens };
  }

  step(): StepTiming {
    const t0 = performance.now();
    const l = scope(() => this.model.loss(this.batch));
    const t1 = performance.now();
    const loss = l.item();
    l.backward();
    l.dispose();
    const t2 = performance.now();
    this.opt.step(1e-4);
    this.opt.zeroGrad();
    const t3 = performance.now();
    return { time: (t3 - t0) / 1e3, phases: [(t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3], loss };
  }

  dispose(): void {
    this.opt.dispose();
    this.model.dispose();
  }
}
