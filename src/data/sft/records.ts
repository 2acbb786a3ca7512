// SFT records: the common layouts of instruction data normalised to one conversation type.
//   messages  {messages: [{role, content}]}, roles system/user/assistant, multi-turn (OpenAI, TRL)
//   alpaca    {instruction, input, output, system?, history?: [[user, assistant], ...]} (Stanford
//             Alpaca, LLaMA-Factory's "alpaca" format; instruction and input are joined by "\n")
//   sharegpt  {conversations: [{from, value}]}, from human/gpt/system (ShareGPT, LLaMA-Factory)
// Field names are mappable; the layout is detected per record unless set. A record that cannot
// be trained on is never fatal: it becomes a SkipReason, counted by SkipCounter with where it was.
import type { ChatMessage } from '../../tokenizer/index.js';

export type SftLayout = 'messages' | 'alpaca' | 'sharegpt';
export const SFT_LAYOUTS: readonly SftLayout[] = ['messages', 'alpaca', 'sharegpt'];

export type Role = ChatMessage['role'];

/** Field names of each layout (defaults in DEFAULT_FIELDS); set only the ones that differ. */
export interface SftFieldMap {
  messages?: string;
  role?: string;
  content?: string;
  instruction?: string;
  input?: string;
  output?: string;
  system?: string;
  history?: string;
  conversations?: string;
  from?: string;
  value?: string;
  /** Extra role names (the record's role -> system/user/assistant), merged over ROLE_NAMES. */
  roles?: Record<string, Role>;
}

export const DEFAULT_FIELDS: Required<Omit<SftFieldMap, 'roles'>> = {
  messages: 'messages', role: 'role', content: 'content',
  instruction: 'instruction', input: 'input', output: 'output', system: 'system', history: 'history',
  conversations: 'conversations', from: 'from', value: 'value',
};

/** Role names found in the wild, for messages and ShareGPT alike. */
export const ROLE_NAMES: Readonly<Record<string, Role>> = {
  system: 'system', user: 'user', human: 'user', assistant: 'assistant', gpt: 'assistant', model: 'assistant', chatgpt: 'assistant',
};

export type SkipReason =
  | 'malformed-json' // a line or file that is not JSON
  | 'malformed-parquet' // a Parquet file or row group that cannot be decoded
  | 'not-an-object' // a record that is not a JSON object
  | 'unknown-layout' // no messages/conversations/instruction+output fields
  | 'missing-field' // the layout's field absent (or a turn without role/content)
  | 'non-string-content' // content that is not a string (nor a list of text parts)
  | 'unknown-role' // a role outside system/user/assistant and their aliases
  | 'bad-role-order' // not [system] user assistant (user assistant)*, ending with the assistant
  | 'empty-assistant' // an assistant turn with nothing but white space
  | 'too-long' // nothing supervised is left after truncation to maxLength
  | 'render-error'; // the chat renderer refused the conversation

export const SKIP_REASONS: readonly SkipReason[] = [
  'malformed-json', 'malformed-parquet', 'not-an-object', 'unknown-layout', 'missing-field', 'non-string-content', 'unknown-role',
  'bad-role-order', 'empty-assistant', 'too-long', 'render-error',
];

/** Where a record came from: its file, the 1-based line it starts on (JSONL, JSON arrays; none in Parquet) and its 0-based index in the file. */
export interface RecordSource {
  file: string;
  index: number;
  line?: number;
}

export interface Skip extends RecordSource {
  reason: SkipReason;
  detail: string;
}

export type Normalized = { ok: true; messages: ChatMessage[] } | { ok: false; reason: SkipReason; detail: string };

/** Skipped records counted by reason (`reasons`: every one, in report order), with the first few of each kept for the report. */
export class ReasonCounter<R extends string, S extends { reason: R }> {
  readonly counts: Record<R, number>;
  readonly examples: S[] = [];
  readonly #reasons: readonly R[];

  constructor(reasons: readonly R[], readonly keepPerReason = 5) {
    this.#reasons = reasons;
    this.counts = Object.fromEntries(reasons.map((r) => [r, 0])) as Record<R, number>;
  }

  add(skip: S): void {
    if (this.counts[skip.reason]++ < this.keepPerReason) this.examples.push(skip);
  }

  get total(): number {
    return this.#reasons.reduce((a, r) => a + this.counts[r], 0);
  }

  /** Only the reasons that occurred. */
  nonzero(): Partial<Record<R, number>> {
    return Object.fromEntries(this.#reasons.filter((r) => this.counts[r] > 0).map((r) => [r, this.counts[r]])) as Partial<Record<R, number>>;
  }
}

/** SFT records skipped, by reason. */
export class SkipCounter extends ReasonCounter<SkipReason, Skip> {
  constructor(keepPerReason = 5) {
    super(SKIP_REASONS, keepPerReason);
  }
}

function fail(reason: SkipReason, detail: string): Normalized {
  return { ok: false, reason, detail };
}

/** The layout a record is in, from which fields it has; null when none fits. */
export function detectLayout(rec: Record<string, unknown>, fields: SftFieldMap = {}): SftLayout | null {
  const f = { ...DEFAULT_FIELDS, ...fields };
  if (Array.isArray(rec[f.messages])) return 'messages';
  if (Array.isArray(rec[f.conversations])) return 'sharegpt';
  if (f.instruction in rec && f.output in rec) return 'alpaca';
  return null;
}

/** A string, or the text parts of an OpenAI-style content list joined; null for anything else. */
export function textOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.length > 0 && v.every((p) => p !== null && typeof p === 'object' && (p as { type?: unknown }).type === 'text' && typeof (p as { text?: unknown }).text === 'string'))
    return v.map((p) => (p as { text: string }).text).join('');
  return null;
}

