// The quality filters fit the domain: a labelled set built from ../shared/data (real patents,
// applications and statutes: 'good') plus generated junk (machine-repeated text, boilerplate
// pages, tables of numbers, garbled OCR, keyword spam, mojibake: 'junk'), run through
// `data prep` itself with the thresholds of examples/prep.json; the report's filterQuality
// section gives precision/recall per category. The thresholds the example shipped with before
// (one set for every category, whole documents as one bag of n-grams) fail the same check.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { emptyDocument } from '../../src/data/document.js';
import { applyFilters, buildFilters, FilterSet, mergeFilterConfigs, noiseStats, sectionsOf, type FilterConfig } from '../../src/data/filters.js';
import { junkDocuments } from '../../src/data/junk.js';
import { prep, validatePrepConfig, type PrepReport } from '../../src/data/prep.js';
import { readDocuments } from '../../src/data/readers/index.js';
import { summary } from '../../src/cli/data.js';

const DATA = process.env.PATENTGPT_DATA ?? path.resolve(__dirname, '../../../shared/data');
const have = fs.existsSync(path.join(DATA, 'uspto-fulltext-rubyxml'));
const EXAMPLE = path.resolve(__dirname, '../../examples/prep.json');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-filterq-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** The example's filters before this change (for the contrast). */
const OLD_FILTERS: FilterConfig = {
  minWords: 50, maxWords: 2000000, meanWordLength: [2.5, 12], maxDigitRatio: 0.35, maxSymbolRatio: 0.3,
  maxDupLineFraction: 0.3, maxDupLineCharFraction: 0.25,
  maxTopNgramCharFraction: { 2: 0.2, 3: 0.18, 4: 0.16 },
  maxDupNgramCharFraction: { 5: 0.4, 6: 0.38, 7: 0.36, 8: 0.34, 9: 0.32, 10: 0.3 },
  boilerplate: ['^this patent is subject to a terminal disclaimer\\.?$', 'all rights reserved', '^copyright \\(c\\)'],
  maxBoilerplateFraction: 0.5, languages: ['en', 'zh'],
};

/** The labelled config: the example's patent, application and law inputs as 'good' (the
 *  PatentsView abstracts are left out: a tenth of them are 'NULL' records, not documents), and
 *  one junk file per category as 'junk'. Byte tokens; only the scan runs. */
function labelledConfig(out: string, filters?: FilterConfig) {
  const ex = JSON.parse(fs.readFileSync(EXAMPLE, 'utf8')) as { inputs: { path: string; category?: string }[]; filters: FilterConfig };
  const real = ex.inputs.filter((i) => (i.category === undefined || i.category === 'patent' || i.category === 'law') && !i.path.includes('patentsview'));
  const junkDir = path.join(root, 'junk');
  fs.mkdirSync(junkDir, { recursive: true });
  const cats = ['patent', 'application', 'law', 'general'];
  const junk = junkDocuments(600, cats, 7);
  for (const c of cats) fs.writeFileSync(path.join(junkDir, `${c}.jsonl`), junk.filter((j) => j.category === c).map((j) => JSON.stringify({ id: j.id, text: j.text })).join('\n') + '\n');
  const inputs = [
    ...real.map((i) => ({ ...i, path: path.resolve(path.dirname(EXAMPLE), i.path), label: 'good' })),
    ...cats.map((c) => ({ path: path.join(junkDir, `${c}.jsonl`), category: c, label: 'junk' })),
  ];
  return validatePrepConfig({ output: out, inputs, filters: filters ?? ex.filters, tokenizer: { type: 'byte' }, stages: { s: { weights: { patent: 1 } } } }, root);
}

