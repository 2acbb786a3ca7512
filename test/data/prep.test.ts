// Filters (Gopher rules, language id on English and Chinese) and the prep pipeline end to end:
// every document accounted for, an interrupted run restarted gives the same bytes, and two
// parts merged equal one pass.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { emptyDocument } from '../../src/data/document.js';
import { applyFilters, buildFilters, identifyLanguage } from '../../src/data/filters.js';
import { defaultScanWorkers, prep, SCAN_WORKERS_MIN_BYTES, validatePrepConfig } from '../../src/data/prep.js';
import { ShardSet } from '../../src/data/shards.js';
import { llama2Model } from '../../src/tokenizer/llama2.js';
import { encodeModelProto, PieceType } from '../../src/tokenizer/model.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import { config, corpus, tree } from './prep-corpus.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-prep-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const doc = (text: string) => Object.assign(emptyDocument('d', 's', 'general'), { text });
const prose = 'The claimed invention relates to a fastening device that holds two panels together while allowing thermal expansion of either panel without loosening the joint over many cycles.';

describe('filters', () => {
  it('identifies English and Chinese', () => {
    expect(identifyLanguage(prose).lang).toBe('en');
    expect(identifyLanguage('本发明涉及一种用于连接两块面板的紧固装置，该装置允许任一面板热膨胀而不会使接头松动。').lang).toBe('zh');
    expect(identifyLanguage('Die Erfindung betrifft eine Befestigungsvorrichtung, die zwei Platten zusammenhält und eine Wärmeausdehnung erlaubt.').lang).toBe('de');
    expect(identifyLanguage('12345 67890').lang).toBe('und');
  });

  it('each rule drops what it should, with its reason', () => {
    const f = buildFilters({ minWords: 10, meanWordLength: [3, 10], maxDigitRatio: 0.3, maxSymbolRatio: 0.3, maxDupLineFraction: 0.3, maxTopNgramCharFraction: { 2: 0.2 }, maxDupNgramCharFraction: { 5: 0.15 }, languages: ['en', 'zh'], boilerplate: ['^copyright'], maxBoilerplateFraction: 0.5 });
    expect(applyFilters(f, doc(prose))).toBeNull();
    expect(applyFilters(f, doc('too short'))).toBe('too-few-words');
    expect(applyFilters(f, doc('a b c d e f g h i j k l m n o p'))).toBe('mean-word-length');
    expect(applyFilters(f, doc('1234567 8901234 5678901 2345678 9012345 6789012 3456789 0123456 7890123 4567890 x'))).toBe('digit-ratio');
    expect(applyFilters(f, doc('#$%&*@ ^&*()!! ~~~### %%%%%% $$$$$$ @@@@@ &&&&& ***** ((((( ))))) word'))).toBe('symbol-ratio');
    expect(applyFilters(f, doc(`${prose}\nsame line here again\nsame line here again\nsame line here again`))).toBe('dup-lines');
    expect(applyFilters(f, doc('buy now '.repeat(20)))).toBe('top-2gram');
    const rep = `${prose} ${prose} ${prose}`;
    expect(applyFilters(f, doc(rep))).toBe('dup-5gram');
    expect(applyFilters(f, doc('Die Erfindung betrifft eine Befestigungsvorrichtung, die zwei Platten zusammenhält und eine Wärmeausdehnung erlaubt.'))).toBe('language');
    const b = doc(`${prose}\nCopyright 2020 Someone`);
    expect(applyFilters(f, b)).toBeNull();
    expect(b.text).toBe(prose);
    expect(applyFilters(f, doc('Copyright a\nCopyright b\nshort'))).toBe('boilerplate');
    expect(() => buildFilters({ minWords: -1 })).toThrow(/minWords/);
    expect(() => buildFilters({ nope: 1 } as never)).toThrow(/unknown field 'nope'/);
  });
});

