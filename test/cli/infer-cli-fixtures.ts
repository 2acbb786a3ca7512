// Shared by the generate and chat CLI tests: a tiny random model folder with the byte tokenizer,
// and the CLI run as a child process (as a user runs it).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaForCausalLM, preset, savePretrained, validateConfig } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';

export const mainTs = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** A tiny LLaMA over the byte tokenizer, saved as a model folder (config, safetensors, tokenizer record). */
export async function tinyFolder(maxSeqLen = 256): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), 'pg-infer-cli-')), 'model');
  const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen });
  const model = new LlamaForCausalLM(cfg, { seed: 2, initStd: 0.08 });
  await savePretrained(model, dir, { tokenizer: new ByteTokenizer() });
  model.dispose();
  return dir;
}

/** The CLI in a child process, its output gathered as it comes. */
export class CliChild {
  readonly child: ChildProcessWithoutNullStreams;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', mainTs, ...args], { stdio: 'pipe' });
    this.child.stdout.setEncoding('utf8').on('data', (s: string) => (this.stdout += s));
    this.child.stderr.setEncoding('utf8').on('data', (s: string) => (this.stderr += s));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Resolves once `pred` holds for the output (checked on every chunk); rejects if the child exits first. */
  async waitFor(pred: (c: CliChild) => boolean, what: string): Promise<void> {
    if (pred(this)) return;
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!pred(this)) return;
        done();
        resolve();
      };
      const onExit = (): void => {
        done();
        reject(new Error(`the CLI exited before ${what}; stderr:\n${this.stderr}`));
      };
      const done = (): void => {
        this.child.stdout.off('data', check);
        this.child.stderr.off('data', check);
        this.child.off('exit', onExit);
      };
      this.child.stdout.on('data', check);
      this.child.stderr.on('data', check);
      this.child.on('exit', onExit);
    });
  }
}

export function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}
