// The MPI engine (CPU tensors): pg_mpi.node, a Node module of its own (native/collectives), found at
// run time so the package installs and runs without MPI. It is built where MPI is installed by
// scripts/build-mpi.sh (install-peers runs it; ensureMpiModule runs it on demand).
//
// Each operation is submitted to the module's communication thread and returns a handle at once;
// wait() blocks until it completes or the timeout passes (E_DIST_TIMEOUT naming this rank: MPI
// never times out on its own, so a dead peer would hang every other rank).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { PatentGPTError } from '../errors.js';
import { packageRoot } from '../package.js';

type Buf = Float32Array | Float64Array | Int32Array;

interface MpiModule {
  init(): { rank: number; size: number; threadLevel: number; version: string };
  submit(kind: 'allreduce' | 'allreduce-max' | 'reduce-scatter' | 'reduce-scatter-v' | 'allgather' | 'broadcast' | 'barrier', a: Buf | null, b: Buf | null, root: number, counts?: Int32Array): number;
  wait(id: number, timeoutMs: number): number;
  done(id: number): boolean;
  stats(): { commMs: number; ops: number };
  finalize(timeoutMs: number): void;
  abort(code: number): void;
}

/** Where pg_mpi.node may be: PATENTGPT_MPI_MODULE, then build-mpi/ (scripts/build-mpi.sh). */
export function mpiModuleCandidates(): string[] {
  const list = [path.join(packageRoot(), 'build-mpi', 'pg_mpi.node')];
  if (process.env.PATENTGPT_MPI_MODULE) list.unshift(path.resolve(process.env.PATENTGPT_MPI_MODULE));
  return list;
}

/** The path of pg_mpi.node, or null when it is not built. */
export function findMpiModule(): string | null {
  return mpiModuleCandidates().find((p) => fs.existsSync(p)) ?? null;
}

/**
 * pg_mpi.node, built now (scripts/build-mpi.sh, a few seconds) when it is missing and MPI is
 * installed. Throws E_UNSUPPORTED saying what to install when there is no MPI.
 */
