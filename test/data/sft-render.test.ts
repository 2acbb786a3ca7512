// SFT examples: the LLaMA-2 renderer's mask is exactly each assistant answer with the EOS that
// closes its turn (checked by decoding, on a hand-written multi-turn conversation), every turn
// supervised; trainOnPrompt, truncation to maxLength, and a plugged-in renderer function.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildExample, chatRenderer, IGNORE_INDEX, llama2ChatRenderer, type SftExample } from '../../src/data/sft/index.js';
import { loadChatTemplate, SentencePieceTokenizer, type ChatMessage } from '../../src/tokenizer/index.js';

const tok = SentencePieceTokenizer.llama2();
const renderer = llama2ChatRenderer(tok);
const src = { file: 'mem', index: 0 };

const conv: ChatMessage[] = [
  { role: 'system', content: 'You are a patent attorney.' },
  { role: 'user', content: 'What is a claim?' },
  { role: 'assistant', content: 'The part of a patent that defines the protection.' },
  { role: 'user', content: 'And prior art?' },
  { role: 'assistant', content: 'Everything public before the filing date.' },
  { role: 'user', content: 'Is software patentable in Europe?' },
  { role: 'assistant', content: 'Only with a technical effect.' },
];

/** Runs of consecutive trained tokens (label != -100). */
function runs(ex: SftExample): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  ex.labels.forEach((l, i) => {
    if (l !== IGNORE_INDEX) cur.push(ex.ids[i]!);
    else if (cur.length) {
      out.push(cur);
      cur = [];
    }
  });
  if (cur.length) out.push(cur);
  return out;
}

function build(messages: ChatMessage[], opts = {}): SftExample {
  const r = buildExample(renderer, messages, src, opts);
  if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`);
  return r.example;
}

describe('SFT examples (LLaMA-2 chat template)', () => {
  it('supervises every assistant turn: each trained run decodes to the answer and ends with EOS; the rest is prompt', () => {
    const ex = build(conv);
    const rs = runs(ex);
    expect(rs.length).toBe(3);
    const answers = conv.filter((m) => m.role === 'assistant').map((m) => m.content);
    rs.forEach((run, k) => {
      expect(run[run.length - 1]).toBe(tok.eosId);
      expect(run.slice(0, -1)).not.toContain(tok.eosId);
      expect(tok.decode(run.slice(0, -1))).toBe(`${answers[k]} `);
    });
    // the labels are the ids themselves where trained
    ex.labels.forEach((l, i) => l !== IGNORE_INDEX && expect(l).toBe(ex.ids[i]));
    // what is masked out is exactly the template and the user/system text
    const prompt = Array.from(ex.ids).map((id, i) => (ex.labels[i] === IGNORE_INDEX ? id : -1));
    const pieces = prompt.join(',').split(/,?-1,?/).filter((s) => s !== '').map((s) => s.split(',').map(Number));
    expect(pieces.map((p) => tok.decode(p.filter((id) => id !== tok.bosId)))).toEqual([
      '[INST] <<SYS>>\nYou are a patent attorney.\n<</SYS>>\n\nWhat is a claim? [/INST]',
      '[INST] And prior art? [/INST]',
      '[INST] Is software patentable in Europe? [/INST]',
    ]);
    expect(ex.supervised).toBe(rs.reduce((a, r) => a + r.length, 0));
    expect(ex.truncated).toBe(false);
  });

  it('trainOnPrompt trains on every token after the first', () => {
    const ex = build(conv, { trainOnPrompt: true });
    expect(Array.from(ex.labels)).toEqual(Array.from(ex.ids));
    expect(ex.supervised).toBe(ex.ids.length - 1);
  });

  it('truncates to maxLength (kept while an assistant token remains), refuses when none does', () => {
    const full = build(conv);
    const firstAnswer = full.labels.findIndex((l) => l !== IGNORE_INDEX);
    const cut = build(conv, { maxLength: firstAnswer + 3 });
    expect(cut.ids.length).toBe(firstAnswer + 3);
    expect(cut.truncated).toBe(true);
    expect(cut.supervised).toBe(3);
    expect(Array.from(cut.ids)).toEqual(Array.from(full.ids.slice(0, firstAnswer + 3)));
    const none = buildExample(renderer, conv, src, { maxLength: firstAnswer });
    expect(none.ok).toBe(false);
    expect(!none.ok && none.reason).toBe('too-long');
  });

  it('takes any (messages) => {ids, assistantMask} function as the renderer; its refusals are render-errors', () => {
    const plain = chatRenderer((ms) => {
      const ids: number[] = [];
      const mask: number[] = [];
      for (const m of ms) for (const id of [...tok.encode(m.content), tok.eosId]) {
        ids.push(id);
        mask.push(m.role === 'assistant' ? 1 : 0);
      }
      return { ids: Int32Array.from(ids), assistantMask: Uint8Array.from(mask) };
    }, 'plain');
    const ex = build(conv.slice(1, 3));
    const r = buildExample(plain, conv.slice(1, 3), src);
    expect(r.ok && tok.decode(runs(r.example)[0]!.slice(0, -1))).toBe('The part of a patent that defines the protection.');
    expect(ex.ids.length).not.toBe(r.ok && r.example.ids.length);
    const refusing = chatRenderer(() => {
      throw new Error('template has no system role');
    });
    const bad = buildExample(refusing, conv, src);
    expect(!bad.ok && [bad.reason, bad.detail]).toEqual(['render-error', 'template has no system role']);
    expect(() => buildExample(chatRenderer(() => ({ ids: Int32Array.of(1, 2), assistantMask: Uint8Array.of(1) })), conv, src)).toThrow(/same length/);
  });
});

describe('SFT examples through a Hugging Face chat template', () => {
  const folder = path.join(import.meta.dirname, '..', 'tokenizer', 'fixtures', 'chat-templates', 'llama2-chat');
  it.skipIf(!fs.existsSync(folder))('the Jinja LLaMA-2 template plugs in as a renderer and gives the same ids and labels as the built-in one', () => {
    const hf = chatRenderer(loadChatTemplate(folder).renderer(tok), 'hf-llama-2');
    const a = build(conv);
    const r = buildExample(hf, conv, src);
    if (!r.ok) throw new Error(r.detail);
    expect(Array.from(r.example.ids)).toEqual(Array.from(a.ids));
    expect(Array.from(r.example.labels)).toEqual(Array.from(a.labels));
  });
});
