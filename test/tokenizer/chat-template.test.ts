// Hugging Face chat templates (src/tokenizer/chat-template.ts) against transformers'
// apply_chat_template: the committed fixture test/tokenizer/fixtures/chat-templates/parity.json
// (made by scripts/chat-template-parity.py with transformers 5.18 and LLaMA-2's tokenizer.model)
// always, and the script run live where transformers and the LLaMA-2 tokenizer.model are present.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { ChatTemplate, loadChatTemplate, PieceType, renderChat, SentencePieceTokenizer, type ChatMessage, type TemplateMessage } from '../../src/tokenizer/index.js';
import { buildExample, chatRenderer } from '../../src/data/sft/index.js';
import { findPython } from '../../scripts/bench/_peers.js';
import { llama2ModelPath } from './corpus.js';

interface Row {
  config: string;
  template: string | null;
  messages: TemplateMessage[];
  add_generation_prompt: boolean;
  text?: string;
  ids?: number[];
  assistant_mask?: number[];
  error?: string;
}
const FIX = join(import.meta.dirname, 'fixtures', 'chat-templates');
const root = join(import.meta.dirname, '..', '..');
const golden = JSON.parse(readFileSync(join(FIX, 'parity.json'), 'utf8')) as Row[];
const tok = SentencePieceTokenizer.llama2();
const templates = new Map<string, ChatTemplate>();
const templateOf = (r: Row): ChatTemplate => {
  const key = `${r.config}/${r.template ?? 'default'}`;
  let t = templates.get(key);
  if (!t) templates.set(key, (t = loadChatTemplate(join(FIX, r.config, 'tokenizer_config.json'), r.template ?? undefined)));
  return t;
};

/** Compares every row with what our implementation gives; returns how many rows were compared. */
function checkRows(rows: Row[]): number {
  let n = 0;
  for (const r of rows) {
    const t = templateOf(r);
    const where = `${r.config}/${r.template ?? 'default'} ${JSON.stringify(r.messages).slice(0, 80)}`;
    if (r.error !== undefined) {
      let err: unknown;
      try {
        t.apply(tok, r.messages, { addGenerationPrompt: r.add_generation_prompt });
      } catch (e) {
        err = e;
      }
      expect(err, where).toBeInstanceOf(PatentGPTError);
      expect((err as PatentGPTError).code).toBe('E_DATA');
      expect((err as PatentGPTError).message).toContain(r.error);
    } else {
      const out = t.apply(tok, r.messages, { addGenerationPrompt: r.add_generation_prompt });
      expect(out.text, where).toBe(r.text);
      expect(Array.from(out.ids), where).toEqual(r.ids);
      if (r.assistant_mask) expect(Array.from(out.assistantMask), where).toEqual(r.assistant_mask);
    }
    n++;
  }
  return n;
}