describe('filters on the labelled set (real IP documents + generated junk)', () => {
  it.skipIf(!have)('example config: >= 95% of real patents, applications and laws kept and >= 95% of junk dropped, per category, reported by data prep (skips without ../shared/data)', async () => {
    const r: PrepReport = await prep(labelledConfig(path.join(root, 'new')), { phase: 'scan', workers: 0 });
    const q = r.filterQuality;
    console.log(summary(r, 'labelled', true).filter((l) => /^ {2}\w+: (in|good)|labelled|filters per/.test(l)).join('\n'));
    for (const c of ['patent', 'application', 'law']) {
      expect(q[c]!.good.in, c).toBeGreaterThan(c === 'patent' ? 600 : 70);
      expect(q[c]!.goodKept!, `${c}: real documents kept`).toBeGreaterThanOrEqual(0.95);
      expect(q[c]!.junkDropped!, `${c}: junk dropped`).toBeGreaterThanOrEqual(0.95);
      expect(q[c]!.recall).toBe(q[c]!.junkDropped);
      expect(q[c]!.precision!, `${c}: precision`).toBeGreaterThanOrEqual(0.85);
    }
    expect(q.general!.junkDropped!).toBeGreaterThanOrEqual(0.95);
    expect(summary(r, 'labelled', true).join('\n')).toMatch(/labelled inputs \(junk = positive\)[\s\S]*law: good \d+\/\d+ \(9\d\.\d%\), junk \d+\/\d+/);
  }, 300_000);

  it.skipIf(!have)("the example's former thresholds (one set for all, whole documents) drop most statutes and many patents (skips without ../shared/data)", async () => {
    const r = await prep(labelledConfig(path.join(root, 'old'), OLD_FILTERS), { phase: 'scan', workers: 0 });
    const q = r.filterQuality;
    console.log('former thresholds:', Object.entries(q).map(([c, v]) => `${c} good kept ${v.goodKept} junk dropped ${v.junkDropped}`).join('; '));
    expect(q.law!.goodKept!).toBeLessThan(0.2);
    expect(q.patent!.goodKept!).toBeLessThan(0.9);
  }, 300_000);
});

