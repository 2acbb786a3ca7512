// Chat templates as Hugging Face writes them: the Jinja `chat_template` of a tokenizer_config.json,
// rendered as transformers' apply_chat_template(messages, tokenize=False, add_generation_prompt)
// renders it, then tokenized as transformers' tokenizer(text, add_special_tokens=False) does for a
// LLaMA-style (legacy=False) SentencePiece tokenizer, with an assistant mask for SFT.
//
// Rendering (transformers' render_jinja_template): jinja2 with trim_blocks and lstrip_blocks, a
// single trailing newline dropped; variables messages, tools=None, documents=None,
// add_generation_prompt, the special tokens (bos_token, eos_token, ... as strings) and any extra
// kwargs; globals raise_exception and strftime_now. @huggingface/jinja's Template does the same
// (src/eval/jinja.ts needs the opposite settings, lm-eval's, so nothing is shared beyond the
// library). raise_exception is renamed in the parsed template so that its message becomes a
// PatentGPTError E_DATA (the conversation is at fault) apart from the template's own bugs.
//
// Tokenizing: the text is split on the special tokens' strings (an id each, as transformers'
// added tokens); the piece at the very start of the text gets sentencepiece's dummy-prefix space,
// text after a special token does not (legacy=False), so a template that writes bos_token gets no
// second BOS.
//
// Assistant mask: 1 for the tokens overlapping assistant text. With {% generation %} blocks (as
// transformers' return_assistant_tokens_mask) the text they render is assistant text. Without
// them, assistant turn i is the text between render(messages[:i], add_generation_prompt=True)
// and render(messages[:i+1]): the answer and what the template closes it with (EOS, <|im_end|>),
// not the generation prompt; this needs each such render to be a prefix of the whole.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Template, parse, tokenize } from '@huggingface/jinja';
import { PatentGPTError } from '../errors.js';
import { withoutDummyPrefix } from './chat.js';
import { PieceType } from './model.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

/**
 * A message as chat templates read it: role and content. Other fields a template uses (name,
 * tool_calls, ...) are handed to it as they are in the object.
 */
export interface TemplateMessage {
  readonly role: string;
  readonly content: string;
}

export interface ApplyChatTemplateOptions {
  /** End with the template's opening of an assistant turn (transformers' add_generation_prompt). */
  addGenerationPrompt?: boolean;
  /** Extra template variables (transformers' **kwargs of apply_chat_template). */
  kwargs?: Record<string, unknown>;
}

export interface TemplatedChat {
  ids: Int32Array;
  text: string;
  /** 1 for tokens of assistant turns, 0 elsewhere. */
  assistantMask: Uint8Array;
  /** How the mask was found: the template's {% generation %} blocks or rendered prefixes. */
  maskFrom: 'generation' | 'prefix';
}

/** What an SFT data pipeline calls to turn a conversation into ids and a loss mask. */
export type ChatTemplateRenderer = (messages: readonly TemplateMessage[]) => { ids: Int32Array; assistantMask: Uint8Array };

const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
const RAISE = '__patentgpt_raise_exception';
const GEN_OPEN = '\u{E001}';
const GEN_CLOSE = '\u{E002}';

class TemplateRaised extends Error {}

function configError(where: string, why: string): PatentGPTError {
  return new PatentGPTError('E_CONFIG', `${where}: ${why}`);
}

/** A token of tokenizer_config.json: a string, an AddedToken object ({content, ...}) or null. */
function tokenString(value: unknown, where: string): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content;
  throw configError(where, `expected a string or an AddedToken object with "content", got ${JSON.stringify(value)}`);
}

/** Renames raise_exception calls in a parsed template (identifiers only, never string literals). */
function renameRaise(node: unknown): void {
  if (Array.isArray(node)) {
    for (const n of node) renameRaise(n);
  } else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if (o.type === 'Identifier' && o.value === 'raise_exception') o.value = RAISE;
    for (const k of Object.keys(o)) renameRaise(o[k]);
  }
}

