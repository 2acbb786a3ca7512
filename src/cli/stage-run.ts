// What the stage commands (patentgpt pretrain, patentgpt sft) share: the common flags, progress
// and log output (a bar on a terminal, JSON lines when piped), the one-line JSON summary, and
// the exit codes (3: diverged, 130: interrupted with a checkpoint).
import * as path from 'node:path';
import { Command } from 'commander';
import { loadStageConfig, type StageConfig, type StageKind } from '../train/config.js';
import type { StageRunOptions } from '../train/stages/common.js';
import type { TrainResult } from '../train/trainer.js';
import { PatentGPTError } from '../errors.js';
import { initDataParallel } from '../distributed/index.js';
import { initStageDataParallel, pinGpu, stageDataParallel, type StageEngine } from '../distributed/stage-engine.js';
import { positiveInt } from './args.js';

export interface StageFlags {
  config: string;
  runDir?: string;
  steps?: number;
  quiet?: boolean;
  restartFromScratch?: boolean;
}

/**
 * A stage command with the flags every stage takes (--config, --run-dir, --steps, --quiet,
 * --restart-from-scratch). With sub-commands (`sft merge`), --config is checked by
 * loadCommandConfig instead of commander, which would demand it of the sub-command too.
 */
export function stageCommand(name: string, description: string, configHelp: string, opts: { subcommands?: boolean } = {}): Command {
  const cmd = new Command(name).description(description);
  return (opts.subcommands ? cmd.option('--config <file>', `${configHelp} (required)`) : cmd.requiredOption('--config <file>', configHelp))
    .option('--run-dir <dir>', 'run folder (default: the config runDir, else runs/<name>)')
    .option('--steps <n>', 'override the number of optimizer steps (replaces steps / tokenBudget)', positiveInt)
    .option('--quiet', 'no progress output, only the final summary')
    .option('--restart-from-scratch', 'start the run over when none of its checkpoints verifies (the old metrics.jsonl is kept as metrics.jsonl.before-restart)');
}

/**
 * The config of a stage command: --steps applied, --run-dir over runDir, and the kind checked.
 * Under a launcher it also makes this rank's data-parallel engine for the config's device
 * (src/distributed/stage-engine.ts: MPI, or NCCL over the TCP rendezvous for a torchrun-style CUDA
 * launch), after narrowing the visible GPUs to this rank's before the config's device check starts CUDA.
 */
export async function loadCommandConfig<K extends StageKind>(kind: K, flags: StageFlags): Promise<Extract<StageConfig, { kind: K }>> {
  if (flags.config === undefined) throw new PatentGPTError('E_ARGUMENT', "error: required option '--config <file>' not specified");
  pinGpu();
  const cfg = await loadStageConfig(flags.config, flags.steps !== undefined ? { steps: flags.steps } : {});
  if (cfg.kind !== kind)
    throw new PatentGPTError('E_CONFIG', `${flags.config}: kind: "${cfg.kind}" is not a ${kind} config; run it with \`patentgpt ${cfg.kind}\``);
  if (flags.runDir) cfg.runDir = path.resolve(flags.runDir);
  await initStageDataParallel((cfg as { device?: 'cpu' | 'cuda' }).device === 'cuda' ? 'cuda' : 'cpu');
  return cfg as Extract<StageConfig, { kind: K }>;
}

/** This rank's engine: the one loadCommandConfig made, else MPI's (or null) as launched. */
function commandEngine(): StageEngine | null {
  const made = stageDataParallel();
  return made !== undefined ? made : initDataParallel();
}

/**
 * Progress, log and signal handling of a stage run from the command line; under a launcher
 * (`patentgpt launch`, mpirun, srun, torchrun-style variables: src/distributed/env.ts) this
 * process's rank and its data-parallel engine (MPI, or NCCL for a torchrun-style CUDA launch), with
 * progress and log lines from rank 0 only.
 */
export function commandRunOptions(flags: StageFlags): StageRunOptions {
  const out = process.stderr;
  const dp = commandEngine();
  const quiet = flags.quiet || (dp !== null && dp.rank !== 0);
  return {
    configFile: flags.config,
    ...(dp ? { rank: dp.rank, worldSize: dp.worldSize, dataParallel: dp } : {}),
    progress: quiet ? null : out.isTTY ? out : process.stdout,
    ...(quiet ? {} : { log: (m: string) => (out.isTTY ? out.write(`${m}\n`) : process.stdout.write(JSON.stringify({ event: 'log', message: m }) + '\n')) }),
    handleSignals: true,
    ...(flags.restartFromScratch ? { restartFromScratch: true } : {}),
  };
}

/**
 * Prints the summary line (and a sentence on a terminal) and sets the exit code. A LoRA run that
 * completed names its final folder, and its adapter where the stage keeps one apart (sft, dpo,
 * ppo; a reward run's final folder has the adapters merged).
 */
export function finishStageCommand(name: string, flags: StageFlags, result: TrainResult & { runDir: string; lora?: { final?: { model: string; adapter?: string } } }): void {
  const out = process.stderr;
  const dp = commandEngine();
  const dataParallelRank = dp?.rank ?? null; // each rank prints its own summary
  const ar = dp?.stats();
  const summary = {
    event: 'summary',
    status: result.status,
    step: result.step,
    runDir: result.runDir,
    checkpoint: result.checkpoint,
    ...(result.lora?.final ? { final: result.lora.final.model, ...(result.lora.final.adapter !== undefined ? { adapter: result.lora.final.adapter } : {}) } : {}),
    ...(result.valLoss !== undefined ? { valLoss: +result.valLoss.toFixed(4) } : {}),
    tokens: result.tokensSeen,
    ...(result.nonFiniteSteps > 0 ? { nonFiniteSteps: result.nonFiniteSteps } : {}),
    ...(result.rollbacks > 0 ? { rollbacks: result.rollbacks } : {}),
    ...(result.message !== undefined ? { message: result.message } : {}),
    ...(dataParallelRank !== null ? { rank: dataParallelRank, optimizerStateBytes: result.optimizerStateBytes } : {}),
    // gradient all-reduce per step: time inside MPI, time the step waited for it, buckets started during backward
    ...(ar && ar.steps > 0
      ? { allReduce: { commMsPerStep: +(ar.commMs / ar.steps).toFixed(3), waitMsPerStep: +(ar.waitMs / ar.steps).toFixed(3), overlappedBuckets: ar.overlapped, buckets: ar.buckets, gradientBytes: ar.gradientBytes } }
      : {}),
  };
  if (out.isTTY && !flags.quiet)
    out.write(`${result.status === 'completed' ? 'done' : result.status} at step ${result.step}; checkpoint ${result.checkpoint}; report ${path.join(result.runDir, 'report.svg')}\n`);
  console.log(JSON.stringify(summary));
  if (result.status === 'diverged') {
    process.stderr.write(`patentgpt ${name}: the run diverged: ${result.message}\n`);
    process.exitCode = 3;
  }
  if (result.status === 'interrupted') process.exitCode = 130;
}