describe('Hugging Face chat templates', () => {
  it("renders and tokenizes as transformers' apply_chat_template (LLaMA-2, Mistral, ChatML, Zephyr, LLaMA-3, Gemma; committed fixture)", () => {
    expect(new Set(golden.map((r) => r.config)).size).toBe(7);
    expect(golden.filter((r) => r.error === undefined && r.messages[0]!.role === 'system').length).toBeGreaterThanOrEqual(6);
    expect(checkRows(golden)).toBe(golden.length);
  });

  it("gives transformers' assistant mask for {% generation %} blocks", () => {
    const rows = golden.filter((r) => r.assistant_mask);
    expect(rows.length).toBeGreaterThan(2);
    for (const r of rows) {
      const out = templateOf(r).apply(tok, r.messages, { addGenerationPrompt: r.add_generation_prompt });
      expect(out.maskFrom).toBe('generation');
      expect(Array.from(out.assistantMask)).toEqual(r.assistant_mask);
    }
    // Not a vacuous check: a conversation with answers has some 1s.
    expect(rows.some((r) => r.assistant_mask!.includes(1))).toBe(true);
  });

  it('masks, by rendered prefixes, exactly each assistant answer and what closes it', () => {
    const messages: TemplateMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Claim 1?' },
      { role: 'assistant', content: 'A device.' },
      { role: 'user', content: '权利要求2？' },
      { role: 'assistant', content: '一种方法。' },
    ];
    const masked = (t: ChatTemplate): string[] => {
      const r = t.apply(tok, messages);
      expect(r.maskFrom).toBe('prefix');
      // Runs of masked tokens as text, control tokens (BOS, EOS) written out.
      const runs: string[] = [];
      let cur: number[] = [];
      let open = false;
      // Pieces as text (▁ as a space, byte pieces as UTF-8), so no leading space is dropped.
      const text = (ids: number[]): string => {
        const bytes = ids.flatMap((id) =>
          tok.pieceType(id) === PieceType.BYTE ? [parseInt(tok.idToPiece(id).slice(3, 5), 16)] : [...Buffer.from(tok.idToPiece(id).replaceAll('▁', ' '))],
        );
        return Buffer.from(bytes).toString('utf8');
      };
      r.assistantMask.forEach((m, i) => {
        if (m) cur.push(r.ids[i]!);
        else if (cur.length) runs.push(text(cur)), (cur = []);
        open = m === 1;
      });
      if (cur.length) runs.push(text(cur));
      expect(open).toBe(r.assistantMask[r.assistantMask.length - 1] === 1);
      return runs;
    };
    // LLaMA-2: " answer </s>", as renderChat masks it (the leading space rides on the first word).
    const llama = loadChatTemplate(join(FIX, 'llama2-chat'));
    expect(masked(llama)).toEqual([' A device. </s>', ' 一种方法。 </s>']);
    const legacy = renderChat(tok, messages as never);
    const r = llama.apply(tok, messages);
    expect(Array.from(r.ids)).toEqual(Array.from(legacy.ids));
    expect(Array.from(r.assistantMask)).toEqual(Array.from(legacy.assistantMask));
    // ChatML: the answer, <|im_end|> and its newline; never the "<|im_start|>assistant\n" prompt.
    expect(masked(loadChatTemplate(join(FIX, 'chatml-qwen')))).toEqual(['A device.<|im_end|>\n', '一种方法。<|im_end|>\n']);
    expect(masked(loadChatTemplate(join(FIX, 'zephyr')))).toEqual(['A device.</s>\n', '一种方法。</s>\n']);
    // The same through the renderer SFT uses.
    const render = llama.renderer(tok);
    expect(Array.from(render(messages).assistantMask)).toEqual(Array.from(r.assistantMask));
  });

  it('reads the list form by name, AddedToken objects, extra kwargs, and refuses bad configs clearly', () => {
    const mistral = loadChatTemplate(join(FIX, 'mistral-instruct'));
    expect(mistral.name).toBe('default');
    expect(loadChatTemplate(join(FIX, 'mistral-instruct'), 'v0.1').source).toContain("raise_exception('Only user and assistant");
    expect(() => loadChatTemplate(join(FIX, 'mistral-instruct'), 'tool_use')).toThrow(/no chat template named "tool_use".*"default", "v0.1"/);
    expect(loadChatTemplate(join(FIX, 'llama2-chat')).specialTokens).toMatchObject({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' });
    const t = new ChatTemplate({ config: { chat_template: '{{ bos_token }}{{ greeting }} {{ messages | length }}{% if add_generation_prompt %}!{% endif %}\n', bos_token: { content: '<s>' } } });
    expect(t.render([{ role: 'user', content: 'x' }], { kwargs: { greeting: 'hi' }, addGenerationPrompt: true })).toBe('<s>hi 1!');
    expect(() => new ChatTemplate({ config: { bos_token: '<s>' } })).toThrow(/no chat_template/);
    expect(() => new ChatTemplate({ config: { chat_template: '{% if %}' } })).toThrow(/not valid Jinja/);
    // A template bug is E_CONFIG, the conversation's fault (raise_exception) is E_DATA.
    const broken = new ChatTemplate({ config: { chat_template: '{{ messages[0].content.nosuchmethod() }}' } });
    expect(() => broken.render([{ role: 'user', content: 'x' }])).toThrow(expect.objectContaining({ code: 'E_CONFIG' }));
    const llama = loadChatTemplate(join(FIX, 'llama2-chat'));
    expect(() => llama.renderer(tok)([{ role: 'assistant', content: 'x' }])).toThrow(expect.objectContaining({ code: 'E_DATA', message: expect.stringMatching(/refused the conversation: Conversation roles must alternate/) }));
  });

  it('tokenizes a special token written by the template or typed in content as its id, once', () => {
    const t = new ChatTemplate({ config: { chat_template: "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}", bos_token: '<s>', eos_token: '</s>' } });
    const r = t.apply(tok, [{ role: 'user', content: 'a </s>b' }]);
    expect(Array.from(r.ids.slice(0, 1))).toEqual([tok.bosId]);
    expect(Array.from(r.ids).filter((id) => id === tok.bosId).length).toBe(1);
    expect(Array.from(r.ids).filter((id) => id === tok.eosId).length).toBe(2);
    const unknown = new ChatTemplate({ config: { chat_template: '{{ eos_token }}', eos_token: '<|im_end|>' } });
    expect(() => unknown.apply(tok, [])).toThrow(/not in the tokenizer's vocabulary/);
    const added = new ChatTemplate({ config: { chat_template: '<|im_start|>x', added_tokens_decoder: { '32000': { content: '<|im_start|>', special: true } } } });
    expect(added.specialStrings()).toContain('<|im_start|>');
    expect(() => added.apply(tok, [])).toThrow(/"<\|im_start\|>" is in the rendered text but not in the tokenizer's vocabulary/);
    // An assistant turn first: the prefix before it is the template's BOS alone, never masked.
    const first = new ChatTemplate({ config: { chat_template: '{{ bos_token }}{% for m in messages %}{{ m.content + eos_token }}{% endfor %}', bos_token: '<s>', eos_token: '</s>' } });
    const f = first.apply(tok, [{ role: 'assistant', content: 'Yes.' }]);
    expect(f.ids[0]).toBe(tok.bosId);
    expect(Array.from(f.assistantMask)).toEqual([0, ...Array(f.ids.length - 1).fill(1)]);
  });

  it('refuses a prefix mask when the template renders prefixes differently, and reads chat_template.jinja and strftime_now', () => {
    const counting = new ChatTemplate({ config: { chat_template: '{{ messages | length }}{% for m in messages %}|{{ m.content }}{% endfor %}' } });
    const conv: TemplateMessage[] = [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }];
    expect(() => counting.apply(tok, conv)).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/generation/) }));
    const dir = mkdtempSync(join(tmpdir(), 'chat-template-'));
    try {
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
      writeFileSync(join(dir, 'chat_template.jinja'), "{{ bos_token }}{{ strftime_now('%Y') }}\n");
      expect(loadChatTemplate(dir).render(conv)).toBe(`<s>${new Date().getFullYear()}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("plugs into the SFT data side (src/data/sft's chatRenderer and buildExample): labels on assistant turns, refusals counted", () => {
    const renderer = chatRenderer(loadChatTemplate(join(FIX, 'chatml-qwen')).renderer(tok), 'chatml');
    const conv: ChatMessage[] = [{ role: 'user', content: 'Claim 1?' }, { role: 'assistant', content: 'A device.' }];
    const r = buildExample(renderer, conv, { file: 'x.jsonl', index: 0 });
    if (!r.ok) throw new Error(r.detail);
    const trained = Array.from(r.example.ids).filter((_, i) => r.example.labels[i] !== -100);
    expect(trained.length).toBeGreaterThan(3);
    expect(tok.decode(trained)).toBe('A device.<|im_end|>\n');
    const refused = buildExample(chatRenderer(loadChatTemplate(join(FIX, 'llama2-chat')).renderer(tok)), [{ role: 'assistant', content: 'x' }], { file: 'x.jsonl', index: 1 });
    expect(refused).toMatchObject({ ok: false, reason: 'render-error', detail: expect.stringMatching(/roles must alternate/) });
  });

  const model = llama2ModelPath();
  const { python, why } = findPython(['transformers', 'sentencepiece']);
  it.skipIf(!model || !python)(`matches transformers live (scripts/chat-template-parity.py)${!model ? ': no LLaMA-2 tokenizer.model in ../shared/data' : !python ? `: ${why}` : ''}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'chat-template-'));
    try {
      const out = join(dir, 'parity.json');
      execFileSync(python!, [join(root, 'scripts', 'chat-template-parity.py'), model!, out], { stdio: ['ignore', 'ignore', 'pipe'] });
      const live = JSON.parse(readFileSync(out, 'utf8')) as Row[];
      expect(live.length).toBe(golden.length);
      expect(checkRows(live)).toBe(live.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
