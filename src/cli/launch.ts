// patentgpt launch --nproc N -- <command> [args]: runs N ranks of a patentgpt command on this
// machine. A CPU stage runs data parallel over MPI (Open MPI's or MPICH's mpirun); a CUDA stage
// (the config's device) torchrun-style, without MPI: N processes with RANK, WORLD_SIZE,
// LOCAL_RANK and MASTER_ADDR/MASTER_PORT, each on its LOCAL_RANK's GPU, NCCL bootstrapped by the
// TCP rendezvous. Each rank reads its rank from those variables (src/distributed/env.ts), takes its
// share of the cores, reads its shard of the data, and rank 0 writes. On a cluster, start the
// ranks with the cluster's launcher instead (srun, mpirun from the job script, torchrun, a
// Kubernetes MPIJob or indexed Job): README, "Scale out".
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { Command } from 'commander';
import { PatentGPTError } from '../errors.js';
import { ensureMpiModule } from '../distributed/mpi.js';
import { positiveInt } from './args.js';

export interface LaunchFlags {
  nproc: number;
  timeout?: number;
  mpirun?: string;
  bucketMb?: number;
  overlap?: boolean;
  zero?: number;
  globalBatch?: boolean;
  /** 'mpi' (mpirun) or 'nccl' (torchrun-style, no MPI); default: by the config's device. */
  backend?: 'mpi' | 'nccl';
  masterPort?: number;
}

type Self = { node: string; execArgv: string[]; script: string };
const thisProcess = (): Self => ({ node: process.execPath, execArgv: process.execArgv, script: process.argv[1]! });

/** The launch options every rank reads from its environment (src/distributed/data-parallel.ts envOptions). */
function launchOptionsEnv(env: NodeJS.ProcessEnv, flags: LaunchFlags): void {
  if (flags.timeout !== undefined) env.PATENTGPT_DIST_TIMEOUT = String(flags.timeout);
  if (flags.bucketMb !== undefined) env.PATENTGPT_BUCKET_MB = String(flags.bucketMb);
  if (flags.overlap === false) env.PATENTGPT_DP_OVERLAP = '0';
  if (flags.zero !== undefined) env.PATENTGPT_ZERO = String(flags.zero);
  if (flags.globalBatch) env.PATENTGPT_GLOBAL_BATCH = '1';
}

/**
 * The device of the stage config the command names (--config FILE): 'cuda' when its device is
 * "cuda", else 'cpu' (no config, or one that cannot be read: the ranks report that themselves).
 */
export function commandDevice(args: readonly string[]): 'cpu' | 'cuda' {
  let file: string | undefined;
  args.forEach((a, i) => {
    if (a === '--config') file = args[i + 1];
    else if (a.startsWith('--config=')) file = a.slice('--config='.length);
  });
  if (!file) return 'cpu';
  try {
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as { device?: unknown };
    return raw.device === 'cuda' ? 'cuda' : 'cpu';
  } catch {
    return 'cpu';
  }
}

/** The engine a launch uses: --backend, else NCCL for a CUDA stage (torchrun-style, no mpirun) and MPI for a CPU one. */
export function launchBackend(args: readonly string[], flags: Pick<LaunchFlags, 'backend'>): 'mpi' | 'nccl' {
  return flags.backend ?? (commandDevice(args) === 'cuda' ? 'nccl' : 'mpi');
}

/**
 * The torchrun-style processes that run `args` as `nproc` ranks on this machine: each with RANK,
 * WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and the rendezvous at 127.0.0.1:port, and none of an
 * MPI launcher's variables (so no rank mistakes this for an MPI job).
 */
export function torchrunCommandLines(args: readonly string[], flags: LaunchFlags, port: number, self: Self = thisProcess()): { command: string; args: string[]; env: NodeJS.ProcessEnv }[] {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(OMPI_|PMIX_|PMI_)/.test(k)) base[k] = v;
  launchOptionsEnv(base, flags);
  return Array.from({ length: flags.nproc }, (_, r) => ({
    command: self.node,
    args: [...self.execArgv, self.script, ...args],
    env: {
      ...base, RANK: String(r), WORLD_SIZE: String(flags.nproc), LOCAL_RANK: String(r), LOCAL_WORLD_SIZE: String(flags.nproc),
      MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port),
    },
  }));
}

