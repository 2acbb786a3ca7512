#!/usr/bin/env node
// The patentgpt command line: one sub-command per pipeline stage.
import { Command } from 'commander';
import { createRequire } from 'node:module';
import { infoCommand } from './info.js';

const require = createRequire(import.meta.url);
const { version } = require('../../../package.json') as { version: string };

const program = new Command()
  .name('patentgpt')
  .description('PatentGPT from TypeScript: native kernels, training and serving of IP-domain LLMs')
  .version(version);

program.addCommand(infoCommand(version));

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
