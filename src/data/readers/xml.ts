// A small, tolerant XML/SGML scanner for patent documents: enough XML to pull text out of USPTO
// full text (every format since 2001) fast, without a DTD and without giving up on the SGML-ish
// 2.4/2.5 grants. It checks nesting (a stray end tag or an unclosed element is "malformed") but
// not the full XML grammar, and it never throws on bad input: it returns an error string.

const NAMED: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', lsquo: '\u2018', rsquo: '\u2019',
  ldquo: '\u201c', rdquo: '\u201d', mdash: '\u2014', ndash: '\u2013', deg: '\u00b0', plusmn: '\u00b1',
  times: '\u00d7', divide: '\u00f7', micro: '\u00b5', middot: '\u00b7', bull: '\u2022', hellip: '\u2026',
  le: '\u2264', ge: '\u2265', ne: '\u2260', minus: '\u2212', sup2: '\u00b2', sup3: '\u00b3', frac12: '\u00bd',
  frac14: '\u00bc', frac34: '\u00be', copy: '\u00a9', reg: '\u00ae', trade: '\u2122', sect: '\u00a7',
  para: '\u00b6', prime: '\u2032', Prime: '\u2033', alpha: '\u03b1', beta: '\u03b2', gamma: '\u03b3',
  delta: '\u03b4', Delta: '\u0394', mu: '\u03bc', pi: '\u03c0', lambda: '\u03bb', sigma: '\u03c3',
  Omega: '\u03a9', omega: '\u03c9', theta: '\u03b8', phi: '\u03c6', epsi: '\u03b5', agr: '\u03b1',
  bgr: '\u03b2', ggr: '\u03b3', dgr: '\u03b4', Dgr: '\u0394', mgr: '\u03bc', pgr: '\u03c0', eegr: '\u03b7',
  lgr: '\u03bb', sgr: '\u03c3', thgr: '\u03b8', ohgr: '\u03c9', OHgr: '\u03a9', phgr: '\u03c6',
  rarr: '\u2192', larr: '\u2190', uarr: '\u2191', darr: '\u2193', infin: '\u221e', sim: '\u223c',
  ang: '\u2220', dot: '\u02d9', cir: '\u25cb', square: '\u25a1', equals: '=', plus: '+', lsqb: '[', rsqb: ']',
  num: '#', percnt: '%', dollar: '$', ast: '*', sol: '/', bsol: '\\', verbar: '|', lcub: '{', rcub: '}',
  excl: '!', quest: '?', commat: '@', lowbar: '_', circ: '^', tilde: '~', grave: '`', acute: '\u00b4',
  uml: '\u00a8', cedil: '\u00b8', eacute: '\u00e9', egrave: '\u00e8', aacute: '\u00e1', agrave: '\u00e0',
  uuml: '\u00fc', ouml: '\u00f6', auml: '\u00e4', Uuml: '\u00dc', Ouml: '\u00d6', Auml: '\u00c4',
  szlig: '\u00df', ntilde: '\u00f1', ccedil: '\u00e7', oacute: '\u00f3', iacute: '\u00ed', uacute: '\u00fa',
  angst: '\u00c5', thinsp: ' ', ensp: ' ', emsp: ' ', dagger: '\u2020', Dagger: '\u2021',
};

/** Replaces character references and known named entities; unknown names are kept as written. */
export function decodeEntities(s: string): string {
  if (s.indexOf('&') < 0) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[A-Za-z][A-Za-z0-9]{0,15});/g, (m, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : '';
    }
    return NAMED[e] ?? m;
  });
}

/** What a scan sees: open tags (with attributes as a raw string), text and close tags. */
export interface XmlHandler {
  open(name: string, attrs: string, selfClosing: boolean): void;
  text(text: string): void;
  close(name: string): void;
  /** False while the handler ignores text (the scan then neither cuts nor decodes it). */
  wantsText?(): boolean;
}

/**
 * Scans one document. Returns null when it is well nested, else what is wrong (with the offset).
 * End tags that close an ancestor auto-close the elements between (SGML omits some end tags);
 * an end tag with no open match, or elements left open at the end, are errors.
 */