/** The mpirun command line that runs `args` (a patentgpt command) as `nproc` ranks. */
export function launchCommandLine(args: readonly string[], flags: LaunchFlags, self: Self = thisProcess()): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (typeof process.getuid === 'function' && process.getuid() === 0) {
    // Open MPI refuses root unless told (containers often run as root).
    env.OMPI_ALLOW_RUN_AS_ROOT = '1';
    env.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = '1';
  }
  // A rank waiting in a collective yields its core instead of spinning (Open MPI; MPICH ignores
  // it): ranks share the machine with their own kernel threads and communication threads.
  env.OMPI_MCA_mpi_yield_when_idle ??= '1';
  launchOptionsEnv(env, flags);
  // Every rank gets the same environment (mpirun passes its own); threads are divided per rank by
  // the ranks themselves, so mpirun must not bind them to one core each (--bind-to none), and more
  // ranks than cores is allowed (--oversubscribe) for small machines and tests.
  const mpiArgs = ['-np', String(flags.nproc), '--oversubscribe', '--bind-to', 'none', self.node, ...self.execArgv, self.script, ...args];
  return { command: flags.mpirun ?? 'mpirun', args: mpiArgs, env };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Each line of `stream` on stderr, prefixed by the rank (several ranks write at once). */
function prefixLines(stream: NodeJS.ReadableStream, prefix: string): void {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const l of lines) process.stderr.write(`${prefix}${l}\n`);
  });
  stream.on('end', () => {
    if (rest) process.stderr.write(`${prefix}${rest}\n`);
  });
}

/** How long the other ranks may take to stop by themselves after one failed, before SIGTERM (then SIGKILL as long again). */
const STOP_GRACE_MS = 10_000;

/**
 * Runs the ranks torchrun-style (no MPI) and waits for them; returns the job's exit code. A rank
 * that fails stops the job: the others get STOP_GRACE_MS to end by themselves (each reports its
 * own error), then SIGTERM, then SIGKILL. Ctrl-C: SIGTERM to every rank (each finishes its step
 * and saves a checkpoint), again: SIGKILL.
 */
