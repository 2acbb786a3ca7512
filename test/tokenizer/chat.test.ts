// renderChat against the ids transformers' LLaMA-2 chat template gives (golden fixture made by
// scripts/chat-template-fixture.py with transformers and LLaMA-2's tokenizer.model).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderChat, SentencePieceTokenizer, type ChatMessage } from '../../src/tokenizer/index.js';

const golden = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'chat-llama2.json'), 'utf8')) as {
  messages: ChatMessage[];
  text: string;
  ids: number[];
}[];

describe('renderChat (LLaMA-2 [INST] <<SYS>> format)', () => {
  const tok = SentencePieceTokenizer.llama2();
  it('gives the ids and text of transformers\' LLaMA-2 chat template', () => {
    for (const g of golden) {
      const r = renderChat(tok, g.messages, { addGenerationPrompt: g.messages[g.messages.length - 1]!.role === 'user' });
      expect(r.text).toBe(g.text);
      expect(Array.from(r.ids)).toEqual(g.ids);
    }
  });
  it('masks exactly the assistant answers with their EOS, and checks roles', () => {
    const r = renderChat(tok, golden[2]!.messages);
    const answer = Array.from(r.ids).filter((_, i) => r.assistantMask[i] === 1);
    expect(tok.decode(answer)).toBe('A device with a sensor. ');
    expect(answer[answer.length - 1]).toBe(tok.eosId);
    expect(() => renderChat(tok, [{ role: 'assistant', content: 'x' }])).toThrow(/alternate/);
    expect(() => renderChat(tok, golden[2]!.messages, { addGenerationPrompt: true })).toThrow(/user turn/);
  });
});
