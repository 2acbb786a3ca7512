// patentgpt generate: the streamed stdout is exactly the engine's completion (greedy, stop
// strings, seeded sampling), the summary goes to stderr, and bad input fails with a message.
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type GenerateOptions } from '../../src/infer/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { CliChild, mainTs, tinyFolder } from './infer-cli-fixtures.js';

const generate = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', mainTs, 'generate', ...args], { encoding: 'utf8' });
const generateWithStdin = (input: string, ...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', mainTs, 'generate', ...args], { encoding: 'utf8', input });

describe('patentgpt generate', () => {
  let dir = '';
  let engine: Engine;
  const prompt = 'Claim 1. A method of';
  const want = async (opts: GenerateOptions): Promise<string> => (await engine.complete(prompt, opts)).text;

  beforeAll(async () => {
    dir = await tinyFolder();
    engine = await Engine.fromPretrained(dir, { tokenizer: new ByteTokenizer() });
  });
  afterAll(() => {
    engine?.close();
    if (dir) rmSync(dirname(dir), { recursive: true, force: true });
  });

  it('greedy: stdout equals Engine.generate on the same folder and prompt; the summary is on stderr', async () => {
    const r = generate('--model', dir, '--prompt', prompt, '--max-tokens', '40', '--ignore-eos', '--temperature', '0');
    expect(r.status, r.stderr).toBe(0);
    const text = await want({ maxTokens: 40, ignoreEos: true });
    expect(text.length).toBeGreaterThan(0);
    expect(r.stdout).toBe(text);
    expect(r.stderr).toMatch(/21 prompt tokens, 40 new .* finish: length/);
  }, 60_000);

  it('--stop ends the text before the stop string, as the engine does', async () => {
    const full = await want({ maxTokens: 40, ignoreEos: true });
    const stop = full.slice(12, 14);
    const r = generate('--model', dir, '--prompt', prompt, '--max-tokens', '40', '--ignore-eos', '--stop', stop, '--stop', 'never-there');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(await want({ maxTokens: 40, ignoreEos: true, stop: [stop, 'never-there'] }));
    expect(r.stdout.length).toBeLessThanOrEqual(12);
    expect(r.stderr).toMatch(/finish: stop/);
  }, 60_000);

  it('seeded sampling (temperature, top-p, top-k, seed) gives the engine\'s text for the same options', async () => {
    const opts = { maxTokens: 30, ignoreEos: true, temperature: 1.3, topP: 0.95, topK: 40 };
    const r = generate('--model', dir, '--prompt', prompt, '--max-tokens', '30', '--ignore-eos', '--temperature', '1.3', '--top-p', '0.95', '--top-k', '40', '--seed', '7');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(await want({ ...opts, seed: 7 }));
    expect(r.stdout).not.toBe(await want({ ...opts, temperature: 0 }));
  }, 60_000);

  it("sampling defaults come from generation_config.json (do_sample), as transformers' generate()", async () => {
    const gen = join(dir, 'generation_config.json');
    writeFileSync(gen, JSON.stringify({ bos_token_id: 256, eos_token_id: 257, do_sample: true, temperature: 1.3, top_k: 40 }));
    try {
      const r = generate('--model', dir, '--prompt', prompt, '--max-tokens', '30', '--ignore-eos', '--seed', '11');
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(await want({ maxTokens: 30, ignoreEos: true, temperature: 1.3, topK: 40, seed: 11 }));
    } finally {
      writeFileSync(gen, JSON.stringify({ bos_token_id: 256, eos_token_id: 257 }));
    }
  }, 60_000);

  it("--prompt - reads the prompt from stdin", async () => {
    const r = generateWithStdin(prompt, '--model', dir, '--prompt', '-', '--max-tokens', '20', '--ignore-eos', '--quiet');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(await want({ maxTokens: 20, ignoreEos: true }));
    expect(r.stderr).toBe('');
  }, 60_000);

  it('Ctrl-C (SIGINT) stops the generation: what was printed stays, exit code 130', async () => {
    const long = await tinyFolder(4096); // thousands of tokens: still streaming when the signal comes
    try {
      const child = new CliChild(['generate', '--model', long, '--prompt', prompt, '--max-tokens', '4000', '--ignore-eos']);
      await child.waitFor((c) => c.stdout.length > 0, 'the first text');
      child.child.kill('SIGINT');
      expect(await child.exited, child.stderr).toBe(130);
      const n = Number(/, (\d+) new in .* finish: aborted/.exec(child.stderr)?.[1]);
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThan(4000);
    } finally {
      rmSync(dirname(long), { recursive: true, force: true });
    }
  }, 60_000);

  it('refuses a missing folder and bad flags with a message, exit code 1', () => {
    const missing = generate('--model', join(dir, 'nope'), '--prompt', 'x');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/no model folder there/);
    const bad = generate('--model', dir, '--prompt', 'x', '--top-p', '1.5');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--top-p must be a number in \(0, 1\]/);
    const long = generate('--model', dir, '--prompt', 'x', '--max-tokens', '5000');
    expect(long.status).toBe(1);
    expect(long.stderr).toMatch(/exceed the context of 256 tokens/);
  }, 60_000);
});
