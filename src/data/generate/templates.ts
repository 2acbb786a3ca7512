// Prompt templates for rewriting and synthesis. Each template turns a Document into chat messages
// (in English or Chinese, following the document's language), parses the model's reply into
// output records, and has an extractive reply of its own (the offline backend's answer: built
// from the document by rules, no model). Replies that cannot be used are counted, never thrown.
//
//   rewrite-to-prose   patent text (title, abstract, claims, description) -> clean prose
//   patent-to-qa       a patent -> N question/answer pairs, one record each
//   claim-to-abstract  the claims -> an abstract (an instruction/output pair)
//   sft-instruction    a patent -> an instruction a user could give and the ideal response
import { PatentGPTError } from '../../errors.js';
import type { Category, Document } from '../document.js';
import { identifyLanguage } from '../filters.js';
import type { ChatMessage } from './types.js';

export type TemplateName = 'rewrite-to-prose' | 'patent-to-qa' | 'claim-to-abstract' | 'sft-instruction';
export const TEMPLATE_NAMES: readonly TemplateName[] = ['rewrite-to-prose', 'patent-to-qa', 'claim-to-abstract', 'sft-instruction'];

/** Prompts exist in these languages; any other document language gets the English prompt. */
export type PromptLang = 'en' | 'zh';

export interface TemplateOptions {
  /** Longest excerpt of the document put in a prompt, in characters (default 6000). */
  maxSourceChars?: number;
  /** Question/answer pairs asked for by patent-to-qa (default 3). */
  questions?: number;
}

/** One generated record's content; pairs carry the instruction (or question) and the output (or answer). */
export interface SynthOutput {
  text: string;
  instruction?: string;
  output?: string;
}

export type ReplyFailure = 'empty-reply' | 'unparsable-reply';

export interface ParsedReply {
  outputs: SynthOutput[];
  /** Parts of the reply skipped as malformed (a question without an answer, ...). */
  malformed: number;
  /** Why nothing could be used, when outputs is empty. */
  failure?: ReplyFailure;
}

export interface Template {
  readonly name: TemplateName;
  /** Bumped when the prompt changes, so outputs say which prompt made them. */
  readonly version: number;
  readonly description: string;
  /** Category of the records it writes. */
  category(doc: Document): Category;
  /** The document field that must be non-empty ('text' for any document). */
  readonly requires: 'text' | 'claims';
  render(doc: Document, lang: PromptLang, opts?: TemplateOptions): ChatMessage[];
  parse(reply: string, doc: Document, lang: PromptLang, opts?: TemplateOptions): ParsedReply;
  /** The offline backend's reply: extractive, deterministic, in the format parse() reads. */
  offlineReply(doc: Document, lang: PromptLang, opts?: TemplateOptions): string;
}

// ---------------------------------------------------------------- text helpers

/** The prompt language of a document: its lang when set, else identified from its text. */
export function promptLang(doc: Document): PromptLang {
  const lang = doc.lang && doc.lang !== 'und' ? doc.lang : identifyLanguage(doc.text || joinFields(doc), 2000).lang;
  return lang === 'zh' ? 'zh' : 'en';
}

function joinFields(doc: Document): string {
  return [doc.title, doc.abstract, doc.claims, doc.description].filter((s) => s).join('\n');
}

const collapse = (s: string): string => s.replace(/[ \t\r\f\v]+/g, ' ').replace(/\n\s*\n\s*/g, '\n\n').replace(/ ?\n ?/g, '\n').trim();

/** s cut to at most n characters, at a sentence or word end when one is near, marked with an ellipsis. */
export function clip(s: string, n: number): string {
  s = collapse(s);
  if (s.length <= n) return s;
  const head = s.slice(0, n);
  const sentence = head.search(/[.!?。！？；;][^.!?。！？；;]*$/) + 1;
  const cut = sentence > n * 0.6 ? sentence : head.lastIndexOf(' ');
  return (cut > n * 0.6 ? head.slice(0, cut) : head).trimEnd() + '…';
}

/** The first sentence (or the first n characters) of a text. */
export function firstSentences(s: string, count = 1, max = 400): string {
  const t = collapse(s).replace(/\n+/g, ' ');
  let end = 0;
  const re = /[.!?。！？](?=\s|$|[^\d.])/g;
  for (let i = 0; i < count; i++) {
    const m = re.exec(t);
    if (!m) {
      end = t.length;
      break;
    }
    end = m.index + 1;
  }
  return clip(t.slice(0, end || t.length), max);
}

