// Generated junk for the labelled filter set: the kinds of text a web or OCR crawl brings in that
// the quality filters must drop (machine-repeated text, boilerplate pages, tables of numbers,
// garbled OCR-like text, keyword spam), in English and Chinese, as JSONL records
// {id, text, kind, category}. Deterministic from the seed; every kind is built from word lists
// of the domain so that it is not told apart by its vocabulary, only by its shape.
import { PatentGPTError } from '../errors.js';

export const JUNK_KINDS = ['repeated', 'boilerplate', 'numbers', 'garbled', 'spam', 'mojibake'] as const;
export type JunkKind = (typeof JUNK_KINDS)[number];

export interface JunkDocument {
  id: string;
  kind: JunkKind;
  category: string;
  text: string;
}

const EN_WORDS = ('the a an of to in for with on by that which said first second wherein comprising apparatus method system device housing '
  + 'member valve sensor circuit signal processor memory layer substrate surface portion end shaft motor fluid pressure temperature '
  + 'control unit data network terminal user image light module assembly plate frame spring cover body element configured coupled '
  + 'disposed adjacent plurality least one each having connected provided formed extending between within respective claim claims '
  + 'invention embodiment according present example figure shown described structure material composition compound patent law court '
  + 'section shall may any person office application right owner article provision regulation').split(' ');
const ZH_CHARS = '本发明涉及一种装置方法系统其特征在于包括所述第一二三部件连接设置用于控制信号处理单元数据网络终端用户图像模块组件板框架弹簧盖体元件专利权人申请法律规定条款国务院行政部门管理侵犯赔偿应当依照实施'.split('');
const EN_BOILER = [
  'Home | About Us | Contact | Careers | Press', 'Skip to main content', 'This website uses cookies to improve your experience. Accept all cookies',
  'Privacy Policy | Terms of Use | Cookie Settings', 'Copyright (c) 2024 Example Corp. All rights reserved.', 'Sign in | Register | Forgot password?',
  'Follow us on Facebook Twitter LinkedIn YouTube', 'Subscribe to our newsletter', 'Click here to learn more', 'Back to top',
  'Share this page: Email Print', 'Related links', 'Read more >>', 'Search this site', 'Site map | Accessibility | Feedback', 'Loading...',
];
const ZH_BOILER = ['首页 | 关于我们 | 联系我们 | 加入我们', '版权所有 © 2024 某某公司 保留所有权利', '本网站使用cookie以改善您的体验', '登录 | 注册 | 忘记密码', '关注我们的微信公众号', '点击这里了解更多', '返回顶部', '网站地图 | 隐私政策 | 使用条款', '分享到：微博 微信 QQ空间', '加载中...'];
const EN_SPAM = ['patent lawyer', 'cheap', 'best', 'patent attorney', 'free consultation', 'file patent online', 'trademark', 'low cost', 'near me', 'buy now', 'discount', 'top rated'];
const ZH_SPAM = ['专利申请', '代理', '最便宜', '商标注册', '免费咨询', '快速授权', '专利转让', '加急', '包过', '低价'];
const OCR_NOISE = '|l1I!;:,.`\'~^*°»«¢£¥§¤0OoQ%#@&rnmcevuw ';