function turns(list: unknown[], roleKey: string, contentKey: string, roles: Record<string, Role>): Normalized {
  const messages: ChatMessage[] = [];
  for (let i = 0; i < list.length; i++) {
    const t = list[i];
    if (t === null || typeof t !== 'object' || Array.isArray(t)) return fail('missing-field', `turn ${i} is not an object`);
    const o = t as Record<string, unknown>;
    if (!(roleKey in o)) return fail('missing-field', `turn ${i} has no "${roleKey}"`);
    if (!(contentKey in o) || o[contentKey] === null || o[contentKey] === undefined) return fail('missing-field', `turn ${i} has no "${contentKey}"`);
    const role = typeof o[roleKey] === 'string' ? roles[o[roleKey]] : undefined;
    if (!role) return fail('unknown-role', `turn ${i} has role ${JSON.stringify(o[roleKey])}`);
    const content = textOf(o[contentKey]);
    if (content === null) return fail('non-string-content', `turn ${i} (${role}) content is ${Array.isArray(o[contentKey]) ? 'an array' : typeof o[contentKey]}`);
    messages.push({ role, content });
  }
  return { ok: true, messages };
}

/** Checks [system] (user assistant)+ with no empty answer. */
export function checkConversation(messages: readonly ChatMessage[]): Normalized {
  const start = messages[0]?.role === 'system' ? 1 : 0;
  const n = messages.length - start;
  if (n === 0) return fail('bad-role-order', 'no user/assistant turns');
  for (let i = start; i < messages.length; i++) {
    const expected: Role = (i - start) % 2 === 0 ? 'user' : 'assistant';
    const m = messages[i]!;
    if (m.role !== expected) return fail('bad-role-order', `turn ${i} is ${m.role}, expected ${expected} (turns must be [system] then user/assistant alternating)`);
    if (m.role === 'assistant' && m.content.trim() === '') return fail('empty-assistant', `turn ${i} (assistant) is empty`);
  }
  if (n % 2 !== 0) return fail('bad-role-order', 'the conversation ends with a user turn (nothing to train on after it)');
  return { ok: true, messages: [...messages] };
}

export interface NormalizeOptions {
  /** Force a layout; default: detected per record. */
  layout?: SftLayout;
  fields?: SftFieldMap;
  /** A system prompt for records that have none. */
  defaultSystem?: string;
}

/** A record in any layout -> a checked conversation, or why it cannot be trained on. */
export function normalizeRecord(rec: unknown, opts: NormalizeOptions = {}): Normalized {
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return fail('not-an-object', `a record must be a JSON object, got ${Array.isArray(rec) ? 'an array' : rec === null ? 'null' : typeof rec}`);
  const r = rec as Record<string, unknown>;
  const f = { ...DEFAULT_FIELDS, ...opts.fields };
  const roles = { ...ROLE_NAMES, ...opts.fields?.roles };
  const layout = opts.layout ?? detectLayout(r, opts.fields);
  let out: Normalized;
  if (layout === null) return fail('unknown-layout', `no "${f.messages}", "${f.conversations}" or "${f.instruction}"+"${f.output}" field (keys: ${Object.keys(r).slice(0, 8).join(', ')})`);
  if (layout === 'messages' || layout === 'sharegpt') {
    const key = layout === 'messages' ? f.messages : f.conversations;
    if (!Array.isArray(r[key])) return fail('missing-field', `no "${key}" array`);
    out = layout === 'messages' ? turns(r[key], f.role, f.content, roles) : turns(r[key], f.from, f.value, roles);
    if (out.ok && out.messages[0]?.role !== 'system') {
      // ShareGPT data (LLaMA-Factory) may carry the system prompt beside the turns.
      const sys = r[f.system];
      if (sys !== undefined && sys !== null && sys !== '') {
        if (typeof sys !== 'string') return fail('non-string-content', `"${f.system}" is ${typeof sys}`);
        out.messages.unshift({ role: 'system', content: sys });
      }
    }
  } else {
    const get = (k: string, required: boolean): string | null | Normalized => {
      const v = r[k];
      if (v === undefined || v === null) return required ? fail('missing-field', `no "${k}"`) : null;
      if (typeof v !== 'string') return fail('non-string-content', `"${k}" is ${Array.isArray(v) ? 'an array' : typeof v}`);
      return v;
    };
    const instruction = get(f.instruction, true);
    const input = get(f.input, false);
    const output = get(f.output, true);
    const system = get(f.system, false);
    for (const v of [instruction, input, output, system]) if (v !== null && typeof v === 'object') return v;
    const messages: ChatMessage[] = [];
    if (system) messages.push({ role: 'system', content: system as string });
    const hist = r[f.history];
    if (hist !== undefined && hist !== null) {
      if (!Array.isArray(hist)) return fail('missing-field', `"${f.history}" is not a list of [user, assistant] pairs`);
      for (const [i, pair] of hist.entries()) {
        if (!Array.isArray(pair) || pair.length !== 2) return fail('missing-field', `"${f.history}"[${i}] is not a [user, assistant] pair`);
        if (typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return fail('non-string-content', `"${f.history}"[${i}] holds a non-string`);
        messages.push({ role: 'user', content: pair[0] }, { role: 'assistant', content: pair[1] });
      }
    }
    const prompt = [instruction as string, (input as string | null) ?? ''].filter((s) => s !== '').join('\n');
    messages.push({ role: 'user', content: prompt }, { role: 'assistant', content: output as string });
    out = { ok: true, messages };
  }
  if (!out.ok) return out;
  if (opts.defaultSystem !== undefined && out.messages[0]?.role !== 'system') out.messages.unshift({ role: 'system', content: opts.defaultSystem });
  return checkConversation(out.messages);
}