describe('domain filters', () => {
  it('thresholds per category: a category takes its byCategory values over the global ones; errors name the entry', () => {
    const claimLike = Array.from({ length: 6 }, (_, i) => `${i + 1}. The valve of claim 1, wherein the valve housing comprises a sealing ring made of rubber and the valve seat is made of steel.`).join('\n');
    const f = new FilterSet({ minWords: 20, maxDupNgramCharFraction: { 5: 0.15 }, byCategory: { patent: { maxDupNgramCharFraction: { 5: 1 } } } });
    const doc = (category: string) => Object.assign(emptyDocument('d', 's', category), { text: claimLike });
    expect(applyFilters(f.forCategory('general'), doc('general'))).toBe('dup-5gram');
    expect(applyFilters(f.forCategory('patent'), doc('patent'))).toBeNull();
    // an input's own value wins over its category's: global < category < input < input's category
    const merged = new FilterSet(mergeFilterConfigs({ minWords: 50, byCategory: { patent: { minWords: 40 } } }, { minWords: 5 }));
    const short = () => Object.assign(emptyDocument('d', 's', 'patent'), { text: 'a short claim of ten words about a valve here' });
    expect(applyFilters(merged.forCategory('patent'), short())).toBeNull();
    expect(applyFilters(new FilterSet(mergeFilterConfigs({ minWords: 50 }, { byCategory: { patent: { minWords: 40 } } })).forCategory('patent'), short())).toBe('too-few-words');
    expect(() => buildFilters({ byCategory: { law: { maxDupLineFraction: 2 } } })).toThrow(/filters\.byCategory\.law.*maxDupLineFraction/);
    expect(() => buildFilters({ byCategory: { law: { nope: 1 } as never } })).toThrow(/byCategory\.law: unknown field 'nope'/);
  });

  it('sections: cut where the claims begin and at line breaks; a long document is judged by the share of its sections that fail', () => {
    const para = (k: number) => `Paragraph ${k} describes the housing and the valve in words of its own, number ${k}.`;
    const description = Array.from({ length: 40 }, (_, k) => para(k)).join('\n');
    const claims = '1. A valve comprising a housing.\n2. The valve of claim 1, wherein the housing is steel.';
    const d = { text: `Title\n\n${description}\n\n${claims}`, claims };
    const parts = sectionsOf(d, 100_000, 1000);
    expect(parts.at(-1)).toBe(claims);
    expect(parts.slice(0, -1).every((p) => p.length <= 1000)).toBe(true);
    expect(parts.reduce((a, p) => a + p.length, 0)).toBeGreaterThan(d.text.length - 60);
    // a document whose first quarter repeats itself: one bag of n-grams drops it, sections keep it
    const rep = Array.from({ length: 12 }, () => 'the same sentence is said again and again in this part of the text').join('\n');
    let s = 7;
    const word = (): string => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return ['pa', 'ro', 'ki', 'mu', 'te', 'lo', 'vi', 'sa', 'ne', 'du'][s % 10]! + ['m', 'st', 'ng', 'l', 'x', 'rt', 'p', 'd'][(s >>> 8) % 8]! + ['a', 'o', 'e', 'i', 'u'][(s >>> 16) % 5]!;
    };
    const fresh = Array.from({ length: 120 }, () => Array.from({ length: 10 }, word).join(' ') + '.').join('\n');
    const text = `${rep}\n${fresh}`;
    const whole = buildFilters({ maxDupNgramCharFraction: { 5: 0.1 } });
    const bySection = buildFilters({ maxDupNgramCharFraction: { 5: 0.1 }, sections: { maxChars: 1000, maxFailedFraction: 0.5 } });
    const mk = () => Object.assign(emptyDocument('d', 's', 'patent'), { text });
    expect(applyFilters(whole, mk())).toBe('dup-5gram');
    expect(applyFilters(bySection, mk())).toBeNull();
    expect(applyFilters(bySection, Object.assign(emptyDocument('d', 's', 'patent'), { text: `${rep}\n${rep}\n${rep}` }))).toBe('dup-5gram');
  });

  it.skipIf(!have)('CJK n-grams in 2-character words keep a real Chinese statute that single characters drop (skips without ../shared/data)', async () => {
    const file = path.join(DATA, 'cn-ip-laws', '专利法(2020-10-17).md');
    let doc;
    for await (const it of readDocuments(file, { category: 'law', lang: 'zh' })) if (it.ok) doc = it.doc;
    const base: FilterConfig = { maxDupNgramCharFraction: { 5: 0.5, 7: 0.4, 10: 0.35 }, sections: { maxChars: 4000 } };
    const clone = () => ({ ...doc!, meta: {} });
    expect(applyFilters(buildFilters(base), clone())).toMatch(/^dup-\d+gram$/);
    expect(applyFilters(buildFilters({ ...base, cjkNgramChars: 2 }), clone())).toBeNull();
    // and machine-repeated Chinese is still dropped with 2-character words
    const junk = junkDocuments(60, ['law'], 3).filter((j) => j.kind === 'repeated' && /[\u4e00-\u9fff]/.test(j.text));
    expect(junk.length).toBeGreaterThan(0);
    for (const j of junk) expect(applyFilters(buildFilters({ ...base, cjkNgramChars: 2, maxDupLineFraction: 0.3 }), Object.assign(emptyDocument('j', 's', 'law'), { text: j.text }))).not.toBeNull();
  });

  it('noise, garbled words and prose lines', () => {
    const n = (t: string) => noiseStats(t, 100_000);
    expect(n('The valve (see § 101) holds 5 °C ± 2%; it is “sealed”. 本发明涉及一种阀门。').noise).toBe(0);
    expect(n('cafÃ© costs Â£5').noise).toBe(3); // UTF-8 read as Latin-1: Ã before ©, Â before £, £
    expect(n('wo|rd an~d mo^re').noise).toBe(3);
    expect(n('fol%!&m good words here e.g. U.S. don\'t co-op').garbledWords).toBe(1);
    const p = n('Home | About | Contact\nA sentence that ends.\n第一条 为了保护专利权人的合法权益，制定本法。');
    expect(p.lineChars).toBe(p.proseLineChars + 'Home|About|Contact'.length);
    const f = buildFilters({ maxNoiseCharFraction: 0.02, maxGarbledWordFraction: 0.2, minProseLineFraction: 0.5 });
    const d = (text: string) => Object.assign(emptyDocument('d', 's', 'general'), { text });
    expect(applyFilters(f, d('This is a plain sentence about a valve and a housing that ends properly.'))).toBeNull();
    expect(applyFilters(f, d('Th¢ va|ve ho^sing ¤f the pu»p «s m~de of st¢el and |ron wh¢n cast.'))).toBe('noise-chars');
    expect(applyFilters(f, d('Home\nAbout us\nContact\nCareers\nPress room\nA sentence.'))).toBe('prose-lines');
  });
});
