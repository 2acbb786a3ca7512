// patentgpt pretrain: one stage of continued pretraining from a stage config (see examples/).
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { loadStageConfig } from '../train/config.js';
import { pretrain } from '../train/pretrain.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${v}"`);
  return n;
}

export function pretrainCommand(): Command {
  return new Command('pretrain')
    .description('run (or resume) a pretraining stage: stage 1 at a short context, stage 2 with an extended context')
    .requiredOption('--config <file>', 'stage config JSON (see examples/tiny-stage1.json and examples/README.md)')
    .option('--run-dir <dir>', 'run folder (default: the config runDir, else runs/<name>)')
    .option('--data <path...>', 'train on these text files or folders (.txt, .md, .jsonl, .json) instead of the config data')
    .option('--steps <n>', 'override the number of optimizer steps (replaces steps / tokenBudget)', positiveInt)
    .option('--quiet', 'no progress output, only the final summary')
    .option('--restart-from-scratch', 'start the run over when none of its checkpoints verifies (the old metrics.jsonl is kept as metrics.jsonl.before-restart)')
    .addHelpText('after', [
      '',
      'With no data in the config and no --data, the built-in sample corpus is tokenized with the byte tokenizer.',
      'Running the same command again resumes from the newest complete checkpoint; Ctrl-C saves one and exits (code 130).',
      'A run that diverges (non-finite losses, see maxNonFiniteSteps and onDivergence) exits with code 3 and writes no checkpoint from the bad weights.',
      '',
      'Example:',
      '  patentgpt pretrain --config examples/tiny-stage1.json',
      '  patentgpt pretrain --config examples/tiny-stage2.json',
    ].join('\n'))
    .action(async (opts: { config: string; runDir?: string; data?: string[]; steps?: number; quiet?: boolean; restartFromScratch?: boolean }) => {
      const cfg = await loadStageConfig(opts.config, opts.steps !== undefined ? { steps: opts.steps } : {});
      if (opts.runDir) cfg.runDir = path.resolve(opts.runDir);
      const out = process.stderr;
      const result = await pretrain(cfg, {
        configFile: opts.config,
        ...(opts.data ? { dataPaths: opts.data } : {}),
        progress: opts.quiet ? null : out.isTTY ? out : process.stdout,
        log: opts.quiet ? undefined : (m) => (out.isTTY ? out.write(`${m}\n`) : process.stdout.write(JSON.stringify({ event: 'log', message: m }) + '\n')),
        handleSignals: true,
        ...(opts.restartFromScratch ? { restartFromScratch: true } : {}),
      });
      const summary = {
        event: 'summary',
        status: result.status,
        step: result.step,
        runDir: result.runDir,
        checkpoint: result.checkpoint,
        ...(result.valLoss !== undefined ? { valLoss: +result.valLoss.toFixed(4) } : {}),
        tokens: result.tokensSeen,
        ...(result.nonFiniteSteps > 0 ? { nonFiniteSteps: result.nonFiniteSteps } : {}),
        ...(result.rollbacks > 0 ? { rollbacks: result.rollbacks } : {}),
        ...(result.message !== undefined ? { message: result.message } : {}),
      };
      if (out.isTTY && !opts.quiet)
        out.write(`${result.status === 'completed' ? 'done' : result.status} at step ${result.step}; checkpoint ${result.checkpoint}; report ${path.join(result.runDir, 'report.svg')}\n`);
      console.log(JSON.stringify(summary));
      if (result.status === 'diverged') {
        process.stderr.write(`patentgpt pretrain: the run diverged: ${result.message}\n`);
        process.exitCode = 3;
      }
      if (result.status === 'interrupted') process.exitCode = 130;
    });
}
