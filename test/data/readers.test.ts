// Readers: every USPTO format in the shared data parses; malformed input (bad XML, bad UTF-8,
// truncation, empty documents, broken JSON/CSV) is counted with a reason and never throws.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ReadItem } from '../../src/data/document.js';
import { readDocuments } from '../../src/data/readers/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-readers-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: string | Buffer): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, content);
  return f;
}

async function all(file: string, opts = {}): Promise<ReadItem[]> {
  const out: ReadItem[] = [];
  for await (const it of readDocuments(file, opts)) out.push(it);
  return out;
}

const grant = (num: string, body: string, title = 'Widget'): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE us-patent-grant SYSTEM "us-patent-grant-v45-2014-04-03.dtd" [ ]>\n` +
  `<us-patent-grant lang="EN" id="us-patent-grant"><us-bibliographic-data-grant><publication-reference><document-id><country>US</country><doc-number>${num}</doc-number><kind>B2</kind><date>20150106</date></document-id></publication-reference>` +
  `<invention-title id="t">${title}</invention-title></us-bibliographic-data-grant><abstract id="a"><p id="p-1">An abstract &amp; more.</p></abstract>` +
  `<description id="d"><heading>BACKGROUND</heading><p id="p-2">Text of the <i>description</i>.<?in-line-formulae description="x" end="lead"?></p></description>${body}</us-patent-grant>\n`;
const claims = '<claims id="c"><claim id="CLM-1" num="1"><claim-text>1. A widget comprising: <claim-text>a part.</claim-text></claim-text></claim></claims>';

describe('USPTO XML', () => {
  it('splits a weekly file, extracts fields, and counts malformed, bad UTF-8, truncated and empty documents', async () => {
    const bad = Buffer.from(grant('09000003', claims).replace('Text of the', 'Text \xff\xfe of the'), 'latin1');
    const f = write(
      'ipg-weekly.xml',
      Buffer.concat([
        Buffer.from(grant('09000001', claims) + grant('09000002', '<claims><claim>x</claim></bogus></claims>')),
        bad,
        Buffer.from(grant('09000004', '', '') .replace(/<abstract[\s\S]*<\/description>/, '')),
        Buffer.from(grant('09000005', claims) + grant('09000006', claims).slice(0, 600)),
      ]),
    );
    // small chunks: documents straddle chunk boundaries
    const items = await all(f, { chunkBytes: 97 });
    const summary = items.map((i) => (i.ok ? `ok ${i.doc.id}` : `${i.rejected.reason} ${i.rejected.id}`));
    expect(summary).toEqual([
      'ok US09000001B2',
      'malformed-xml ipg-weekly.xml#1',
      'bad-utf8 US09000003?',
      'empty US09000004B2',
      'ok US09000005B2',
      'truncated US09000006?',
    ]);
    const d = (items[0] as { doc: { title: string; abstract: string; claims: string; description: string; category: string; lang: string } }).doc;
    expect(d.title).toBe('Widget');
    expect(d.abstract).toBe('An abstract & more.');
    expect(d.claims).toBe('1. A widget comprising:\na part.');
    expect(d.description).toBe('BACKGROUND\nText of the description.');
    expect(d.category).toBe('patent');
    expect(d.lang).toBe('en');
    // repairUtf8 keeps the document
    const repaired = await all(f, { repairUtf8: true });
    expect(repaired.filter((i) => i.ok).map((i) => i.ok && i.doc.id)).toEqual(["US09000001B2", "US09000003B2", "US09000005B2"]);
  });

  const data = process.env.PATENTGPT_DATA ?? path.resolve(__dirname, '../../../shared/data');
  const have = fs.existsSync(path.join(data, 'uspto-ppd-samples'));
  it.skipIf(!have)('parses every USPTO format in the shared data (skips without ../shared/data)', async () => {
    const cases: [string, number, string][] = [
      ['uspto-ppd-samples/pap/US20010000044A1.xml', 1, 'uspto-pap'],
      ['uspto-ppd-samples/sgml/US06336130.xml', 1, 'uspto-sgml'],
      ['uspto-ppd-samples/xml2004/US06859910.xml', 1, 'uspto-xml4-grant'],
      ['uspto-ppd-samples/xml2014/US08930553.xml', 1, 'uspto-xml4-grant'],
      ['uspto-ppd-samples/xmlApp2004/US20050004437A1.xml', 1, 'uspto-xml4-application'],
      ['uspto-ppd-samples/greenbook/US03937375.greenbook', 1, 'uspto-aps'],
      ['uspto-ppd-samples/css_brs/css_brs_sample.txt', 6, 'uspto-brs'],
      ['uspto-fulltext-rubyxml/grants_2001_sample.xml', 23, 'uspto-sgml'],
      ['uspto-fulltext-rubyxml/applications_sample_2001.xml', 40, 'uspto-pap'],
      ['uspto-ipg-fixtures/ipg120327.196.xml', 196, 'uspto-xml4-grant'],
    ];
    for (const [f, n, format] of cases) {
      const items = await all(path.join(data, f));
      expect(items.length, f).toBe(n);
      for (const it of items) {
        expect(it.ok, `${f}: ${it.ok ? '' : it.rejected.detail}`).toBe(true);
        if (!it.ok) continue;
        expect(it.doc.meta.format).toBe(format);
        expect(it.doc.title.length, `${f} ${it.doc.id} title`).toBeGreaterThan(0);
        expect(it.doc.text).not.toMatch(/<\/?(p|claim|claim-text|PDAT|PARA|PTEXT|paragraph|heading|abstract|description)[ >]/);
      }
    }
    const [g] = await all(path.join(data, 'uspto-ppd-samples/greenbook/US03937375.greenbook'));
    expect(g!.ok && g!.doc.id).toBe('US3937375');
    expect(g!.ok && g!.doc.title).toBe('Bumper support for a boat loader');
    expect(g!.ok && g!.doc.claims.startsWith('What I claim is:')).toBe(true);
  });
});

describe('records', () => {
  it('JSONL: bad lines and bad UTF-8 counted, strings and Alpaca records mapped', async () => {
    const f = write('a.jsonl', Buffer.concat([Buffer.from('{"id":"x1","text":"hello world"}\n{"id": broken\n\n"just a string"\n{"instruction":"Q?","input":"","output":"A."}\n{"text":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n{"text":""}\n')]));
    const s = (await all(f)).map((i) => (i.ok ? `ok ${i.doc.id} ${JSON.stringify(i.doc.text)} ${i.doc.category}` : i.rejected.reason));
    expect(s).toEqual(['ok x1 "hello world" general', 'malformed-json', 'ok a.jsonl#2 "just a string" general', 'ok a.jsonl#3 "Q?\\n\\nA." sft', 'bad-utf8', 'empty']);
  });

  it('JSON arrays stream element by element; a cut file is truncated', async () => {
    const f = write('a.json', '[ {"title":"T","abstract":"A [x] {y}","claims":["c1","c2"]}, "s", {"text":"z"} ]');
    const s = (await all(f, { chunkBytes: 7 })).map((i) => (i.ok ? i.doc.text : i.rejected.reason));
    expect(s).toEqual(['T\n\nA [x] {y}\n\nc1\nc2', 's', 'z']);
    const cut = write('cut.json', '[{"text":"a"},{"text":"b');
    expect((await all(cut)).map((i) => (i.ok ? i.doc.text : i.rejected.reason))).toEqual(['a', 'truncated']);
    const one = write('one.json', '{"patent_id":"CN1","text":"一个文档"}');
    expect((await all(one)).map((i) => (i.ok ? `${i.doc.id} ${i.doc.text}` : i.rejected.reason))).toEqual(['CN1 一个文档']);
  });

  it('CSV with quotes, embedded newlines, BOM, ragged rows and blank padding; TSV without header', async () => {
    const f = write('a.csv', '\ufeffpatent_number,patent_title,patent_abstract\n1,"A ""quoted"" title","line one\nline two, with comma"\n2,short\n,,\n3,T3,"unterminated');
    const s = (await all(f, { chunkBytes: 5 })).map((i) => (i.ok ? `${i.doc.id}|${i.doc.title}|${i.doc.abstract}` : i.rejected.reason));
    expect(s).toEqual(['1|A "quoted" title|line one\nline two, with comma', 'malformed-csv', 'truncated']);
    const t = write('a.tsv', '111\tA claim.\n222\tB claim.\n');
    const s2 = (await all(t, { columns: ['id', 'claims'] })).map((i) => (i.ok ? `${i.doc.id} ${i.doc.claims}` : i.rejected.reason));
    expect(s2).toEqual(['111 A claim.', '222 B claim.']);
  });

  it('text split by paragraph and by line; an unreadable path is counted', async () => {
    const f = write('a.txt', 'para one\nstill one\n\n\npara two\n');
    expect((await all(f, { split: 'paragraph' })).map((i) => (i.ok ? i.doc.text : ''))).toEqual(['para one\nstill one', 'para two']);
    expect((await all(f, { split: 'line' })).length).toBe(3);
    const gone = await all(path.join(dir, 'missing.txt'));
    expect(gone.length).toBe(1);
    expect(!gone[0]!.ok && gone[0]!.rejected.reason).toBe('unreadable');
  });

  it('Parquet via hyparquet', async () => {
    const { parquetWriteBuffer } = await import('hyparquet-writer').catch(() => ({ parquetWriteBuffer: null }));
    if (!parquetWriteBuffer) return; // writer not installed: the reader is covered by the real-data run
    const buf = parquetWriteBuffer({ columnData: [{ name: 'id', data: ['p1', 'p2'] }, { name: 'text', data: ['first', 'second'] }] });
    const f = write('a.parquet', Buffer.from(buf));
    expect((await all(f)).map((i) => (i.ok ? `${i.doc.id} ${i.doc.text}` : i.rejected.reason))).toEqual(['p1 first', 'p2 second']);
  });
});
