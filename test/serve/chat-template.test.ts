// Chat through a model folder's Hugging Face chat template (tokenizer_config.json), not the
// built-in LLaMA-2 format: the server's prompt ids are the template's, and its greedy answer is
// the engine's on those ids.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine, chatPromptIds } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, savePretrained, validateConfig } from '../../src/models/index.js';
import { SentencePieceTokenizer, loadChatTemplate } from '../../src/tokenizer/index.js';
import { startServer } from './fixture.js';

const zephyr = new URL('../tokenizer/fixtures/chat-templates/zephyr/tokenizer_config.json', import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), 'pg-serve-tpl-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('serve: a folder\'s chat template', () => {
  it('renders chat prompts with tokenizer_config.json\'s template; greedy answers equal the engine\'s', async () => {
    const tok = SentencePieceTokenizer.llama2();
    const dir = join(root, 'zephyr-tiny');
    const model = new LlamaForCausalLM(validateConfig({ ...preset('tiny').config, vocabSize: tok.vocabSize, maxSeqLen: 256 }), { seed: 3, initStd: 0.08 });
    await savePretrained(model, dir, { tokenizer: tok });
    model.dispose();
    copyFileSync(zephyr, join(dir, 'tokenizer_config.json'));
    const messages = [{ role: 'system' as const, content: 'You draft patent claims.' }, { role: 'user' as const, content: 'Claim a bicycle bell.' }];
    const want = Array.from(loadChatTemplate(dir).apply(tok, messages, { addGenerationPrompt: true }).ids);
    expect(want).not.toEqual(chatPromptIds(tok, messages)); // not the [INST] format

    const { app, url } = await startServer(dir);
    const engine = await Engine.fromPretrained(dir, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    try {
      const t = (await (await fetch(`${url}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages }) })).json()) as { tokens: number[] };
      expect(t.tokens).toEqual(want);
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
      const got = await client.chat.completions.create({ model: 'zephyr-tiny', messages, max_tokens: 12, temperature: 0 });
      const ref = await engine.complete(want, { maxTokens: 12, temperature: 0 });
      expect(got.usage!.prompt_tokens).toBe(want.length);
      expect(got.choices[0]!.message.content).toBe(ref.text);
      expect(got.usage!.completion_tokens).toBe(ref.tokens.length);
    } finally {
      engine.close();
      await app.close();
    }
  }, 60_000);
});
