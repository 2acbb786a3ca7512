// Preference pairs -> token ids with response masks. Each side is rendered whole by the stage's
// chat template (prompt + that response, the same ChatRenderer SFT uses). Its response is, when
// the renderer can render the prompt alone with the opening of an assistant turn
// (renderPrompt: a Hugging Face template's add_generation_prompt), every token after that prefix,
// as TRL's DPOTrainer cuts prompt + completion; otherwise (LLaMA-2's built-in format) the
// assistant tokens of the response's turns: the last k runs of the template's assistant mask for
// a response of k assistant turns (the answer and the EOS that closes it). Everything else (the
// prompt, earlier assistant turns of a multi-turn prompt, the template's scaffolding) is masked
// out, so a sequence's log-probability is the sum over its response tokens only.
import type { ChatTemplate } from '../../tokenizer/chat-template.js';
import type { ChatMessage } from '../../tokenizer/chat.js';
import type { SentencePieceTokenizer } from '../../tokenizer/sentencepiece.js';
import { chatRenderer, type ChatRenderer, type RenderedConversation } from '../sft/render.js';
import type { RecordSource } from '../sft/records.js';
import type { PreferencePair, PreferenceSkipReason } from './records.js';

/** A ChatRenderer that may also render a prompt with the template's generation prompt. */
export interface PreferenceRenderer extends ChatRenderer {
  /** Ids of the prompt followed by the opening of an assistant turn (add_generation_prompt). */
  renderPrompt?(messages: readonly ChatMessage[]): Int32Array;
}

/** A Hugging Face chat template as a PreferenceRenderer (SFT's renderer plus renderPrompt). */
export function templatePreferenceRenderer(template: ChatTemplate, tokenizer: SentencePieceTokenizer, name = template.name): PreferenceRenderer {
  const specials = template.specialStrings();
  return {
    ...chatRenderer(template.renderer(tokenizer), name),
    renderPrompt: (messages) => template.apply(tokenizer, messages, { addGenerationPrompt: true, specials }).ids,
  };
}

export interface PreferenceSequence {
  /** Token ids of prompt + response (BOS included if the template writes it). */
  ids: Int32Array;
  /** 1 for the response's tokens, 0 elsewhere; ids' length. */
  responseMask: Uint8Array;
  /** Response tokens (ones in responseMask). */
  responseTokens: number;
}

export interface PreferenceExample {
  chosen: PreferenceSequence;
  rejected: PreferenceSequence;
  /** Either side was cut to maxLength. */
  truncated: boolean;
  source: RecordSource;
}

export interface TokenizeOptions {
  /** Keep at most this many tokens of each side; default: no limit. */
  maxLength?: number;
  /**
   * Which tokens a side longer than maxLength keeps (TRL's truncation_mode): "keep_start" (default:
   * the start; a pair whose prompt fills maxLength has no response left and is skipped) or
   * "keep_end" (the end: the response survives, the start of the prompt is cut).
   */
  truncation?: 'keep_start' | 'keep_end';
}

export type TokenizedPair = { ok: true; example: PreferenceExample } | { ok: false; reason: PreferenceSkipReason; detail: string };

/** Marks the last `turns` runs of ones in `mask` (the response's assistant turns). */
function lastRuns(mask: Uint8Array, turns: number): Uint8Array {
  const out = new Uint8Array(mask.length);
  let left = turns;
  for (let i = mask.length - 1; i >= 0 && left > 0; i--) {
    if (mask[i] !== 1) continue;
    let j = i;
    while (j >= 0 && mask[j] === 1) out[j--] = 1;
    left--;
    i = j;
  }
  return out;
}

function startsWith(a: Int32Array, p: Int32Array): boolean {
  if (p.length > a.length) return false;
  for (let i = 0; i < p.length; i++) if (a[i] !== p[i]) return false;
  return true;
}

function side(renderer: PreferenceRenderer, prompt: Int32Array | null, pair: PreferencePair, response: PreferencePair['chosen'], maxLength: number | undefined, keepEnd: boolean): PreferenceSequence & { full: number } {
  const r: RenderedConversation = renderer.render([...pair.prompt, ...response]);
  if (r.ids.length !== r.assistantMask.length)
    throw new Error(`chat renderer "${renderer.name}" returned ${r.ids.length} ids but a mask of ${r.assistantMask.length}`);
  let mask: Uint8Array;
  if (prompt !== null && prompt.length < r.ids.length && startsWith(r.ids, prompt)) {
    mask = new Uint8Array(r.ids.length);
    mask.fill(1, prompt.length);
  } else mask = lastRuns(r.assistantMask, response.filter((m) => m.role === 'assistant').length);
  const n = maxLength === undefined ? r.ids.length : Math.min(maxLength, r.ids.length);
  const from = keepEnd ? r.ids.length - n : 0;
  const responseMask = mask.slice(from, from + n);
  // position 0 is nobody's next-token target: a response token there could not be scored
  responseMask[0] = 0;
  let responseTokens = 0;
  for (let i = 0; i < n; i++) responseTokens += responseMask[i]!;
  return { ids: r.ids.slice(from, from + n), responseMask, responseTokens, full: r.ids.length };
}

/** Renders both sides of a checked pair (or says why it cannot be trained on). */
export function tokenizePair(renderer: PreferenceRenderer, pair: PreferencePair, source: RecordSource, opts: TokenizeOptions = {}): TokenizedPair {
  const max = opts.maxLength;
  if (max !== undefined && (!Number.isInteger(max) || max < 2)) return { ok: false, reason: 'too-long', detail: `maxLength must be an integer >= 2, got ${max}` };
  let c, j;
  try {
    const prompt = renderer.renderPrompt ? renderer.renderPrompt(pair.prompt) : null;
    const keepEnd = opts.truncation === 'keep_end';
    c = side(renderer, prompt, pair, pair.chosen, max, keepEnd);
    j = side(renderer, prompt, pair, pair.rejected, max, keepEnd);
  } catch (err) {
    return { ok: false, reason: 'render-error', detail: err instanceof Error ? err.message : String(err) };
  }
  for (const [name, s] of [['chosen', c], ['rejected', j]] as const)
    if (s.responseTokens === 0) return { ok: false, reason: 'too-long', detail: `no ${name} response token within ${s.ids.length} of ${s.full} tokens (maxLength; truncation "keep_end" keeps the response)` };
  const strip = (s: typeof c): PreferenceSequence => ({ ids: s.ids, responseMask: s.responseMask, responseTokens: s.responseTokens });
  return { ok: true, example: { chosen: strip(c), rejected: strip(j), truncated: c.ids.length < c.full || j.ids.length < j.full, source } };
}
