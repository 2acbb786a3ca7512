// Conversations -> training examples. A ChatRenderer turns messages into token ids and a mask
// of the tokens the assistant's turns contribute (its answer and the EOS that ends the turn),
// as TRL's assistant-only / completion-only loss masks them. Any template plugs in: the
// LLaMA-2 one here, a Hugging Face Jinja chat template, or any (messages) => {ids, mask}.
// Labels follow Hugging Face: unshifted, the token id where it is trained on and -100
// elsewhere; packing shifts them into next-token targets.
import { PatentGPTError } from '../../errors.js';
import { renderChat, type ChatMessage, type SentencePieceTokenizer } from '../../tokenizer/index.js';
import type { RecordSource, SkipReason } from './records.js';

export const IGNORE_INDEX = -100;

export interface RenderedConversation {
  /** Token ids of the whole conversation (BOS included if the template writes it). */
  ids: Int32Array;
  /** 1 for the tokens of assistant turns (answers and their closing EOS), 0 elsewhere; ids' length. */
  assistantMask: Uint8Array;
}

export type RenderFn = (messages: readonly ChatMessage[]) => RenderedConversation;

export interface ChatRenderer {
  /** For reports ("llama-2", a tokenizer folder's template name, ...). */
  readonly name: string;
  /** Throws when the template refuses the conversation (counted as render-error). */
  render(messages: readonly ChatMessage[]): RenderedConversation;
}

/** A renderer from a plain function, e.g. a Jinja template's renderer. */
export function chatRenderer(render: RenderFn, name = 'custom'): ChatRenderer {
  return { name, render };
}

/** LLaMA-2's [INST] <<SYS>> template (src/tokenizer/chat.ts), the one transformers renders. */
export function llama2ChatRenderer(tokenizer: SentencePieceTokenizer): ChatRenderer {
  return chatRenderer((messages) => {
    const r = renderChat(tokenizer, messages);
    return { ids: r.ids, assistantMask: r.assistantMask };
  }, 'llama-2');
}

export interface ExampleOptions {
  /** Train on every token, prompts and template included (default false: assistant tokens only). */
  trainOnPrompt?: boolean;
  /** Keep at most this many tokens (the start of the conversation); default: no limit. */
  maxLength?: number;
}

export interface SftExample {
  ids: Int32Array;
  /** Unshifted labels: ids[i] where trained on, IGNORE_INDEX elsewhere. */
  labels: Int32Array;
  /** Tokens that are some position's next-token target (labels[1..] not ignored). */
  supervised: number;
  truncated: boolean;
  source: RecordSource;
}

export type ExampleResult = { ok: true; example: SftExample } | { ok: false; reason: SkipReason; detail: string };

/** Renders one checked conversation into an example (or says why it cannot be one). */
export function buildExample(renderer: ChatRenderer, messages: readonly ChatMessage[], source: RecordSource, opts: ExampleOptions = {}): ExampleResult {
  let r: RenderedConversation;
  try {
    r = renderer.render(messages);
  } catch (err) {
    return { ok: false, reason: 'render-error', detail: err instanceof Error ? err.message : String(err) };
  }
  if (r.ids.length !== r.assistantMask.length)
    throw new PatentGPTError('E_ARGUMENT', `chat renderer "${renderer.name}" returned ${r.ids.length} ids but a mask of ${r.assistantMask.length}; they must have the same length`);
  const max = opts.maxLength;
  if (max !== undefined && (!Number.isInteger(max) || max < 2)) throw new PatentGPTError('E_CONFIG', `field "maxLength" must be an integer >= 2, got ${max}`);
  const n = max === undefined ? r.ids.length : Math.min(max, r.ids.length);
  const ids = r.ids.slice(0, n);
  const labels = new Int32Array(n);
  let supervised = 0;
  for (let i = 0; i < n; i++) {
    const on = opts.trainOnPrompt || r.assistantMask[i] === 1;
    labels[i] = on ? ids[i]! : IGNORE_INDEX;
    if (on && i > 0) supervised++;
  }
  const truncated = n < r.ids.length;
  if (supervised === 0) return { ok: false, reason: 'too-long', detail: `no assistant token within the first ${n} of ${r.ids.length} tokens (maxLength)` };
  return { ok: true, example: { ids, labels, supervised, truncated, source } };
}