export function ensureMpiModule(): string {
  const found = findMpiModule();
  if (found) return found;
  const root = packageRoot();
  const script = path.join(root, 'scripts', 'build-mpi.sh');
  let out = '';
  try {
    // A checkout has the script (one build at a time); an installed package has the sources only.
    if (fs.existsSync(script)) out = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    else {
      const build = path.join(root, 'build-mpi');
      execFileSync('cmake', ['-S', path.join(root, 'native', 'collectives'), '-B', build, '-DCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      execFileSync('cmake', ['--build', build], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    }
  } catch (err) {
    out = String((err as { stderr?: string }).stderr ?? (err as Error).message);
  }
  const built = findMpiModule();
  if (built) return built;
  throw new PatentGPTError('E_UNSUPPORTED',
    `MPI collectives are not available: pg_mpi.node is not built (${out.trim() || 'scripts/build-mpi.sh built nothing'}). ` +
      'Install MPI (Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin; or run scripts/install-peers.sh), then run scripts/build-mpi.sh');
}

let loaded: MpiModule | null = null;

function load(): MpiModule {
  if (loaded) return loaded;
  const file = ensureMpiModule();
  try {
    loaded = createRequire(import.meta.url)(file) as MpiModule;
  } catch (err) {
    throw new PatentGPTError('E_UNSUPPORTED', `${file}: cannot load the MPI module (${(err as Error).message}); rebuild it with scripts/build-mpi.sh`);
  }
  return loaded;
}

/** Seconds a collective may wait for its peers: PATENTGPT_DIST_TIMEOUT, default 300. */
export function defaultTimeoutMs(env: Record<string, string | undefined> = process.env): number {
  const v = env.PATENTGPT_DIST_TIMEOUT;
  if (v === undefined || v === '') return 300_000;
  const s = Number(v);
  if (!(s > 0) || !Number.isFinite(s)) throw new PatentGPTError('E_CONFIG', `PATENTGPT_DIST_TIMEOUT=${v}: must be a number of seconds > 0`);
  return s * 1000;
}

/** An operation in flight: wait() for it (the arrays it uses must stay untouched until then). */
export interface Pending {
  readonly id: number;
  /** Whether it has completed (wait() still has to be called). */
  done(): boolean;
  /** Blocks until it completes; returns its time inside MPI in ms. */
  wait(): number;
}

/** MPI_COMM_WORLD of this process: rank, size and the collectives over typed arrays. */
export class MpiCommunicator {
  readonly rank: number;
  readonly size: number;
  readonly version: string;
  timeoutMs: number;
  readonly #m: MpiModule;
  /** Arrays of the operations in flight, kept alive until their wait. */
  readonly #live = new Map<number, unknown>();
  #closed = false;

  private constructor(m: MpiModule, info: ReturnType<MpiModule['init']>, timeoutMs: number) {
    this.#m = m;
    this.rank = info.rank;
    this.size = info.size;
    this.version = info.version.split('\n')[0]!.trim();
    this.timeoutMs = timeoutMs;
  }

  /** Initialises MPI (once per process) on the module's communication thread. */
  static init(opts: { timeoutMs?: number } = {}): MpiCommunicator {
    const m = load();
    return new MpiCommunicator(m, m.init(), opts.timeoutMs ?? defaultTimeoutMs());
  }

  #submit(kind: Parameters<MpiModule['submit']>[0], a: Buf | null, b: Buf | null = null, root = 0, counts?: Int32Array): Pending {
    if (this.#closed) throw new PatentGPTError('E_ARGUMENT', `rank ${this.rank}: the communicator is closed`);
    const id = counts ? this.#m.submit(kind, a, b, root, counts) : this.#m.submit(kind, a, b, root);
    this.#live.set(id, [a, b, counts]);
    const m = this.#m;
    const timeout = this.timeoutMs;
    return {
      id,
      done: () => m.done(id),
      wait: () => {
        try {
          return m.wait(id, timeout);
        } finally {
          this.#live.delete(id);
        }
      },
    };
  }

  /** In place: the element-wise sum (or max) over the ranks. */
  allReduceAsync(buf: Buf, op: 'sum' | 'max' = 'sum'): Pending {
    return this.#submit(op === 'sum' ? 'allreduce' : 'allreduce-max', buf);
  }
  allReduce(buf: Buf, op: 'sum' | 'max' = 'sum'): Buf {
    this.allReduceAsync(buf, op).wait();
    return buf;
  }
  /** out (n) = block `rank` of the sum over ranks of input (size * n). */
  reduceScatter(input: Buf, out: Buf): Buf {
    this.#submit('reduce-scatter', input, out).wait();
    return out;
  }
  /** out (counts[rank]) = this rank's block of the sum over ranks of input (blocks of counts[k], in rank order); input untouched. */
  reduceScatterVAsync(input: Buf, out: Buf, counts: Int32Array): Pending {
    return this.#submit('reduce-scatter-v', input, out, 0, counts);
  }
  /** out (size * n) = every rank's input (n), in rank order. */
  allGather(input: Buf, out: Buf): Buf {
    this.#submit('allgather', input, out).wait();
    return out;
  }
  /** In place: root's values on every rank. */
  broadcast(buf: Buf, root: number): Buf {
    this.#submit('broadcast', buf, null, root).wait();
    return buf;
  }
  barrier(): void {
    this.#submit('barrier', null).wait();
  }
  /** Time spent inside MPI collectives so far (the communication thread's), and their count. */
  stats(): { commMs: number; ops: number } {
    return this.#m.stats();
  }
  /** MPI_Finalize (once; the communicator cannot be used after). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#m.finalize(this.timeoutMs);
  }
  /** Ends every rank of the job with `code` (after a fatal error on this one). */
  abort(code = 1): never {
    this.#m.abort(code);
    process.exit(code);
  }
}
