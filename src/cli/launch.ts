// patentgpt launch --nproc N -- <command> [args]: runs N ranks of a patentgpt command on this
// machine, data parallel over MPI (Open MPI's or MPICH's mpirun). Each rank reads its rank from
// the variables mpirun sets (src/distributed/env.ts), takes its share of the cores, reads its shard
// of the data, and rank 0 writes. On a cluster, start the ranks with the cluster's launcher
// instead (srun, mpirun from the job script, a Kubernetes MPIJob): README, "Scale out".
import { spawn, spawnSync } from 'node:child_process';
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
}

/** The mpirun command line that runs `args` (a patentgpt command) as `nproc` ranks. */
export function launchCommandLine(args: readonly string[], flags: LaunchFlags, self = { node: process.execPath, execArgv: process.execArgv, script: process.argv[1]! }): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (typeof process.getuid === 'function' && process.getuid() === 0) {
    // Open MPI refuses root unless told (containers often run as root).
    env.OMPI_ALLOW_RUN_AS_ROOT = '1';
    env.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = '1';
  }
  // A rank waiting in a collective yields its core instead of spinning (Open MPI; MPICH ignores
  // it): ranks share the machine with their own kernel threads and communication threads.
  env.OMPI_MCA_mpi_yield_when_idle ??= '1';
  if (flags.timeout !== undefined) env.PATENTGPT_DIST_TIMEOUT = String(flags.timeout);
  if (flags.bucketMb !== undefined) env.PATENTGPT_BUCKET_MB = String(flags.bucketMb);
  if (flags.overlap === false) env.PATENTGPT_DP_OVERLAP = '0';
  if (flags.zero !== undefined) env.PATENTGPT_ZERO = String(flags.zero);
  if (flags.globalBatch) env.PATENTGPT_GLOBAL_BATCH = '1';
  // Every rank gets the same environment (mpirun passes its own); threads are divided per rank by
  // the ranks themselves, so mpirun must not bind them to one core each (--bind-to none), and more
  // ranks than cores is allowed (--oversubscribe) for small machines and tests.
  const mpiArgs = ['-np', String(flags.nproc), '--oversubscribe', '--bind-to', 'none', self.node, ...self.execArgv, self.script, ...args];
  return { command: flags.mpirun ?? 'mpirun', args: mpiArgs, env };
}

export function launchCommand(): Command {
  return new Command('launch')
    .description('run a training command as N data-parallel ranks on this machine (mpirun; rank 0 writes)')
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
    .argument('<command...>', 'the patentgpt command and its flags, after --')
    .addHelpText('after', [
      '',
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
