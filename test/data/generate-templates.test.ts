// The prompt templates: English and Chinese prompts from document fields, reply parsing (pairs
// split into records, malformed parts counted, never thrown), and the offline extractive replies
// parsing back on real patents from ../shared/data.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { emptyDocument, type Document } from '../../src/data/document.js';
import { TEMPLATES, TEMPLATE_NAMES, clip, getTemplate, parsePairs, promptLang, sourceBlock } from '../../src/data/generate/index.js';
import { readDocuments } from '../../src/data/readers/index.js';

const DATA = process.env.PATENTGPT_DATA ?? path.resolve(__dirname, '../../../shared/data');

function doc(fields: Partial<Document>): Document {
  const d = { ...emptyDocument('US1', 'mem', 'patent'), ...fields };
  if (!d.text) d.text = [d.title, d.abstract, d.description, d.claims].filter((s) => s).join('\n\n');
  return d;
}

const en = doc({
  lang: 'en',
  title: 'Collapsible swimsuit',
  abstract: 'A collapsible swimsuit includes a loop for supporting the suit on the human body. The swimsuit also includes fastening devices.',
  claims: '1. A swimsuit comprising: (a) a loop (12) adapted to encircle a human waist; and (b) a body.\n2. The swimsuit of claim 1, wherein the loop is elastic.',
  description: 'The invention relates to swimwear. Swimsuits are hard to pack.',
});
const zh = doc({
  title: '一种边缘推断的GPU资源配置方法',
  abstract: '本发明公开了一种GPU资源配置方法。该方法对推断模型的吞吐量进行建模。',
  claims: '1. 一种GPU资源配置方法，其特征在于，包括以下步骤：获取吞吐量；求解最优配置。',
});