async function runTorchrunStyle(command: readonly string[], flags: LaunchFlags): Promise<number> {
  const port = flags.masterPort ?? (await freePort());
  const children: ChildProcess[] = torchrunCommandLines(command, flags, port).map((l, r) => {
    const c = spawn(l.command, l.args, { env: l.env, stdio: ['ignore', 'inherit', 'pipe'] });
    prefixLines(c.stderr!, `[rank ${r}] `);
    return c;
  });
  const running = new Set(children);
  const signalAll = (sig: NodeJS.Signals): void => {
    for (const c of running) c.kill(sig);
  };
  let asked = 0;
  const forward = (sig: NodeJS.Signals): void => {
    if (asked++ === 0) {
      process.stderr.write(`patentgpt launch: ${sig}: the ranks finish their step and save a checkpoint (again to stop at once)\n`);
      signalAll('SIGTERM');
    } else signalAll('SIGKILL');
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  let failed: { rank: number; code: number } | null = null;
  const timers: NodeJS.Timeout[] = [];
  await Promise.all(children.map((c, rank) => new Promise<void>((resolve) => c.on('exit', (code, sig) => {
    running.delete(c);
    const rc = code ?? (sig ? 128 + 15 : 1);
    if (rc !== 0 && failed === null) {
      failed = { rank, code: rc };
      timers.push(setTimeout(() => signalAll('SIGTERM'), STOP_GRACE_MS), setTimeout(() => signalAll('SIGKILL'), 2 * STOP_GRACE_MS));
    }
    resolve();
  }))));
  for (const t of timers) clearTimeout(t);
  process.off('SIGINT', forward);
  process.off('SIGTERM', forward);
  const f = failed as { rank: number; code: number } | null;
  if (asked > 0 && f !== null) {
    process.stderr.write('patentgpt launch: interrupted; run the same launch again to resume from its checkpoint\n');
    return 130;
  }
  if (f !== null) {
    process.stderr.write(`patentgpt launch: rank ${f.rank} ended with code ${f.code} (see the [rank N] messages above); run the same launch again to resume from the last checkpoint\n`);
    return f.code;
  }
  return 0;
}

export function launchCommand(): Command {
  return new Command('launch')
    .description('run a training command as N data-parallel ranks on this machine (mpirun for CPU, torchrun-style NCCL for CUDA; rank 0 writes)')
    .requiredOption('--nproc <n>', 'number of ranks', positiveInt)
    .option('--timeout <seconds>', 'how long a collective waits for its peers before this rank fails (default 300)', positiveInt)
    .option('--bucket-mb <mb>', 'gradient bucket size in MB (default 25)', (v: string) => {
      const x = Number(v);
      if (!(x > 0 && Number.isFinite(x))) throw new PatentGPTError('E_ARGUMENT', `--bucket-mb: a number of MB > 0, got ${v}`);
      return x;
    })
    .option('--no-overlap', 'reduce the gradients only after backward (no buckets during backward)')
    .option('--zero <stage>', 'ZeRO stage: 0 (default), 1 (optimizer state sharded across the ranks, about 1/N each) or 2 (and the gradients)', (v: string) => {
      if (!['0', '1', '2'].includes(v)) throw new PatentGPTError('E_ARGUMENT', `--zero: 0, 1 or 2, got ${v}`);
      return Number(v);
    })
    .option('--global-batch', "the config's batchSize x gradAccum is the global batch: the ranks split gradAccum, so a run resumes on another number of ranks (every stage)")
    .option('--mpirun <path>', 'the mpirun to use (default: mpirun on PATH)')
    .option('--backend <engine>', "'mpi' (mpirun) or 'nccl' (torchrun-style processes with MASTER_ADDR/MASTER_PORT, no MPI); default: nccl when the config's device is cuda, else mpi", (v: string) => {
      if (v !== 'mpi' && v !== 'nccl') throw new PatentGPTError('E_ARGUMENT', `--backend: mpi or nccl, got ${v}`);
      return v;
    })
    .option('--master-port <port>', 'the rendezvous port of a torchrun-style (nccl) launch (default: a free one)', positiveInt)
    .argument('<command...>', 'the patentgpt command and its flags, after --')
    .addHelpText('after', [
      '',
      'A CPU stage runs under mpirun (MPI reduces CPU tensors); a CUDA stage (device: "cuda") as N torchrun-style',
      'processes without MPI, one GPU each (LOCAL_RANK), NCCL bootstrapped at 127.0.0.1:--master-port.',
      'Each rank reads its shard of the data; the global batch is batchSize x gradAccum x N, and the losses',
      'equal those of one rank with that global batch. A rank that dies stops the others (non-zero exit);',
      'running the same launch again resumes from the last checkpoint.',
      '',
      'Example:',
      '  patentgpt launch --nproc 2 -- pretrain --config examples/tiny-stage1.json',
      '',
      'On a cluster, start `patentgpt pretrain ...` with srun, mpirun or a Kubernetes MPIJob instead: each rank',
      'reads RANK/WORLD_SIZE/LOCAL_RANK, OMPI_COMM_WORLD_*, SLURM_PROCID/SLURM_STEP_NUM_TASKS/SLURM_LOCALID or JOB_COMPLETION_INDEX + WORLD_SIZE.',
    ].join('\n'))
    .action(async (command: string[], flags: LaunchFlags) => {
      if (launchBackend(command, flags) === 'nccl') {
        process.exitCode = await runTorchrunStyle(command, flags);
        return;
      }
      const mpirun = flags.mpirun ?? 'mpirun';
      const probe = spawnSync(mpirun, ['--version'], { encoding: 'utf8' });
      if (probe.error || probe.status !== 0)
        throw new PatentGPTError('E_UNSUPPORTED',
          `launch: ${mpirun} is not available (${probe.error?.message ?? probe.stderr.trim()}); install MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev, or scripts/install-peers.sh) or pass --mpirun`);
      ensureMpiModule();
      const line = launchCommandLine(command, flags);
      const child = spawn(line.command, line.args, { env: line.env, stdio: 'inherit' });
      // First Ctrl-C (or SIGTERM): SIGUSR1, which mpirun forwards and the ranks take as a request
      // to stop with a checkpoint; again: the signal itself, on which mpirun ends the job.
      let asked = 0;
      const forward = (sig: NodeJS.Signals): void => {
        if (asked++ === 0) {
          process.stderr.write(`patentgpt launch: ${sig}: the ranks finish their step and save a checkpoint (again to stop at once)\n`);
          child.kill('SIGUSR1');
        } else child.kill(sig);
      };
      process.on('SIGINT', forward);
      process.on('SIGTERM', forward);
      const code = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 128 + 15 : 1))));
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      if (asked > 0 && code !== 0) {
        process.stderr.write('patentgpt launch: interrupted; run the same launch again to resume from its checkpoint\n');
        process.exitCode = 130;
        return;
      }
      if (code !== 0) process.stderr.write(`patentgpt launch: the job ended with code ${code} (see the rank messages above); run the same launch again to resume from the last checkpoint\n`);
      process.exitCode = code;
    });
}
