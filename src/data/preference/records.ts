// Preference records: the common layouts of pairwise preference data normalised to one pair type
// { prompt: messages, chosen: messages, rejected: messages } (the responses are the assistant's).
//   explicit  {prompt, chosen, rejected} (TRL, OpenRLHF): each a string, a list of chat messages
//             ({role, content} or {from, value}) or one message object. A string prompt is one
//             user turn; a string response is one assistant turn. Without a prompt field the
//             prompt is the shared start of chosen and rejected conversations (TRL's implicit
//             prompt, extract_prompt).
//   sharegpt  {conversations: [{from, value}], chosen: {from, value}, rejected: {from, value}}
//             (LLaMA-Factory's dpo_en_demo); `system` beside the turns is the system prompt.
//   hh        {chosen, rejected} as whole transcripts "\n\nHuman: ...\n\nAssistant: ..."
//             (Anthropic hh-rlhf): the turns up to the last "Assistant:" are the prompt, and
//             must agree between the two.
// Field names are mappable (PreferenceFieldMap); `promptTemplate` builds the prompt from any
// fields of a flat record ("Write the abstract of {patent_title}"), for CSV/table data such as
// human vs machine-written patent abstracts. A record that cannot be trained on is never fatal:
// it is a PreferenceSkipReason, counted with where it came from.
import type { ChatMessage } from '../../tokenizer/index.js';
import { ReasonCounter, ROLE_NAMES, textOf, type RecordSource, type Role } from '../sft/records.js';

export type PreferenceLayout = 'explicit' | 'sharegpt' | 'hh';
export const PREFERENCE_LAYOUTS: readonly PreferenceLayout[] = ['explicit', 'sharegpt', 'hh'];

/** Field names (defaults in DEFAULT_PREFERENCE_FIELDS); set only the ones that differ. */
export interface PreferenceFieldMap {
  prompt?: string;
  chosen?: string;
  rejected?: string;
  conversations?: string;
  system?: string;
  role?: string;
  content?: string;
  from?: string;
  value?: string;
  /** Extra role names (the record's role -> system/user/assistant), merged over ROLE_NAMES. */
  roles?: Record<string, Role>;
}

export const DEFAULT_PREFERENCE_FIELDS: Required<Omit<PreferenceFieldMap, 'roles'>> = {
  prompt: 'prompt', chosen: 'chosen', rejected: 'rejected', conversations: 'conversations', system: 'system',
  role: 'role', content: 'content', from: 'from', value: 'value',
};

export type PreferenceSkipReason =
  | 'malformed-json' // a line or file that is not JSON
  | 'malformed-parquet' // a Parquet file or row group that cannot be decoded
  | 'malformed-csv' // a CSV row with another number of fields than the header
  | 'not-an-object' // a record that is not an object
  | 'unknown-layout' // no chosen/rejected fields
  | 'missing-field' // prompt, chosen, rejected or a turn's role/content absent; a template field absent
  | 'non-string-content' // content that is not a string (nor a list of text parts)
  | 'unknown-role' // a role outside system/user/assistant and their aliases
  | 'bad-role-order' // the prompt is not [system] user (assistant user)*, or a response is not the assistant's
  | 'empty-response' // chosen or rejected with nothing but white space
  | 'identical-responses' // chosen equals rejected: no preference to learn
  | 'no-shared-prompt' // implicit prompt: the two conversations share no user turn
  | 'too-long' // no response token of chosen or rejected is left after truncation to maxLength
  | 'render-error'; // the chat renderer refused the conversation

export const PREFERENCE_SKIP_REASONS: readonly PreferenceSkipReason[] = [
  'malformed-json', 'malformed-parquet', 'malformed-csv', 'not-an-object', 'unknown-layout', 'missing-field', 'non-string-content',
  'unknown-role', 'bad-role-order', 'empty-response', 'identical-responses', 'no-shared-prompt', 'too-long', 'render-error',
];

export interface PreferenceSkip extends RecordSource {
  reason: PreferenceSkipReason;
  detail: string;
}

