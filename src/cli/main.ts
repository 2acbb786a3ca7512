#!/usr/bin/env node
// The patentgpt command line: one sub-command per pipeline stage.
import { Command } from 'commander';
import { packageVersion } from '../package.js';
import { infoCommand } from './info.js';
import { modelCommand } from './model.js';
import { dataCommand } from './data.js';
import { synthCommand } from './synth.js';
import { tokenizerCommand } from './tokenizer.js';
import { exportCommand } from './export.js';
import { evalCommand } from './eval.js';
import { pretrainCommand } from './pretrain.js';
import { sftCommand } from './sft.js';
import { rewardCommand } from './reward.js';
import { ppoCommand } from './ppo.js';
import { dpoCommand } from './dpo.js';
import { generateCommand } from './generate.js';
import { chatCommand } from './chat.js';
import { serveCommand } from './serve.js';
import { demoCommand } from './demo.js';
import { launchCommand } from './launch.js';
import { planCommand } from './plan.js';
import { quantizeCommand } from './quantize.js';

const version = packageVersion();

// `patentgpt ... | head` closes the pipe early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const program = new Command()
  .name('patentgpt')
  .description('PatentGPT from TypeScript: native kernels, training and serving of IP-domain LLMs')
  .version(version);

program.addCommand(infoCommand(version));
program.addCommand(modelCommand());
program.addCommand(dataCommand().addCommand(synthCommand()));
program.addCommand(tokenizerCommand());
program.addCommand(exportCommand());
program.addCommand(evalCommand());
program.addCommand(pretrainCommand());
program.addCommand(sftCommand());
program.addCommand(rewardCommand());
program.addCommand(ppoCommand());
program.addCommand(dpoCommand());
program.addCommand(generateCommand());
program.addCommand(chatCommand());
program.addCommand(serveCommand());
program.addCommand(demoCommand());
program.addCommand(launchCommand());
program.addCommand(planCommand());
program.addCommand(quantizeCommand());

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
