// Jinja templates as lm-evaluation-harness renders them (jinja2 Environment with
// keep_trailing_newline=True, no trim_blocks, no lstrip_blocks), on @huggingface/jinja. That
// library's Template turns on trim_blocks and lstrip_blocks (as transformers' chat templates
// want) and drops one trailing newline, so the template is tokenized here without those options,
// and a sentinel character keeps a trailing newline. Known differences from jinja2: a list
// renders as JSON (["a", "b"], Python prints ['a', 'b']), booleans as true/false, an undefined
// variable as an empty string (lm-eval's StrictUndefined raises), and lm-eval's regex_replace
// filter is absent.
import { Template, parse, tokenize } from '@huggingface/jinja';
import { PatentGPTError } from '../errors.js';

const SENTINEL = '\u{E000}';
const cache = new Map<string, Template>();

/** Renders a Jinja template with the fields of `doc`. */
export function renderJinja(template: string, doc: Record<string, unknown>, where = 'template'): string {
  let t = cache.get(template);
  if (!t) {
    t = new Template('');
    try {
      t.parsed = parse(tokenize(template + SENTINEL, {}));
    } catch (err) {
      throw new PatentGPTError('E_CONFIG', `${where}: not a valid Jinja template (${(err as Error).message}): ${JSON.stringify(template)}`);
    }
    cache.set(template, t);
  }
  let out: string;
  try {
    out = t.render(doc);
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${where}: rendering ${JSON.stringify(template)} failed: ${(err as Error).message}`);
  }
  return out.endsWith(SENTINEL) ? out.slice(0, -SENTINEL.length) : out;
}

/**
 * A Python literal as ast.literal_eval reads the ones lm-eval templates produce: lists, strings
 * in single or double quotes, numbers, True/False/None. JSON is tried first.
 */
export function parsePythonLiteral(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // not JSON: the Python reader below
  }
  let i = 0;
  const s = text;
  const fail = (why: string): never => {
    throw new PatentGPTError('E_CONFIG', `cannot read ${JSON.stringify(text.slice(0, 200))} as a Python literal: ${why} at ${i}`);
  };
  const ws = (): void => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  const value = (): unknown => {
    ws();
    const c = s[i];
    if (c === '[' || c === '(') {
      const close = c === '[' ? ']' : ')';
      i++;
      const out: unknown[] = [];
      ws();
      while (s[i] !== close) {
        out.push(value());
        ws();
        if (s[i] === ',') i++;
        else if (s[i] !== close) fail(`expected "," or "${close}"`);
        ws();
      }
      i++;
      return out;
    }
    if (c === "'" || c === '"') {
      i++;
      let out = '';
      while (i < s.length && s[i] !== c) {
        if (s[i] === '\\') {
          const e = s[i + 1]!;
          out += e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e;
          i += 2;
        } else out += s[i++];
      }
      if (s[i] !== c) fail('unclosed string');
      i++;
      return out;
    }
    const m = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|True|False|None)/.exec(s.slice(i));
    if (!m) return fail('unexpected character');
    i += m[0].length;
    return m[0] === 'True' ? true : m[0] === 'False' ? false : m[0] === 'None' ? null : Number(m[0]);
  };
  const v = value();
  ws();
  if (i !== s.length) fail('trailing text');
  return v;
}