describe('default scan workers', () => {
  it('none below the threshold, where a worker cannot pay for its start-up; else one per core but one, at most 8', () => {
    expect(defaultScanWorkers(0, 16)).toBe(0);
    expect(defaultScanWorkers(14.3e6, 16)).toBe(0);
    expect(defaultScanWorkers(SCAN_WORKERS_MIN_BYTES - 1, 16)).toBe(0);
    expect(defaultScanWorkers(SCAN_WORKERS_MIN_BYTES, 2)).toBe(1);
    expect(defaultScanWorkers(SCAN_WORKERS_MIN_BYTES, 4)).toBe(3);
    expect(defaultScanWorkers(1e12, 64)).toBe(8);
    expect(defaultScanWorkers(1e12, 1)).toBe(0);
  });
});

describe('prep', () => {
  const data = path.join(root, 'data');
  corpus(data);

  it('accounts for every document; the mixture hits the budget; deterministic', async () => {
    const cfg = config(path.join(root, 'out1'), data, root);
    const r = await prep(cfg, { workers: 1 }); // the default would scan this small corpus in this thread
    const d = r.documents;
    if (process.env.PG_DEBUG) console.log(JSON.stringify(r, null, 1));
    expect(d.in).toBe(60 + 6 + 4 + 2 + 30);
    expect(d.kept + Object.values(d.dropped).reduce((a, b) => a + b, 0)).toBe(d.in);
    expect(d.dropped['malformed-json']).toBe(1);
    expect(d.dropped['too-few-words']).toBe(1);
    expect(r.duplicates.exact).toBe(6);
    expect(r.duplicates.near).toBe(4);
    expect(r.available.law!.documents).toBe(30);
    const s1 = r.stages.s1!;
    expect(Math.abs(s1.tokens - 60000) / 60000).toBeLessThan(0.1);
    expect(s1.categories.patent!.tokens / s1.tokens).toBeCloseTo(2 / 3, 1);
    // s2: factors are copy counts: law twice, patents about half
    expect(r.stages.s2!.categories.law!.documents).toBe(60);
    expect(r.stages.s2!.categories.patent!.documents).toBeGreaterThan(15);
    expect(r.stages.s2!.categories.patent!.documents).toBeLessThan(45);
    const prov = fs.readFileSync(path.join(cfg.output, 's1', 'part-0', 'provenance.tsv'), 'utf8').trim().split('\n');
    expect(prov.length - 1).toBe(s1.categories.law!.documents + s1.categories.patent!.documents);
    expect(fs.existsSync(path.join(cfg.output, 'prep-report.json'))).toBe(true);

    // an interrupted run (emit of s2 lost, a half-written scan temp left behind) restarts to the same bytes
    const before = tree(path.join(cfg.output, 's1'));
    const s2 = tree(path.join(cfg.output, 's2'));
    fs.rmSync(path.join(cfg.output, 's2'), { recursive: true });
    fs.mkdirSync(path.join(cfg.output, 's2', 'part-0.tmp'), { recursive: true });
    fs.writeFileSync(path.join(cfg.output, 's2', 'part-0.tmp', 'junk'), 'x');
    await prep(cfg);
    expect(tree(path.join(cfg.output, 's1'))).toEqual(before);
    expect(tree(path.join(cfg.output, 's2'))).toEqual(s2);
    // a fresh run from scratch, in this thread instead of scan workers, gives the same bytes too
    const cfg2 = config(path.join(root, 'out2'), data, root);
    await prep(cfg2, { workers: 0 });
    expect(tree(path.join(cfg2.output, 's1'))).toEqual(before);
    expect(tree(path.join(cfg2.output, 's2'))).toEqual(s2);
    expect(tree(path.join(cfg2.output, 'work', 'part-0'))).toEqual(tree(path.join(cfg.output, 'work', 'part-0')));
  });

  it('two parts (--shard i/2): dedup across parts, same totals as one pass', async () => {
    const one = await prep(config(path.join(root, 'out1'), data, root));
    const cfg = config(path.join(root, 'parts'), data, root);
    await prep(cfg, { part: 0, parts: 2, phase: 'scan', workers: 1 });
    await expect(prep(cfg, { part: 0, parts: 2, phase: 'merge' })).rejects.toThrow(/part 1\/2 has not been scanned/);
    await prep(cfg, { part: 1, parts: 2, phase: 'scan', workers: 0 });
    await prep(cfg, { part: 0, parts: 2, phase: 'merge' });
    await prep(cfg, { part: 0, parts: 2, phase: 'emit' });
    const r = await prep(cfg, { part: 1, parts: 2, phase: 'emit' });
    expect(r.documents).toEqual(one.documents);
    // shard jobs of a Slurm array that finish together each gather the rejects: none may fail
    const rejects = fs.readFileSync(path.join(cfg.work!, 'rejects.jsonl'));
    await Promise.all([0, 1, 0, 1].map((part) => prep(cfg, { part, parts: 2, phase: 'emit' })));
    expect(fs.readFileSync(path.join(cfg.work!, 'rejects.jsonl'))).toEqual(rejects);
    expect(r.duplicates.exact + r.duplicates.near).toBe(one.duplicates.exact + one.duplicates.near);
    expect(r.available).toEqual(one.available);
  });

  it('an unreadable tokenizer model is a clear error, in workers or in this thread, even with no document', async () => {
    const empty = path.join(root, 'empty');
    fs.mkdirSync(empty, { recursive: true });
    for (const workers of [1, 0]) {
      const cfg = validatePrepConfig({ output: path.join(root, `badtok-${workers}`), inputs: [{ path: empty }], tokenizer: { type: 'sentencepiece', model: path.join(root, 'nope.model') }, stages: { s: { weights: { general: 1 } } } }, root);
      await expect(prep(cfg, { workers })).rejects.toThrow(/cannot read tokenizer model .*nope\.model/);
    }
  });

  it('tokens are those of SentencePieceTokenizer.encode (+EOS): native encoder and TS fallback, in workers or in this thread', async () => {
    const dir = path.join(root, 'tok');
    fs.mkdirSync(dir, { recursive: true });
    const texts = [prose, '本发明涉及一种紧固装置。 Mixed  spaces\tand\nlines 🙂 e\u0301', 'lone \ud800 surrogate', `${prose}\n\n${prose.toUpperCase()}`];
    fs.writeFileSync(path.join(dir, 'a.jsonl'), texts.map((text, i) => JSON.stringify({ id: `t${i}`, text })).join('\n') + '\n');
    // a model the native encoder refuses (a USER_DEFINED piece): the scan falls back to the TS encoder
    const model = llama2Model();
    model.pieces[300] = { ...model.pieces[300]!, type: PieceType.USER_DEFINED };
    const userModel = path.join(dir, 'user.model');
    fs.writeFileSync(userModel, encodeModelProto(model));
    for (const [tokenizer, sp] of [[{ type: 'llama2' as const }, SentencePieceTokenizer.llama2()], [{ type: 'sentencepiece' as const, model: userModel }, SentencePieceTokenizer.load(userModel)]] as const) {
      for (const workers of [1, 0]) {
        const cfg = validatePrepConfig({ output: path.join(root, `tok-${tokenizer.type}-${workers}`), inputs: [{ path: dir }], dedup: { threshold: 1 }, tokenizer, stages: { s: { weights: { general: 1 } } } }, root);
        await prep(cfg, { workers, phase: 'scan' });
        const spool = await ShardSet.open(path.join(cfg.work!, 'part-0', 'spool'));
        const got = spool.shards.flatMap((sh) => Array.from({ length: sh.documents }, (_, d) => [...sh.document(d)]));
        spool.close();
        expect(got).toEqual(texts.map((t) => [...sp.encode(t, { eos: true })]));
      }
    }
  });

  it('config errors name the field', () => {
    expect(() => validatePrepConfig({ output: 'x', inputs: [], tokenizer: { type: 'byte' }, stages: {} }, root)).toThrow(/inputs/);
    expect(() => validatePrepConfig({ output: 'x', inputs: [{ path: 'a' }], tokenizer: { type: 'nope' }, stages: { a: { weights: {} } } }, root)).toThrow(/tokenizer.type/);
    expect(() => validatePrepConfig({ output: 'x', inputs: [{ path: 'a' }], tokenizer: { type: 'byte' }, stages: { a: { weights: { p: -1 } } } }, root)).toThrow(/stages.a.weights.p/);
    expect(() => validatePrepConfig({ output: 'x', inputs: [{ path: 'a' }], tokenizer: { type: 'byte' }, stages: { a: { weights: {} } }, dedup: { threshold: 2 } }, root)).toThrow(/dedup.threshold/);
  });
});