/** Preference records skipped, by reason. */
export class PreferenceSkipCounter extends ReasonCounter<PreferenceSkipReason, PreferenceSkip> {
  constructor(keepPerReason = 5) {
    super(PREFERENCE_SKIP_REASONS, keepPerReason);
  }
}

/** One preference: the conversation so far and the two answers to it. */
export interface PreferencePair {
  /** [system] user (assistant user)*: ends with the user turn both responses answer. */
  prompt: ChatMessage[];
  /** The preferred response: one assistant turn (or several, for multi-turn responses). */
  chosen: ChatMessage[];
  rejected: ChatMessage[];
}

export type NormalizedPair = { ok: true; pair: PreferencePair } | { ok: false; reason: PreferenceSkipReason; detail: string };

export interface PreferenceNormalizeOptions {
  /** Force a layout; default: detected per record. */
  layout?: PreferenceLayout;
  fields?: PreferenceFieldMap;
  /** The prompt from the record's fields: "{name}" is replaced by the field's text ("{{" is "{"). */
  promptTemplate?: string;
  /** A system prompt for records that have none. */
  defaultSystem?: string;
}

function fail(reason: PreferenceSkipReason, detail: string): NormalizedPair & { ok: false } {
  return { ok: false, reason, detail };
}

/** The layout a record is in, from which fields it has; null when none fits. */
export function detectPreferenceLayout(rec: Record<string, unknown>, fields: PreferenceFieldMap = {}): PreferenceLayout | null {
  const f = { ...DEFAULT_PREFERENCE_FIELDS, ...fields };
  if (!(f.chosen in rec) || !(f.rejected in rec)) return null;
  if (Array.isArray(rec[f.conversations]) && !(f.prompt in rec)) return 'sharegpt';
  const c = rec[f.chosen];
  if (!(f.prompt in rec) && typeof c === 'string' && HH_TURN.test(c)) return 'hh';
  return 'explicit';
}

type Turns = { ok: true; messages: ChatMessage[] } | (NormalizedPair & { ok: false });

/** One message object ({role, content} or {from, value}). */
function message(t: unknown, where: string, f: typeof DEFAULT_PREFERENCE_FIELDS, roles: Record<string, Role>): Turns {
  if (t === null || typeof t !== 'object' || Array.isArray(t)) return fail('missing-field', `${where} is not a message object`);
  const o = t as Record<string, unknown>;
  const [rk, ck] = f.role in o || f.content in o ? [f.role, f.content] : [f.from, f.value];
  if (!(rk in o)) return fail('missing-field', `${where} has no "${rk}"`);
  if (o[ck] === undefined || o[ck] === null) return fail('missing-field', `${where} has no "${ck}"`);
  const role = typeof o[rk] === 'string' ? roles[o[rk]] : undefined;
  if (!role) return fail('unknown-role', `${where} has role ${JSON.stringify(o[rk])}`);
  const content = textOf(o[ck]);
  if (content === null) return fail('non-string-content', `${where} (${role}) content is ${Array.isArray(o[ck]) ? 'an array' : typeof o[ck]}`);
  return { ok: true, messages: [{ role, content }] };
}

/** A string (one turn of `role`), a message object or a list of them. */
function turnsOf(v: unknown, name: string, role: Role, f: typeof DEFAULT_PREFERENCE_FIELDS, roles: Record<string, Role>): Turns {
  if (v === undefined || v === null) return fail('missing-field', `no "${name}"`);
  const text = textOf(v);
  if (text !== null) return { ok: true, messages: [{ role, content: text }] };
  if (Array.isArray(v)) {
    const out: ChatMessage[] = [];
    for (let i = 0; i < v.length; i++) {
      const m = message(v[i], `"${name}"[${i}]`, f, roles);
      if (!m.ok) return m;
      out.push(...m.messages);
    }
    return { ok: true, messages: out };
  }
  if (typeof v === 'object') return message(v, `"${name}"`, f, roles);
  return fail('non-string-content', `"${name}" is ${typeof v}`);
}