/** jinja2's trim_blocks and lstrip_blocks as @huggingface/jinja applies them, then {% generation %} as markers. */
function compile(source: string, where: string): { template: Template; generation: boolean } {
  let src = source.replace(/^[ \t]*({[#%-])/gm, '$1').replace(/([#%-]})\n/g, '$1');
  let generation = false;
  src = src.replace(/{%(-?)\s*(end)?generation\s*(-?)%}/g, (_m, l: string, end: string | undefined, r: string) => {
    generation = true;
    return `{{${l} '${end ? GEN_CLOSE : GEN_OPEN}' ${r}}}`;
  });
  const template = new Template('');
  try {
    template.parsed = parse(tokenize(src, {}));
  } catch (err) {
    throw configError(where, `the chat template is not valid Jinja (${(err as Error).message})`);
  }
  renameRaise(template.parsed);
  return { template, generation };
}

export interface ChatTemplateSource {
  /** The tokenizer_config.json object (or any object with chat_template and the special tokens). */
  config: Record<string, unknown>;
  /** Which template of the list form ({name, template}[]) or of a name->template object; default "default". */
  name?: string;
  /** Where it came from, for messages. */
  where?: string;
}

/** A Hugging Face chat template with its special tokens. */
export class ChatTemplate {
  readonly source: string;
  readonly name: string;
  /** bos_token, eos_token, ... as strings (absent when null), and additional_special_tokens. */
  readonly specialTokens: Readonly<Record<string, string>>;
  readonly additionalSpecialTokens: readonly string[];
  /** The contents of added_tokens_decoder. */
  readonly addedTokens: readonly string[];
  /** Whether the template marks assistant text with {% generation %} blocks. */
  readonly hasGenerationBlocks: boolean;
  private readonly template: Template;
  private readonly where: string;

  constructor({ config, name, where = 'tokenizer_config.json' }: ChatTemplateSource) {
    this.where = where;
    const raw = config.chat_template;
    let source: unknown = raw;
    let picked = name ?? 'default';
    if (Array.isArray(raw) || (raw && typeof raw === 'object')) {
      const entries: [string, unknown][] = Array.isArray(raw)
        ? raw.map((e: unknown, i) => {
            const o = (e ?? {}) as { name?: unknown; template?: unknown };
            if (typeof o.name !== 'string') throw configError(where, `chat_template[${i}] has no string "name"`);
            return [o.name, o.template];
          })
        : Object.entries(raw as Record<string, unknown>);
      const hit = entries.find(([n]) => n === picked);
      if (!hit) throw configError(where, `no chat template named "${picked}"; it has ${entries.map(([n]) => JSON.stringify(n)).join(', ')}`);
      source = hit[1];
    } else if (name !== undefined && name !== 'default') {
      throw configError(where, `chat template "${name}" asked for, but chat_template is a single template`);
    }
    if (typeof source !== 'string') throw configError(where, `no chat_template string (got ${JSON.stringify(source)?.slice(0, 80)}); use a tokenizer_config.json of a chat model`);
    this.source = source;
    this.name = picked;
    const specials: Record<string, string> = {};
    for (const k of SPECIAL_KEYS) {
      const s = tokenString(config[k], `${where}: ${k}`);
      if (s !== null) specials[k] = s;
    }
    this.specialTokens = specials;
    const extra = config.additional_special_tokens ?? [];
    if (!Array.isArray(extra)) throw configError(where, 'additional_special_tokens must be a list');
    this.additionalSpecialTokens = extra.map((t, i) => tokenString(t, `${where}: additional_special_tokens[${i}]`)).filter((t): t is string => t !== null);
    // transformers splits text on every added token (special or not) before the model sees it.
    const added = config.added_tokens_decoder ?? {};
    if (typeof added !== 'object' || Array.isArray(added)) throw configError(where, 'added_tokens_decoder must be an object of id -> AddedToken');
    this.addedTokens = Object.entries(added as Record<string, unknown>).map(([id, t]) => tokenString(t, `${where}: added_tokens_decoder[${id}]`)).filter((t): t is string => t !== null);
    const { template, generation } = compile(source, `${where} (${picked})`);
    this.template = template;
    this.hasGenerationBlocks = generation;
  }

  /** Every string tokenized as one id: the special tokens and added_tokens_decoder's tokens. */
  specialStrings(): string[] {
    return [...new Set([...Object.values(this.specialTokens), ...this.additionalSpecialTokens, ...this.addedTokens])];
  }

  /** The text transformers' apply_chat_template(messages, tokenize=False, ...) gives. */
  render(messages: readonly TemplateMessage[], opts: ApplyChatTemplateOptions = {}): string {
    return strip(this.renderMarked(messages, opts)).text;
  }

  private renderMarked(messages: readonly TemplateMessage[], opts: ApplyChatTemplateOptions): string {
    const vars: Record<string, unknown> = {
      messages,
      tools: null,
      documents: null,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      ...this.specialTokens,
      additional_special_tokens: this.additionalSpecialTokens,
      ...opts.kwargs,
      [RAISE]: (message: unknown) => {
        throw new TemplateRaised(String(message));
      },
    };
    try {
      return this.template.render(vars);
    } catch (err) {
      if (err instanceof TemplateRaised) {
        throw new PatentGPTError('E_DATA', `chat template "${this.name}" of ${this.where} refused the conversation: ${err.message} (fix the messages: roles and order as this template expects)`);
      }
      throw new PatentGPTError('E_CONFIG', `chat template "${this.name}" of ${this.where} failed to render: ${(err as Error).message}`);
    }
  }

  /** Text, the tokenizer's ids for it (transformers' tokenizer(text, add_special_tokens=False)) and the assistant mask. */
  apply(tokenizer: SentencePieceTokenizer, messages: readonly TemplateMessage[], opts: ApplyChatTemplateOptions & { specials?: readonly string[] } = {}): TemplatedChat {
    const { text, spans } = strip(this.renderMarked(messages, opts));
    let assistant = spans;
    if (!this.hasGenerationBlocks) assistant = this.prefixSpans(messages, text, opts);
    const { ids, starts, ends } = encodeTemplated(tokenizer, text, opts.specials ?? this.specialStrings());
    const mask = new Uint8Array(ids.length);
    for (const [a, b] of assistant) {
      for (let t = 0; t < ids.length; t++) if (starts[t]! < b && ends[t]! > a) mask[t] = 1;
    }
    return { ids, text, assistantMask: mask, maskFrom: this.hasGenerationBlocks ? 'generation' : 'prefix' };
  }

  /** A ChatTemplateRenderer for SFT data: every assistant turn supervised, no generation prompt. */
  renderer(tokenizer: SentencePieceTokenizer, opts: Omit<ApplyChatTemplateOptions, 'addGenerationPrompt'> = {}): ChatTemplateRenderer {
    const specials = this.specialStrings();
    return (messages) => {
      const r = this.apply(tokenizer, messages, { ...opts, specials });
      return { ids: r.ids, assistantMask: r.assistantMask };
    };
  }

  /** The text before an assistant turn; for an empty prefix, '' when the template needs a message. */
  private renderPrefix(messages: readonly TemplateMessage[], opts: ApplyChatTemplateOptions): string {
    try {
      return this.render(messages, { ...opts, addGenerationPrompt: true });
    } catch (err) {
      if (messages.length === 0 && err instanceof PatentGPTError) return '';
      throw err;
    }
  }

  private prefixSpans(messages: readonly TemplateMessage[], full: string, opts: ApplyChatTemplateOptions): [number, number][] {
    const spans: [number, number][] = [];
    messages.forEach((m, i) => {
      if (m.role !== 'assistant') return;
      const before = this.renderPrefix(messages.slice(0, i), opts);
      const upto = this.render(messages.slice(0, i + 1), { ...opts, addGenerationPrompt: false });
      if (!upto.startsWith(before) || !full.startsWith(upto)) {
        throw new PatentGPTError(
          'E_UNSUPPORTED',
          `chat template "${this.name}" of ${this.where} renders the conversation up to assistant turn ${i} differently from the start of the whole one, so its assistant tokens cannot be found by prefixes; mark them with {% generation %} ... {% endgeneration %} in the template`,
        );
      }
      spans.push([before.length, upto.length]);
    });
    return spans;
  }
}

/** Removes the {% generation %} markers, returning the text and the spans they enclosed. */
function strip(marked: string): { text: string; spans: [number, number][] } {
  let text = '';
  const spans: [number, number][] = [];
  let open = -1;
  for (const ch of marked) {
    if (ch === GEN_OPEN) open = text.length;
    else if (ch === GEN_CLOSE) {
      if (open >= 0 && text.length > open) spans.push([open, text.length]);
      open = -1;
    } else text += ch;
  }
  return { text, spans };
}

/**
 * Reads a chat template from a tokenizer_config.json path, its folder (a chat_template.jinja there
 * is used when the config has none, as transformers saves it) or a parsed object.
 */
export function loadChatTemplate(source: string | Record<string, unknown>, name?: string): ChatTemplate {
  if (typeof source !== 'string') return new ChatTemplate({ config: source, name, where: 'chat template config' });
  const path = existsSync(source) && statSync(source).isDirectory() ? join(source, 'tokenizer_config.json') : source;
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `cannot read ${path} as a tokenizer_config.json: ${(err as Error).message}`);
  }
  const jinja = join(dirname(path), 'chat_template.jinja');
  if (config.chat_template === undefined && existsSync(jinja)) config = { ...config, chat_template: readFileSync(jinja, 'utf8') };
  return new ChatTemplate({ config, name, where: path });
}

/**
 * Tokenizes rendered template text as transformers' tokenizer(text, add_special_tokens=False) with a
 * legacy=False LLaMA tokenizer: special strings become their ids; the start of the text gets the
 * dummy prefix, text after a special token does not. Returns each token's [start, end) in the text.
 */
export function encodeTemplated(tokenizer: SentencePieceTokenizer, text: string, specials: readonly string[]): { ids: Int32Array; starts: Int32Array; ends: Int32Array } {
  const known = new Map<string, number>();
  const unknown: string[] = [];
  for (const s of specials) {
    if (!s) continue;
    const id = tokenizer.pieceToId(s);
    if (id === tokenizer.unkId && s !== tokenizer.idToPiece(id)) unknown.push(s);
    else known.set(s, id);
  }
  for (const id of [tokenizer.unkId, tokenizer.bosId, tokenizer.eosId]) if (id >= 0) known.set(tokenizer.idToPiece(id), id);
  // Longest first, so "</s>" is not read as a shorter special token.
  const order = [...known.keys()].sort((a, b) => b.length - a.length);
  const ids: number[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  const plain = withoutDummyPrefix(tokenizer);
  const segment = (from: number, to: number): void => {
    if (to <= from) return;
    const prefixed = from === 0 && tokenizer.model.normalizerSpec.addDummyPrefix;
    const segIds = (prefixed ? tokenizer : plain).encode(text.slice(from, to));
    let pos = from - (prefixed ? 1 : 0);
    let charStart = pos;
    let charEnd = pos;
    for (const id of segIds) {
      if (tokenizer.pieceType(id) === PieceType.BYTE) {
        const byte = parseInt(tokenizer.idToPiece(id).slice(3, 5), 16);
        if ((byte & 0xc0) !== 0x80) {
          // A UTF-8 lead byte: its character's UTF-16 units; continuation bytes share them.
          charStart = pos;
          pos += byte >= 0xf0 ? 2 : 1;
          charEnd = pos;
        }
      } else {
        charStart = pos;
        pos += tokenizer.idToPiece(id).length;
        charEnd = pos;
      }
      ids.push(id);
      starts.push(Math.max(charStart, from));
      ends.push(Math.max(charEnd, from));
    }
    if (pos !== to) {
      throw new PatentGPTError('E_UNSUPPORTED', `chat template: token offsets of ${JSON.stringify(text.slice(from, to).slice(0, 60))} do not add up (${pos - from} of ${to - from} characters); only tokenizers without a text normalizer (as LLaMA-2's) are supported`);
    }
  };
  let from = 0;
  let i = 0;
  while (i < text.length) {
    const hit = order.find((s) => text.startsWith(s, i));
    if (hit === undefined) {
      i++;
      continue;
    }
    segment(from, i);
    ids.push(known.get(hit)!);
    starts.push(i);
    ends.push(i + hit.length);
    i += hit.length;
    from = i;
  }
  segment(from, text.length);
  for (const s of unknown) {
    if (text.includes(s)) throw new PatentGPTError('E_UNSUPPORTED', `chat template: special token ${JSON.stringify(s)} is in the rendered text but not in the tokenizer's vocabulary; use the tokenizer the template was written for`);
  }
  return { ids: Int32Array.from(ids), starts: Int32Array.from(starts), ends: Int32Array.from(ends) };
}
