// LLaMA-2's chat format, as transformers' LLaMA-2 chat template renders it:
//   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
// Each user turn opens with BOS and "[INST] ", each assistant turn closes with " " + EOS; the
// system prompt is folded into the first user turn. BOS/EOS are ids, never text (so "<s>" typed
// by a user stays text), and the text between them is encoded without the dummy-prefix space,
// as transformers' LlamaTokenizer (legacy=False) encodes text that follows a special token.
import { PatentGPTError } from '../errors.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

const noPrefix = new WeakMap<SentencePieceTokenizer, SentencePieceTokenizer>();

/** The same tokenizer with add_dummy_prefix off (cached per tokenizer). */
export function withoutDummyPrefix(t: SentencePieceTokenizer): SentencePieceTokenizer {
  let u = noPrefix.get(t);
  if (!u) {
    u = new SentencePieceTokenizer({ ...t.model, normalizerSpec: { ...t.model.normalizerSpec, addDummyPrefix: false } }, t.name);
    noPrefix.set(t, u);
  }
  return u;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface RenderChatOptions {
  /** End with an open user turn's "[/INST]" so the model writes the assistant's answer. */
  addGenerationPrompt?: boolean;
}

export interface RenderedChat {
  ids: Int32Array;
  /** The text with <s> and </s> written out, as transformers' template renders it. */
  text: string;
  /** 1 for tokens of assistant answers (what SFT trains on), 0 elsewhere. */
  assistantMask: Uint8Array;
}

function chatError(why: string): PatentGPTError {
  return new PatentGPTError('E_ARGUMENT', `renderChat: ${why}`);
}

/** Renders a conversation in LLaMA-2's [INST] <<SYS>> format. */
export function renderChat(tokenizer: SentencePieceTokenizer, messages: readonly ChatMessage[], opts: RenderChatOptions = {}): RenderedChat {
  if (messages.length === 0) throw chatError('no messages');
  let system: string | null = null;
  let turns = messages;
  if (messages[0]!.role === 'system') {
    system = messages[0]!.content;
    turns = messages.slice(1);
  }
  const ids: number[] = [];
  const mask: number[] = [];
  let text = '';
  const plain = withoutDummyPrefix(tokenizer);
  const push = (segment: string, assistant: boolean): void => {
    for (const id of plain.encode(segment)) {
      ids.push(id);
      mask.push(assistant ? 1 : 0);
    }
    text += segment;
  };
  turns.forEach((m, i) => {
    if (typeof m.content !== 'string') throw chatError(`message ${i} has no string content`);
    const expected = i % 2 === 0 ? 'user' : 'assistant';
    if (m.role !== expected) throw chatError(`message roles must alternate user/assistant after an optional system message; turn ${i} is ${m.role}, expected ${expected}`);
    if (m.role === 'user') {
      const content = i === 0 && system !== null ? `<<SYS>>\n${system}\n<</SYS>>\n\n${m.content}` : m.content;
      ids.push(tokenizer.bosId);
      mask.push(0);
      text += '<s>';
      push(`[INST] ${content.trim()} [/INST]`, false);
    } else {
      push(` ${m.content.trim()} `, true);
      ids.push(tokenizer.eosId);
      mask.push(1);
      text += '</s>';
    }
  });
  if (opts.addGenerationPrompt && turns[turns.length - 1]?.role !== 'user') {
    throw chatError('addGenerationPrompt needs the conversation to end with a user turn');
  }
  return { ids: Int32Array.from(ids), text, assistantMask: Uint8Array.from(mask) };
}