const LABELS: Record<PromptLang, Record<'title' | 'abstract' | 'claims' | 'description' | 'text', string>> = {
  en: { title: 'Title', abstract: 'Abstract', claims: 'Claims', description: 'Description', text: 'Text' },
  zh: { title: '标题', abstract: '摘要', claims: '权利要求', description: '说明书', text: '正文' },
};

/** The document as labelled sections within maxChars: abstract up to a quarter, claims up to a third, the rest description. */
export function sourceBlock(doc: Document, lang: PromptLang, maxChars: number): string {
  const L = LABELS[lang];
  const sep = lang === 'zh' ? '：' : ':';
  const parts: string[] = [];
  let left = maxChars;
  const add = (label: string, value: string, share: number): void => {
    if (!value.trim() || left <= 0) return;
    const v = clip(value, Math.max(1, Math.floor(Math.min(left, maxChars * share))));
    parts.push(`${label}${sep}\n${v}`);
    left -= v.length;
  };
  if (doc.title || doc.abstract || doc.claims || doc.description) {
    add(L.title, doc.title, 0.1);
    add(L.abstract, doc.abstract, 0.25);
    add(L.claims, doc.claims, 0.34);
    add(L.description, doc.description, 1);
  } else add(L.text, doc.text, 1);
  return parts.join('\n\n');
}