describe('templates', () => {
  it('render English and Chinese prompts from the document fields', () => {
    for (const name of TEMPLATE_NAMES) {
      const t = getTemplate(name);
      const m = t.render(en, 'en');
      expect(m.map((x) => x.role)).toEqual(['system', 'user']);
      expect(m[1]!.content).toContain('a loop (12) adapted to encircle');
      const z = t.render(zh, promptLang(zh));
      expect(z[1]!.content).toMatch(/[请根据下面]/);
      expect(z[1]!.content).toContain('获取吞吐量');
    }
    expect(TEMPLATES['patent-to-qa'].render(en, 'en', { questions: 5 })[1]!.content).toMatch(/^Write 5 question-and-answer pairs/);
    expect(TEMPLATES['rewrite-to-prose'].render(en, 'en')[1]!.content).toContain('Title:\nCollapsible swimsuit');
    expect(TEMPLATES['rewrite-to-prose'].render(zh, 'zh')[1]!.content).toContain('标题：\n一种边缘推断的GPU资源配置方法');
  });

  it('pick the prompt language from lang, else from the text', () => {
    expect(promptLang(zh)).toBe('zh'); // lang 'und': identified
    expect(promptLang({ ...en, lang: 'und' })).toBe('en');
    expect(promptLang({ ...zh, lang: 'en' })).toBe('en'); // a set lang wins
    expect(promptLang({ ...en, lang: 'de' })).toBe('en'); // no German prompt: English
  });

  it('keep the source within maxSourceChars', () => {
    const long = doc({ title: 'T', abstract: 'word '.repeat(2000), claims: '1. claim '.repeat(3000), description: 'desc. '.repeat(5000) });
    const block = sourceBlock(long, 'en', 3000);
    expect(block.length).toBeLessThan(3000 + 100);
    expect(block).toMatch(/Abstract:[\s\S]*Claims:[\s\S]*Description:/);
    expect(clip('One sentence. Two sentences here.', 20)).toBe('One sentence.…');
    expect(clip('short', 20)).toBe('short');
  });

  it('parse Q&A pairs in many layouts, counting the malformed ones', () => {
    const reply = [
      'Here are the pairs:',
      '',
      '1. **Q:** What does the loop do?',
      '**A:** It supports the suit',
      'on the body.',
      '',
      'Question 2: What is claimed?',
      'Answer 2: A swimsuit.',
      '',
      'Q: A question with no answer?',
      'Q: Another question?',
      'A: Its answer.',
      'A: a second answer with no question',
      '问：环是什么？',
      '答：弹性的。',
    ].join('\n');
    const { pairs, malformed } = parsePairs(reply, /^(?:q|question|问题?)\s*\d*\s*[:：]\s*/i, /^(?:a|answer|答案?|回答)\s*\d*\s*[:：]\s*/i);
    expect(pairs).toEqual([
      ['What does the loop do?', 'It supports the suit\non the body.'],
      ['What is claimed?', 'A swimsuit.'],
      ['Another question?', 'Its answer.'],
      ['环是什么？', '弹性的。'],
    ]);
    expect(malformed).toBe(2);
    const qa = TEMPLATES['patent-to-qa'].parse(reply, en, 'en');
    expect(qa.outputs.length).toBe(4);
    expect(qa.outputs[1]).toEqual({ text: 'Question: What is claimed?\nAnswer: A swimsuit.', instruction: 'What is claimed?', output: 'A swimsuit.' });
    expect(qa.malformed).toBe(2);
    expect(TEMPLATES['patent-to-qa'].parse('问：什么？\n答：这个。', zh, 'zh').outputs[0]!.text).toBe('问：什么？\n答：这个。');
    expect(TEMPLATES['patent-to-qa'].parse('I cannot help with that.', en, 'en')).toEqual({ outputs: [], malformed: 0, failure: 'unparsable-reply' });
    expect(TEMPLATES['patent-to-qa'].parse('  ', en, 'en').failure).toBe('empty-reply');
  });

  it('parse rewrites, abstracts and instructions; strip chatter and fences', () => {
    const rw = TEMPLATES['rewrite-to-prose'].parse("Sure! Here is the rewritten text:\n\n```\nA swimsuit folds small.\n```", en, 'en');
    expect(rw.outputs).toEqual([{ text: 'A swimsuit folds small.' }]);
    expect(TEMPLATES['rewrite-to-prose'].parse('', en, 'en').failure).toBe('empty-reply');
    const ab = TEMPLATES['claim-to-abstract'].parse('Abstract: A swimsuit with a loop.', en, 'en');
    expect(ab.outputs[0]!.output).toBe('A swimsuit with a loop.');
    expect(ab.outputs[0]!.instruction).toMatch(/^Write the abstract of a patent with these claims:\n\n1\. A swimsuit comprising/);
    expect(TEMPLATES['claim-to-abstract'].parse('摘要：一种方法。', zh, 'zh').outputs[0]!.text).toMatch(/^根据以下权利要求撰写专利摘要[\s\S]*摘要：一种方法。$/);
    const sft = TEMPLATES['sft-instruction'].parse('Instruction: Explain claim 1.\nResponse: Claim 1 covers\na swimsuit.', en, 'en');
    expect(sft.outputs).toEqual([{ text: 'Explain claim 1.\n\nClaim 1 covers\na swimsuit.', instruction: 'Explain claim 1.', output: 'Claim 1 covers\na swimsuit.' }]);
    expect(TEMPLATES['sft-instruction'].parse('指令：概括。\n回答：一种方法。', zh, 'zh').outputs[0]!.output).toBe('一种方法。');
    expect(TEMPLATES['sft-instruction'].parse('Instruction: only half', en, 'en')).toEqual({ outputs: [], malformed: 1, failure: 'unparsable-reply' });
    expect(() => getTemplate('summarize')).toThrow(/unknown template 'summarize': use one of rewrite-to-prose, patent-to-qa/);
  });

  it('offline replies are extractive and parse back (hand-made documents)', () => {
    const qa = TEMPLATES['patent-to-qa'];
    const reply = qa.offlineReply(en, 'en');
    expect(reply).toBe([
      'Q: What is the invention of the patent "Collapsible swimsuit"?\nA: A collapsible swimsuit includes a loop for supporting the suit on the human body. The swimsuit also includes fastening devices.',
      'Q: What does claim 1 cover?\nA: A swimsuit comprising: (a) a loop (12) adapted to encircle a human waist; and (b) a body.',
      'Q: What field does the invention relate to?\nA: The invention relates to swimwear.',
    ].join('\n\n'));
    expect(qa.parse(reply, en, 'en').outputs.length).toBe(3);
    expect(TEMPLATES['claim-to-abstract'].offlineReply(en, 'en')).toBe(en.abstract);
    expect(TEMPLATES['rewrite-to-prose'].offlineReply(en, 'en')).not.toMatch(/\(12\)|^2\. /m);
    const z = qa.parse(qa.offlineReply(zh, 'zh'), zh, 'zh');
    expect(z.outputs.map((o) => o.instruction)).toEqual(['专利《一种边缘推断的GPU资源配置方法》的发明内容是什么？', '权利要求1保护什么？']);
  });

  it('offline replies parse back on real patents (English USPTO XML, Chinese JSON)', async (ctx) => {
    const files = [path.join(DATA, 'uspto-ppd-samples/xml2014/US08930553.xml'), path.join(DATA, 'cn-patents-coretech/CPT-data/Patent/Patent_demo.json')];
    if (!files.every((f) => fs.existsSync(f))) return ctx.skip();
    let n = 0;
    for (const f of files)
      for await (const item of readDocuments(f)) {
        if (!item.ok || n++ > 12) continue;
        const d = item.doc;
        const lang = promptLang(d);
        expect(lang).toBe(f.endsWith('.json') ? 'zh' : 'en');
        for (const t of Object.values(TEMPLATES)) {
          if (!d[t.requires].trim()) continue;
          const parsed = t.parse(t.offlineReply(d, lang), d, lang);
          expect(parsed.failure, `${t.name} on ${d.id}`).toBeUndefined();
          expect(parsed.outputs.length).toBeGreaterThan(0);
          for (const o of parsed.outputs) expect(o.text.trim().length).toBeGreaterThan(10);
        }
      }
    expect(n).toBeGreaterThan(1);
  });
});