/** A small deterministic generator (LCG), enough for shuffling word lists. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = (seed >>> 0) || 1;
  }
  next(): number {
    this.s = (Math.imul(this.s, 1664525) + 1013904223) >>> 0;
    return this.s / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
}

function enSentence(r: Rng, words: number): string {
  const w: string[] = [];
  for (let i = 0; i < words; i++) w.push(r.pick(EN_WORDS));
  const s = w.join(' ');
  return s[0]!.toUpperCase() + s.slice(1) + '.';
}

function zhSentence(r: Rng, chars: number): string {
  let s = '';
  for (let i = 0; i < chars; i++) s += r.pick(ZH_CHARS);
  return s + '。';
}

/** One junk document of a kind, in English or Chinese, of roughly `size` words (characters for Chinese). */
export function junkDocument(kind: JunkKind, zh: boolean, size: number, r: Rng): string {
  const sentence = (): string => (zh ? zhSentence(r, 12 + r.int(20)) : enSentence(r, 8 + r.int(14)));
  const unitsOf = (s: string): number => (zh ? s.length : s.split(' ').length);
  const lines: string[] = [];
  let units = 0;
  const push = (s: string): void => {
    lines.push(s);
    units += unitsOf(s);
  };
  switch (kind) {
    case 'repeated': {
      // a paragraph of a few sentences, emitted over and over, as a broken generator or a
      // template page does: sometimes as lines, sometimes run together in one line
      const para = Array.from({ length: 1 + r.int(3) }, sentence).join(zh ? '' : ' ');
      const oneLine = r.next() < 0.5;
      const parts: string[] = [];
      while (units < size || parts.length < 3) {
        parts.push(para);
        units += unitsOf(para);
      }
      return oneLine ? parts.join(zh ? '' : ' ') : parts.join('\n');
    }
    case 'boilerplate': {
      const pool = zh ? ZH_BOILER : EN_BOILER;
      while (units < size) push(r.next() < 0.9 ? r.pick(pool) : sentence());
      return lines.join('\n');
    }
    case 'numbers': {
      const cols = 4 + r.int(6);
      while (units < size) {
        const row: string[] = [];
        for (let c = 0; c < cols; c++) row.push(r.next() < 0.5 ? String(r.int(100000)) : (r.next() * 1000).toFixed(2));
        push(row.join(r.next() < 0.5 ? '\t' : '  '));
      }
      return lines.join('\n');
    }
    case 'garbled': {
      // OCR of a bad scan: characters replaced by look-alikes and noise, words broken and run together
      while (units < size) {
        let s = '';
        for (const ch of sentence()) {
          const u = r.next();
          if (u < 0.35) s += OCR_NOISE[r.int(OCR_NOISE.length)];
          else if (u < 0.45) s += ' ';
          else if (u < 0.5) continue;
          else s += ch;
        }
        push(s);
      }
      return lines.join(r.next() < 0.5 ? '\n' : ' ');
    }
    case 'spam': {
      const kw = zh ? ZH_SPAM : EN_SPAM;
      const chosen = Array.from({ length: 3 + r.int(3) }, () => r.pick(kw));
      const words: string[] = [];
      while (units < size) {
        const w = r.next() < 0.9 ? r.pick(chosen) : r.pick(kw);
        words.push(w);
        units += unitsOf(w);
      }
      return words.join(zh ? (r.next() < 0.5 ? ' ' : '，') : ' ');
    }
    case 'mojibake': {
      // UTF-8 text decoded as Latin-1 (or cp1252) somewhere upstream
      while (units < size) push(sentence());
      const text = lines.join('\n');
      return zh ? Buffer.from(text, 'utf8').toString('latin1') : Buffer.from(text.replace(/e/g, 'é').replace(/a/g, 'ä'), 'utf8').toString('latin1');
    }
  }
}

/**
 * `count` junk documents spread over the kinds and the categories given (round-robin), half of
 * them Chinese for the kinds where that makes sense, sizes from 60 to 3000 words.
 */
export function junkDocuments(count: number, categories: readonly string[], seed = 1): JunkDocument[] {
  if (!Number.isSafeInteger(count) || count < 0) throw new PatentGPTError('E_ARGUMENT', `junkDocuments: count must be an integer >= 0, got ${count}`);
  if (categories.length === 0) throw new PatentGPTError('E_ARGUMENT', 'junkDocuments: name at least one category');
  const r = new Rng(seed);
  const out: JunkDocument[] = [];
  for (let i = 0; i < count; i++) {
    const kind = JUNK_KINDS[i % JUNK_KINDS.length]!;
    const category = categories[Math.floor(i / JUNK_KINDS.length) % categories.length]!;
    const zh = r.next() < 0.5;
    const size = Math.round(60 * Math.exp(r.next() * Math.log(50)));
    out.push({ id: `junk-${kind}-${i}`, kind, category, text: junkDocument(kind, zh, size, r) });
  }
  return out;
}

export { Rng as JunkRng };