/** The reply without code fences, a chatty opening line ("Here is ...:") or a leading label. */
export function cleanReply(reply: string, label?: RegExp): string {
  let s = reply.replace(/\r\n?/g, '\n').trim();
  s = s.replace(/^(?:sure|certainly|okay|ok|here is|here's|below is|以下是|好的|当然)[^\n]{0,80}[:：]\s*\n+/i, '').trim();
  s = s.replace(/^```[a-z]*\n([\s\S]*?)\n?```$/i, '$1').trim();
  if (label) s = s.replace(label, '').trim();
  return s;
}

/**
 * Pairs of (first, second) marked by line prefixes (Q:/A:, 问：/答：, Instruction:/Response:);
 * list markers and bold are ignored; a pair missing a half counts as malformed.
 */
export function parsePairs(reply: string, first: RegExp, second: RegExp): { pairs: [string, string][]; malformed: number } {
  const pairs: [string, string][] = [];
  let malformed = 0;
  let cur: { a: string[]; b: string[] | null } | null = null;
  const close = (): void => {
    if (!cur) return;
    const a = cur.a.join('\n').trim();
    const b = (cur.b ?? []).join('\n').trim();
    if (a && b) pairs.push([a, b]);
    else malformed++;
    cur = null;
  };
  for (const raw of cleanReply(reply).split('\n')) {
    const line = raw.replace(/\*\*/g, '').replace(/^\s*(?:[-*•>]|#+|\d+[.)、])\s*/, '').trim();
    const m1 = first.exec(line);
    const m2 = m1 ? null : second.exec(line);
    if (m1) {
      close();
      cur = { a: [line.slice(m1[0].length)], b: null };
    } else if (m2) {
      if (cur && cur.b === null) cur.b = [line.slice(m2[0].length)];
      else {
        malformed++; // an answer without its question
        close();
      }
    } else if (cur) (cur.b ?? cur.a).push(line);
  }
  close();
  return { pairs, malformed };
}

function failure(reply: string): ReplyFailure {
  return reply.trim() === '' ? 'empty-reply' : 'unparsable-reply';
}

function proseOf(s: string): string {
  // claim numbers and bare reference numerals in parentheses are layout, not prose
  return collapse(s.replace(/^\s*\d+\s*[.)]\s*/gm, '').replace(/\s*\((?:\d+[a-z]?(?:,\s*)?)+\)/g, ''));
}

function firstClaim(claims: string): string {
  const m = /^\s*1\s*[.)]?\s*([\s\S]*?)(?=\n\s*2\s*[.)]|$)/.exec(claims);
  return collapse(m ? m[1]! : claims);
}

function instructionOutput(text: string, instruction: string, output: string): SynthOutput {
  return { text, instruction, output };
}

// ---------------------------------------------------------------- the templates

const SYSTEM: Record<PromptLang, string> = {
  en: 'You are an expert patent analyst and technical writer. You only state what the given patent text supports.',
  zh: '你是一名资深专利分析师和技术写作专家，只陈述所给专利文本能够支持的内容。',
};

const rewrite: Template = {
  name: 'rewrite-to-prose',
  version: 1,
  description: 'rewrites patent text (title, abstract, claims, description) into clean, readable prose that keeps every technical fact',
  requires: 'text',
  category: (doc) => doc.category,
  render(doc, lang, opts = {}) {
    const src = sourceBlock(doc, lang, opts.maxSourceChars ?? 6000);
    const user = lang === 'zh'
      ? `请将下面的专利文本改写为通顺、清晰的说明性文字，面向一般技术读者。保留全部技术事实、数值和术语；去掉权利要求编号、附图标记、法律套话和格式标记；不要添加原文没有的内容。只输出改写后的正文。\n\n<专利>\n${src}\n</专利>`
      : `Rewrite the patent text below as clean, readable prose for a general technical reader. Keep every technical fact, number and term; drop claim numbering, reference numerals, legal boilerplate and markup; add nothing the text does not say. Reply with the rewritten text only.\n\n<patent>\n${src}\n</patent>`;
    return [{ role: 'system', content: SYSTEM[lang] }, { role: 'user', content: user }];
  },
  parse(reply) {
    const text = cleanReply(reply, /^(?:rewritten text|rewrite|改写后?的?正文|改写)\s*[:：]\s*/i);
    return text ? { outputs: [{ text }], malformed: 0 } : { outputs: [], malformed: 0, failure: 'empty-reply' };
  },
  offlineReply(doc, _lang, opts = {}) {
    const parts = doc.title || doc.abstract || doc.description || doc.claims ? [doc.title, doc.abstract, doc.description, doc.claims] : [doc.text];
    return clip(parts.filter((p) => p.trim()).map(proseOf).join('\n\n'), opts.maxSourceChars ?? 6000);
  },
};

const Q_MARK = /^(?:q|question|问题?)\s*\d*\s*[:：]\s*/i;
const A_MARK = /^(?:a|answer|答案?|回答)\s*\d*\s*[:：]\s*/i;

const qa: Template = {
  name: 'patent-to-qa',
  version: 1,
  description: 'asks for N question/answer pairs answerable from the patent; each pair becomes one record (category qa)',
  requires: 'text',
  category: () => 'qa',
  render(doc, lang, opts = {}) {
    const n = opts.questions ?? 3;
    const src = sourceBlock(doc, lang, opts.maxSourceChars ?? 6000);
    const user = lang === 'zh'
      ? `根据下面的专利，写出${n}组专利审查员、代理人或工程师可能提出的问答，每个问题都能仅凭原文回答。严格使用以下格式，问答组之间空一行：\n问：<问题>\n答：<答案>\n\n<专利>\n${src}\n</专利>`
      : `Write ${n} question-and-answer pairs that a patent examiner, attorney or engineer might ask about the patent below, each answerable from the text alone. Use exactly this format, with a blank line between pairs:\nQ: <question>\nA: <answer>\n\n<patent>\n${src}\n</patent>`;
    return [{ role: 'system', content: SYSTEM[lang] }, { role: 'user', content: user }];
  },
  parse(reply, _doc, lang) {
    const { pairs, malformed } = parsePairs(reply, Q_MARK, A_MARK);
    const outputs = pairs.map(([q, a]) => instructionOutput(lang === 'zh' ? `问：${q}\n答：${a}` : `Question: ${q}\nAnswer: ${a}`, q, a));
    return outputs.length > 0 ? { outputs, malformed } : { outputs, malformed, failure: failure(reply) };
  },
  offlineReply(doc, lang, opts = {}) {
    const zh = lang === 'zh';
    const about = doc.abstract || doc.text;
    const qas: [string, string][] = [];
    const title = doc.title.trim();
    if (about.trim())
      qas.push(zh
        ? [title ? `专利《${title}》的发明内容是什么？` : '这件专利的发明内容是什么？', firstSentences(about, 2)]
        : [title ? `What is the invention of the patent "${title}"?` : 'What is the invention of this patent?', firstSentences(about, 2)]);
    if (doc.claims.trim()) qas.push(zh ? ['权利要求1保护什么？', firstSentences(firstClaim(doc.claims))] : ['What does claim 1 cover?', firstSentences(firstClaim(doc.claims))]);
    if (doc.description.trim()) qas.push(zh ? ['本发明涉及什么技术领域？', firstSentences(doc.description)] : ['What field does the invention relate to?', firstSentences(doc.description)]);
    return qas.slice(0, opts.questions ?? 3).map(([q, a]) => (zh ? `问：${q}\n答：${a}` : `Q: ${q}\nA: ${a}`)).join('\n\n');
  },
};

const claimToAbstract: Template = {
  name: 'claim-to-abstract',
  version: 1,
  description: "writes a patent abstract from the claims; the record pairs the claims (instruction) with the abstract (output)",
  requires: 'claims',
  category: () => 'sft',
  render(doc, lang, opts = {}) {
    const claims = clip(doc.claims, opts.maxSourceChars ?? 6000);
    const user = lang === 'zh'
      ? `下面是一件专利的权利要求。请据此撰写该专利的摘要：一段不超过300字的文字，说明发明是什么及其主要技术特征，采用专利摘要的文体。只输出摘要。\n\n<权利要求>\n${claims}\n</权利要求>`
      : `Below are the claims of a patent. Write the patent's abstract from them: one paragraph of at most 150 words that states what the invention is and its main technical features, in the style of a patent abstract. Reply with the abstract only.\n\n<claims>\n${claims}\n</claims>`;
    return [{ role: 'system', content: SYSTEM[lang] }, { role: 'user', content: user }];
  },
  parse(reply, doc, lang, opts = {}) {
    const abstract = cleanReply(reply, /^(?:abstract|摘要)\s*[:：]\s*/i);
    if (!abstract) return { outputs: [], malformed: 0, failure: 'empty-reply' };
    const claims = clip(doc.claims, opts.maxSourceChars ?? 6000);
    const instruction = lang === 'zh' ? `根据以下权利要求撰写专利摘要：\n\n${claims}` : `Write the abstract of a patent with these claims:\n\n${claims}`;
    return { outputs: [instructionOutput(`${instruction}\n\n${lang === 'zh' ? '摘要：' : 'Abstract: '}${abstract}`, instruction, abstract)], malformed: 0 };
  },
  offlineReply(doc) {
    return doc.abstract.trim() ? collapse(doc.abstract) : firstSentences(firstClaim(doc.claims), 1, 1000);
  },
};

const I_MARK = /^(?:instruction|指令)\s*\d*\s*[:：]\s*/i;
const R_MARK = /^(?:response|answer|output|回答|回复|答案)\s*\d*\s*[:：]\s*/i;

const sft: Template = {
  name: 'sft-instruction',
  version: 1,
  description: 'asks for an instruction a user might give an IP assistant about the patent, with the ideal grounded response (category sft)',
  requires: 'text',
  category: () => 'sft',
  render(doc, lang, opts = {}) {
    const src = sourceBlock(doc, lang, opts.maxSourceChars ?? 6000);
    const user = lang === 'zh'
      ? `根据下面的专利，写出一条用户可能向知识产权助手提出的指令（问题、撰写或分析任务），以及一个以该专利为依据、准确完整的理想回答。严格使用以下格式：\n指令：<指令>\n回答：<回答>\n\n<专利>\n${src}\n</专利>`
      : `From the patent below, write one instruction a user might give an intellectual-property assistant (a question, or a drafting or analysis task) and the ideal response, accurate and grounded in the patent. Use exactly this format:\nInstruction: <instruction>\nResponse: <response>\n\n<patent>\n${src}\n</patent>`;
    return [{ role: 'system', content: SYSTEM[lang] }, { role: 'user', content: user }];
  },
  parse(reply) {
    const { pairs, malformed } = parsePairs(reply, I_MARK, R_MARK);
    const outputs = pairs.map(([i, r]) => instructionOutput(`${i}\n\n${r}`, i, r));
    return outputs.length > 0 ? { outputs, malformed } : { outputs, malformed, failure: failure(reply) };
  },
  offlineReply(doc, lang) {
    const title = doc.title.trim();
    const answer = firstSentences(doc.abstract || doc.description || doc.text, 2);
    return lang === 'zh'
      ? `指令：用两句话概括${title ? `专利《${title}》` : '这件专利'}的发明内容。\n回答：${answer}`
      : `Instruction: Summarize the invention of ${title ? `the patent "${title}"` : 'this patent'} in two sentences.\nResponse: ${answer}`;
  },
};

export const TEMPLATES: Readonly<Record<TemplateName, Template>> = {
  'rewrite-to-prose': rewrite,
  'patent-to-qa': qa,
  'claim-to-abstract': claimToAbstract,
  'sft-instruction': sft,
};

/** The template of a name; an unknown name is a clear error listing the known ones. */
export function getTemplate(name: string): Template {
  const t = (TEMPLATES as Record<string, Template>)[name];
  if (!t) throw new PatentGPTError('E_ARGUMENT', `unknown template '${name}': use one of ${TEMPLATE_NAMES.join(', ')}`);
  return t;
}