export function scanXml(s: string, h: XmlHandler): string | null {
  const stack: string[] = [];
  let i = 0;
  const n = s.length;
  while (i < n) {
    const lt = s.indexOf('<', i);
    const end = lt < 0 ? n : lt;
    if (end > i && (h.wantsText?.() ?? true)) h.text(decodeEntities(s.slice(i, end)));
    if (lt < 0) break;
    const c = s.charCodeAt(lt + 1);
    if (c === 0x21 /* ! */) {
      if (s.startsWith('<!--', lt)) {
        const e = s.indexOf('-->', lt + 4);
        if (e < 0) return `unterminated comment at ${lt}`;
        i = e + 3;
      } else if (s.startsWith('<![CDATA[', lt)) {
        const e = s.indexOf(']]>', lt + 9);
        if (e < 0) return `unterminated CDATA at ${lt}`;
        if (h.wantsText?.() ?? true) h.text(s.slice(lt + 9, e));
        i = e + 3;
      } else {
        // <!DOCTYPE ... [ internal subset ]>: skip, honouring one level of brackets.
        const br = s.indexOf('[', lt);
        const gt = s.indexOf('>', lt);
        if (gt < 0) return `unterminated declaration at ${lt}`;
        if (br >= 0 && br < gt) {
          const close = s.indexOf(']', br);
          const gt2 = close < 0 ? -1 : s.indexOf('>', close);
          if (gt2 < 0) return `unterminated declaration at ${lt}`;
          i = gt2 + 1;
        } else i = gt + 1;
      }
      continue;
    }
    if (c === 0x3f /* ? */) {
      const e = s.indexOf('?>', lt + 2);
      if (e < 0) return `unterminated processing instruction at ${lt}`;
      i = e + 2;
      continue;
    }
    const gt = findTagEnd(s, lt + 1);
    if (gt < 0) return `unterminated tag at ${lt}`;
    if (c === 0x2f /* / */) {
      // the common case, the innermost element's end tag as written: no string cut
      const top = stack[stack.length - 1];
      if (top !== undefined && gt - lt - 2 === top.length && s.startsWith(top, lt + 2)) {
        h.close(stack.pop()!);
        i = gt + 1;
        continue;
      }
      const name = s.slice(lt + 2, gt).trim();
      let k = stack.length - 1;
      while (k >= 0 && stack[k] !== name) k--;
      if (k < 0) return `end tag </${name}> at ${lt} closes nothing open`;
      while (stack.length > k) h.close(stack.pop()!);
    } else {
      let j = lt + 1;
      while (j < gt && !isSpace(s.charCodeAt(j)) && s.charCodeAt(j) !== 0x2f) j++;
      const name = s.slice(lt + 1, j);
      if (name.length === 0 || !isNameStart(name.charCodeAt(0))) return `bad tag name at ${lt}`;
      const self = s.charCodeAt(gt - 1) === 0x2f;
      const attrs = s.slice(j, self ? gt - 1 : gt);
      h.open(name, attrs, self);
      if (self) h.close(name);
      else stack.push(name);
    }
    i = gt + 1;
  }
  if (stack.length > 0) return `unclosed <${stack[stack.length - 1]}> at end of document`;
  return null;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function isNameStart(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x3a || c > 0x7f;
}

// The '>' ending a tag that starts at `from`, skipping quoted attribute values.
function findTagEnd(s: string, from: number): number {
  let q = 0;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (q !== 0) {
      if (c === q) q = 0;
    } else if (c === 0x22 || c === 0x27) q = c;
    else if (c === 0x3e) return i;
    else if (c === 0x3c) return -1; // a '<' inside a tag: the tag was never closed
  }
  return -1;
}

/** The value of attribute `name` in a raw attribute string, or undefined. */
export function attr(attrs: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|\\s)${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`).exec(attrs);
  return m ? decodeEntities(m[1] ?? m[2] ?? '') : undefined;
}

// Runs of [ \t\r\f\v\u00a0] other than a lone space (a lone space needs no replacing).
const LINE_BLANKS = /[\t\r\f\v\u00a0][ \t\r\f\v\u00a0]*| [ \t\r\f\v\u00a0]+/g;

/** Collapses runs of blanks in each line, trims lines and drops blank lines (a block is a line). */
export function tidy(s: string): string {
  return s
    .split('\n')
    .map((l) => l.replace(LINE_BLANKS, ' ').trim())
    .filter((l) => l.length > 0)
    .join('\n')
    .trim();
}