const HH_TURN = /\n\nHuman:|^Human:/;

/** An hh-rlhf transcript ("\n\nHuman: ...\n\nAssistant: ...") as turns. */
export function parseTranscript(text: string): ChatMessage[] | null {
  const re = /(?:^|\n\n)(Human|Assistant):[ ]?/g;
  const marks: { role: Role; at: number; end: number }[] = [];
  for (let m = re.exec(text); m !== null; m = re.exec(text)) marks.push({ role: m[1] === 'Human' ? 'user' : 'assistant', at: m.index, end: m.index + m[0].length });
  if (marks.length === 0 || text.slice(0, marks[0]!.at).trim() !== '') return null;
  return marks.map((k, i) => ({ role: k.role, content: text.slice(k.end, i + 1 < marks.length ? marks[i + 1]!.at : text.length) }));
}

const same = (a: ChatMessage, b: ChatMessage): boolean => a.role === b.role && a.content === b.content;

/** The longest shared start of two conversations that ends with a user turn (TRL's implicit prompt). */
function sharedPrompt(a: readonly ChatMessage[], b: readonly ChatMessage[]): number {
  let n = 0;
  while (n < a.length && n < b.length && same(a[n]!, b[n]!)) n++;
  while (n > 0 && a[n - 1]!.role !== 'user') n--;
  return n;
}

/** Fills "{field}" from the record ("{{" / "}}" are literal braces). */
export function fillTemplate(template: string, rec: Record<string, unknown>): { ok: true; text: string } | (NormalizedPair & { ok: false }) {
  let missing: string | null = null;
  const text = template.replace(/\{\{|\}\}|\{([^{}]+)\}/g, (m, name: string | undefined) => {
    if (m === '{{') return '{';
    if (m === '}}') return '}';
    const v = rec[name!];
    if (v === undefined || v === null || (typeof v !== 'string' && typeof v !== 'number')) {
      missing ??= name!;
      return '';
    }
    return String(v);
  });
  return missing !== null ? fail('missing-field', `promptTemplate needs "${missing}", which the record lacks (or is not text)`) : { ok: true, text };
}

function checkPrompt(p: readonly ChatMessage[]): (NormalizedPair & { ok: false }) | null {
  const start = p[0]?.role === 'system' ? 1 : 0;
  if (p.length - start === 0) return fail('bad-role-order', 'the prompt has no user turn');
  for (let i = start; i < p.length; i++) {
    const expected: Role = (i - start) % 2 === 0 ? 'user' : 'assistant';
    if (p[i]!.role !== expected) return fail('bad-role-order', `prompt turn ${i} is ${p[i]!.role}, expected ${expected} ([system] then user/assistant alternating, ending with a user turn)`);
  }
  if ((p.length - start) % 2 === 0) return fail('bad-role-order', 'the prompt ends with an assistant turn (it must end with the user turn the responses answer)');
  return null;
}

function checkResponse(r: readonly ChatMessage[], name: string): (NormalizedPair & { ok: false }) | null {
  if (r.length === 0) return fail('empty-response', `"${name}" has no turn`);
  for (let i = 0; i < r.length; i++) {
    const expected: Role = i % 2 === 0 ? 'assistant' : 'user';
    if (r[i]!.role !== expected) return fail('bad-role-order', `"${name}" turn ${i} is ${r[i]!.role}, expected ${expected} (a response starts with and ends with the assistant)`);
  }
  if (r[r.length - 1]!.role !== 'assistant') return fail('bad-role-order', `"${name}" ends with a user turn`);
  if (r.every((m) => m.role !== 'assistant' || m.content.trim() === '')) return fail('empty-response', `"${name}" is empty`);
  return null;
}

