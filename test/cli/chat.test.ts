// patentgpt chat driven through stdin in a child process: each turn's prompt is the folder's chat
// template over the whole conversation (the second includes the first question and answer), the
// answers are the engine's greedy ones, Ctrl-C (SIGINT) mid-answer stops that answer and keeps
// the session, and a second Ctrl-C at the prompt exits.
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, chatPromptIds } from '../../src/infer/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { CliChild, count, tinyFolder } from './infer-cli-fixtures.js';

const TEMPLATE =
  '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}';

/** The [prompt] lines of --verbose, as the strings the model read. */
const prompts = (stderr: string): string[] => [...stderr.matchAll(/\[prompt\] (.*)$/gm)].map((m) => JSON.parse(m[1]!) as string);

describe('patentgpt chat', () => {
  let dir = '';
  let engine: Engine;
  const tok = new ByteTokenizer();

  beforeAll(async () => {
    // A long context, so an answer of thousands of tokens is still streaming when Ctrl-C comes.
    dir = await tinyFolder(4096);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: TEMPLATE, bos_token: '<s>', eos_token: '</s>' }));
    engine = await Engine.fromPretrained(dir, { tokenizer: tok });
  });
  afterAll(() => {
    engine?.close();
    if (dir) rmSync(dirname(dir), { recursive: true, force: true });
  });

  it('two turns on the chat template: the second prompt holds the first exchange; answers are the engine\'s greedy ones', async () => {
    const chat = new CliChild(['chat', '--model', dir, '--temperature', '0', '--max-tokens', '16', '--verbose']);
    chat.child.stdin.write('What is claimed?\n');
    await chat.waitFor((c) => count(c.stderr, '[finish]') === 1, 'the first answer');
    chat.child.stdin.write('And the abstract?\n');
    await chat.waitFor((c) => count(c.stderr, '[finish]') === 2, 'the second answer');
    chat.child.stdin.end(); // EOF exits
    expect(await chat.exited, chat.stderr).toBe(0);

    const first = '<|user|>What is claimed?<|end|><|assistant|>';
    const answer1 = (await engine.complete(Array.from(tok.encode(first)), { maxTokens: 16 })).text;
    const second = `${first}${answer1}<|end|><|user|>And the abstract?<|end|><|assistant|>`;
    expect(prompts(chat.stderr)).toEqual([first, second]);
    const answer2 = (await engine.complete(Array.from(tok.encode(second)), { maxTokens: 16 })).text;
    expect(chat.stdout).toBe(`${answer1}\n${answer2}\n`);
  }, 60_000);

  it('Ctrl-C mid-answer stops the answer and keeps the session; Ctrl-C twice at the prompt exits', async () => {
    const chat = new CliChild(['chat', '--model', dir, '--temperature', '0', '--max-tokens', '4000', '--ignore-eos', '--verbose']);
    chat.child.stdin.write('Describe the invention.\n');
    await chat.waitFor((c) => c.stdout.length > 0, 'the answer starting');
    chat.child.kill('SIGINT');
    await chat.waitFor((c) => /\[stopped\] \d+ tokens/.test(c.stderr), 'the answer stopping');
    const stopped = Number(/\[stopped\] (\d+) tokens/.exec(chat.stderr)![1]);
    expect(stopped).toBeLessThan(4000);
    const partial = chat.stdout.replace(/\n$/, '');

    // The session is alive: a next question is answered, after the stopped exchange.
    chat.child.stdin.write('Shorter, please.\n');
    await chat.waitFor((c) => count(c.stderr, '[prompt]') === 2, 'the second prompt');
    expect(prompts(chat.stderr)[1]).toBe(`<|user|>Describe the invention.<|end|><|assistant|>${partial}<|end|><|user|>Shorter, please.<|end|><|assistant|>`);
    chat.child.kill('SIGINT'); // stops the second answer too
    await chat.waitFor((c) => count(c.stderr, '[stopped]') === 2, 'the second answer stopping');

    chat.child.kill('SIGINT'); // at the prompt: asks for another
    await chat.waitFor((c) => c.stderr.includes('Ctrl-C again'), 'the exit hint');
    chat.child.kill('SIGINT');
    expect(await chat.exited, chat.stderr).toBe(0);
  }, 60_000);

  it("without a template: LLaMA-2's [INST] layout (what sft trains with); /reset clears; the oldest exchange goes when the context is full", async () => {
    const plain = await tinyFolder(256); // no tokenizer_config.json
    const layout = (...turns: string[]): string =>
      tok.decode(chatPromptIds(tok, turns.map((content, i) => ({ role: i % 2 === 0 ? ('user' as const) : ('assistant' as const), content }))));
    try {
      const short = new CliChild(['chat', '--model', plain, '--temperature', '0', '--max-tokens', '8', '--verbose']);
      short.child.stdin.write('Hi\n');
      await short.waitFor((c) => count(c.stderr, '[finish]') === 1, 'the first answer');
      short.child.stdin.write('/reset\nThird\n');
      await short.waitFor((c) => count(c.stderr, '[finish]') === 2, 'the answer after /reset');
      short.child.stdin.end();
      expect(await short.exited, short.stderr).toBe(0);
      expect(short.stderr).toContain('(conversation cleared)');
      expect(prompts(short.stderr)).toEqual([layout('Hi'), layout('Third')]);

      // 200-token answers in a 256-token context: the second question no longer fits after the first exchange.
      const long = new CliChild(['chat', '--model', plain, '--temperature', '0', '--max-tokens', '200', '--ignore-eos', '--verbose']);
      long.child.stdin.write('Hi\n');
      await long.waitFor((c) => count(c.stderr, '[finish]') === 1, 'the first answer');
      long.child.stdin.write('Again\n');
      await long.waitFor((c) => count(c.stderr, '[finish]') === 2, 'the second answer');
      long.child.stdin.end();
      expect(await long.exited, long.stderr).toBe(0);
      expect(long.stderr).toContain('outgrew the context');
      expect(prompts(long.stderr)).toEqual([layout('Hi'), layout('Again')]);
    } finally {
      rmSync(dirname(plain), { recursive: true, force: true });
    }
  }, 60_000);
});
