// patentgpt serve: an OpenAI-compatible HTTP server over a model folder.
import { Command } from 'commander';

export function serveCommand() {
  return new Command('serve').description('serve a model folder over an OpenAI-compatible HTTP API');
}