/** A record in any layout -> a checked preference pair, or why it cannot be trained on. */
export function normalizePreference(rec: unknown, opts: PreferenceNormalizeOptions = {}): NormalizedPair {
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec))
    return fail('not-an-object', `a record must be an object, got ${Array.isArray(rec) ? 'an array' : rec === null ? 'null' : typeof rec}`);
  const r = rec as Record<string, unknown>;
  const f = { ...DEFAULT_PREFERENCE_FIELDS, ...opts.fields };
  const roles = { ...ROLE_NAMES, ...opts.fields?.roles };
  const layout = opts.layout ?? detectPreferenceLayout(r, opts.fields);
  if (layout === null) return fail('unknown-layout', `no "${f.chosen}" and "${f.rejected}" fields (keys: ${Object.keys(r).slice(0, 8).join(', ')})`);
  let prompt: ChatMessage[];
  let chosen: ChatMessage[];
  let rejected: ChatMessage[];
  if (layout === 'hh') {
    const texts = [f.chosen, f.rejected].map((k) => (typeof r[k] === 'string' ? parseTranscript(r[k]) : undefined));
    if (texts[0] === undefined || texts[1] === undefined) return fail(r[f.chosen] === undefined || r[f.rejected] === undefined ? 'missing-field' : 'non-string-content', `"${f.chosen}" and "${f.rejected}" must be transcripts (strings)`);
    if (texts[0] === null || texts[1] === null) return fail('missing-field', 'a transcript does not start with "Human:" / "Assistant:" turns');
    const [a, b] = texts as [ChatMessage[], ChatMessage[]];
    const lastA = a.map((m) => m.role).lastIndexOf('assistant');
    const lastB = b.map((m) => m.role).lastIndexOf('assistant');
    if (lastA < 1 || lastB < 1) return fail('missing-field', 'a transcript has no "Assistant:" turn after a "Human:" turn');
    prompt = a.slice(0, lastA);
    if (lastA !== lastB || !prompt.every((m, i) => same(m, b[i]!))) return fail('no-shared-prompt', 'the transcripts differ before their last "Assistant:" turn');
    chosen = a.slice(lastA);
    rejected = b.slice(lastB);
  } else {
    const c = turnsOf(r[f.chosen], f.chosen, 'assistant', f, roles);
    if (!c.ok) return c;
    const j = turnsOf(r[f.rejected], f.rejected, 'assistant', f, roles);
    if (!j.ok) return j;
    chosen = c.messages;
    rejected = j.messages;
    if (opts.promptTemplate !== undefined) {
      const t = fillTemplate(opts.promptTemplate, r);
      if (!t.ok) return t;
      prompt = [{ role: 'user', content: t.text }];
    } else {
      const key = layout === 'sharegpt' ? f.conversations : f.prompt;
      if (r[key] === undefined || r[key] === null) {
        if (layout === 'sharegpt') return fail('missing-field', `no "${key}"`);
        // implicit prompt: both responses are whole conversations
        const n = sharedPrompt(chosen, rejected);
        if (n === 0) return fail(chosen.length > 1 ? 'no-shared-prompt' : 'missing-field', chosen.length > 1 ? 'chosen and rejected share no turns up to a user turn' : `no "${f.prompt}"`);
        prompt = chosen.slice(0, n);
        chosen = chosen.slice(n);
        rejected = rejected.slice(n);
      } else {
        const p = turnsOf(r[key], key, 'user', f, roles);
        if (!p.ok) return p;
        prompt = p.messages;
      }
    }
    if (prompt[0]?.role !== 'system') {
      const sys = r[f.system];
      if (sys !== undefined && sys !== null && sys !== '') {
        if (typeof sys !== 'string') return fail('non-string-content', `"${f.system}" is ${typeof sys}`);
        prompt.unshift({ role: 'system', content: sys });
      }
    }
  }
  if (opts.defaultSystem !== undefined && prompt[0]?.role !== 'system') prompt.unshift({ role: 'system', content: opts.defaultSystem });
  const bad = checkPrompt(prompt) ?? checkResponse(chosen, f.chosen) ?? checkResponse(rejected, f.rejected);
  if (bad) return bad;
  if (chosen.length === rejected.length && chosen.every((m, i) => same(m, rejected[i]!))) return fail('identical-responses', 'chosen and rejected are the same');
  return { ok: true, pair: { prompt, chosen, rejected } };
}
