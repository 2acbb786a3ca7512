// Hardening of data prep (issue 13, "Data preparation"): every dropped document in
// <work>/rejects.jsonl and failed files in the report; symlinks, hidden files, pipes and
// unreadable folders; compressed files told by their magic bytes; a changed config never reuses
// stale output; unique ids for files of the same name; the mixture's repeat cap.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { cappedStageFactors, prep, validatePrepConfig, type PrepReport } from '../../src/data/prep.js';
import { detectCompression, readDocuments, walkInput } from '../../src/data/readers/index.js';
import { summary } from '../../src/cli/data.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-prep-hard-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const WORDS = 'the device comprises a housing with an inlet and outlet valve that controls fluid flow between chambers while sensor circuits measure pressure temperature and report values to processor memory which stores instructions for adjusting motor speed'.split(' ');
let seed = 99;
const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const prose = (n: number): string => Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ') + '.';

function cfgFor(out: string, inputs: unknown[], extra: Record<string, unknown> = {}) {
  return validatePrepConfig({
    output: out, inputs, filters: { minWords: 20 }, tokenizer: { type: 'byte' },
    stages: { s1: { weights: { patent: 1, law: 1 } } }, ...extra,
  }, root);
}

const lines = (f: string): Record<string, unknown>[] => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('rejects.jsonl and failed files', () => {
  it('lists every dropped document with its file, position or id, reason and a bounded detail; names the files that failed as wholes', async () => {
    const data = path.join(root, 'rej');
    fs.mkdirSync(data, { recursive: true });
    const docs = Array.from({ length: 12 }, (_, i) => JSON.stringify({ id: `p${i}`, text: prose(60) }));
    docs.splice(3, 0, '{broken json');
    docs.splice(6, 0, JSON.stringify({ id: 'short', text: 'too short' }));
    docs.push(docs[0]!); // an exact duplicate of p0
    fs.writeFileSync(path.join(data, 'a.jsonl'), docs.join('\n') + '\n');
    fs.writeFileSync(path.join(data, 'latin1.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xff, 0xfe, 0x0a]));
    fs.writeFileSync(path.join(data, 'bad.xml'), '<?xml version="1.0"?><doc><p>unclosed ' + 'x'.repeat(1000) + '</q></doc>');
    fs.writeFileSync(path.join(data, 'empty.json'), '   ');
    const cfg = cfgFor(path.join(root, 'rej-out'), [{ path: data, category: 'patent' }]);
    const r = await prep(cfg, { workers: 0 });
    const rej = lines(path.join(cfg.work!, 'rejects.jsonl'));
    expect(r.rejects).toBe(path.join(cfg.work!, 'rejects.jsonl'));
    // every document not kept is there, once
    expect(rej.length).toBe(r.documents.in - r.documents.kept);
    const by = (reason: string) => rej.filter((x) => x.reason === reason);
    expect(by('malformed-json')).toEqual([
      expect.objectContaining({ source: 'rej/a.jsonl', position: 3 }),
      expect.objectContaining({ source: 'rej/empty.json', position: 0, wholeFile: true }),
    ]);
    expect(by('too-few-words')).toEqual([expect.objectContaining({ source: 'rej/a.jsonl', position: 6, id: 'short' })]);
    expect(by('exact-duplicate')).toEqual([expect.objectContaining({ source: 'rej/a.jsonl', id: 'p0', detail: 'duplicate of p0' })]);
    expect(by('bad-utf8')).toEqual([expect.objectContaining({ source: 'rej/latin1.txt', wholeFile: true })]);
    expect(by('malformed-xml')).toEqual([expect.objectContaining({ source: 'rej/bad.xml', wholeFile: true })]);
    for (const x of rej) expect(String(x.detail).length).toBeLessThanOrEqual(200);
    // the report names the files that failed as wholes, with counts per reason
    expect(r.files.failed.count).toEqual({ 'bad-utf8': 1, 'malformed-json': 1, 'malformed-xml': 1 });
    expect(r.files.failed.files.map((f) => f.file).sort()).toEqual(['rej/bad.xml', 'rej/empty.json', 'rej/latin1.txt']);
    expect(summary(r, cfg.output, false).join('\n')).toMatch(/files failed as wholes: bad-utf8 1, malformed-json 1, malformed-xml 1/);
  });
});

describe('walking the inputs', () => {
  it('follows symlinks (loops detected), skips hidden files and named pipes with a reason, never reading a pipe', async () => {
    const data = path.join(root, 'walk');
    fs.mkdirSync(path.join(data, 'sub'), { recursive: true });
    fs.mkdirSync(path.join(root, 'elsewhere'), { recursive: true });
    fs.writeFileSync(path.join(root, 'elsewhere', 'linked.txt'), prose(40));
    fs.writeFileSync(path.join(data, 'sub', 'plain.txt'), prose(40));
    fs.writeFileSync(path.join(data, '.hidden.txt'), prose(40));
    fs.symlinkSync(path.join(root, 'elsewhere', 'linked.txt'), path.join(data, 'link.txt'));
    fs.symlinkSync(data, path.join(data, 'sub', 'loop')); // a folder link back up: a loop
    fs.symlinkSync(path.join(root, 'nowhere.txt'), path.join(data, 'broken.txt'));
    execFileSync('mkfifo', [path.join(data, 'pipe.txt')]);
    const w = await walkInput(data);
    expect(w.files.map((f) => path.relative(data, f))).toEqual(['link.txt', 'sub/plain.txt']);
    const reasons = Object.fromEntries(w.skipped.map((s) => [path.relative(data, s.path), s.reason]));
    expect(reasons).toEqual({ '.hidden.txt': 'hidden', 'broken.txt': 'broken-symlink', 'pipe.txt': 'not-a-regular-file', 'sub/loop': 'symlink-loop' });
    expect((await walkInput(data, { followSymlinks: false })).files.map((f) => path.relative(data, f))).toEqual(['sub/plain.txt']);

    // through prep (the pipe would hang a reader: the test would time out)
    const cfg = cfgFor(path.join(root, 'walk-out'), [{ path: data, category: 'patent' }]);
    const r = await prep(cfg, { workers: 0 });
    expect(r.documents.in).toBe(2);
    expect(r.files.skipped.count).toEqual({ 'broken-symlink': 1, hidden: 1, 'not-a-regular-file': 1, 'symlink-loop': 1 });
    expect(r.files.skipped.paths.find((p) => p.reason === 'not-a-regular-file')!.detail).toBe('named pipe');
    // an input path that is itself a pipe is skipped too
    const r2 = await prep(cfgFor(path.join(root, 'walk-out2'), [{ path: path.join(data, 'pipe.txt'), category: 'patent' }, { path: path.join(root, 'elsewhere'), category: 'patent' }]), { workers: 0 });
    expect(r2.files.skipped.count['not-a-regular-file']).toBe(1);
    expect(r2.documents.in).toBe(1);
  }, 30_000);

  it('counts an unreadable folder like an unreadable file, not a fatal error', () => {
    const data = path.join(root, 'perm');
    fs.mkdirSync(path.join(data, 'locked'), { recursive: true });
    fs.mkdirSync(path.join(data, 'open'), { recursive: true });
    fs.writeFileSync(path.join(data, 'open', 'a.txt'), prose(40));
    fs.writeFileSync(path.join(data, 'locked', 'b.txt'), prose(40));
    fs.chmodSync(path.join(data, 'locked'), 0o000);
    fs.chmodSync(root, 0o755);
    // root reads any folder: walk as an unprivileged user then (a child process)
    const script = `import { walkInput } from ${JSON.stringify(path.resolve(__dirname, '../../src/data/readers/index.ts'))};
      const w = await walkInput(${JSON.stringify(data)}); console.log(JSON.stringify(w));`;
    const tsx = path.resolve(__dirname, '../../node_modules/.bin/tsx');
    const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const res = spawnSync(tsx, ['--input-type=module', '-e', script], { encoding: 'utf8', ...asUser, env: { ...process.env, HOME: os.tmpdir() }, cwd: os.tmpdir() });
    fs.chmodSync(path.join(data, 'locked'), 0o755);
    expect(res.status, res.stderr).toBe(0);
    const w = JSON.parse(res.stdout.trim().split('\n').pop()!) as Awaited<ReturnType<typeof walkInput>>;
    expect(w.files.map((f) => path.relative(data, f))).toEqual(['open/a.txt']);
    expect(w.skipped).toEqual([expect.objectContaining({ path: path.join(data, 'locked'), reason: 'unreadable-folder', detail: 'EACCES' })]);
  }, 30_000);
});

describe('compressed files', () => {
  it('are told by their magic bytes whatever the extension: gzip is read, zstd/bzip2/xz refused as such', async () => {
    const data = path.join(root, 'comp');
    fs.mkdirSync(data, { recursive: true });
    const recs = (p: string) => Array.from({ length: 5 }, (_, i) => JSON.stringify({ id: `${p}${i}`, text: prose(40) })).join('\n') + '\n';
    fs.writeFileSync(path.join(data, 'gz-named-plain.jsonl'), zlib.gzipSync(recs('g'))); // gzip without .gz
    fs.writeFileSync(path.join(data, 'plain.jsonl.gz'), recs('p')); // .gz that is not gzip
    fs.writeFileSync(path.join(data, 'doc.txt'), zlib.gzipSync(prose(30)));
    fs.writeFileSync(path.join(data, 'a.zst'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
    fs.writeFileSync(path.join(data, 'b.txt'), Buffer.concat([Buffer.from('BZh91AY&SY'), Buffer.alloc(20)]));
    fs.writeFileSync(path.join(data, 'c.jsonl'), Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]));
    fs.writeFileSync(path.join(data, 'broken.txt'), zlib.gzipSync(prose(300)).subarray(0, 60)); // cut gzip stream
    expect(detectCompression(fs.readFileSync(path.join(data, 'doc.txt')))).toBe('gzip');
    const ids: string[] = [];
    for await (const it of readDocuments(path.join(data, 'gz-named-plain.jsonl'))) if (it.ok) ids.push(it.doc.id);
    expect(ids).toEqual(['g0', 'g1', 'g2', 'g3', 'g4']);
    const cfg = cfgFor(path.join(root, 'comp-out'), [{ path: data, category: 'patent' }], { filters: { minWords: 5 } });
    const r = await prep(cfg, { workers: 0 });
    expect(r.documents.kept).toBe(11);
    expect(r.files.failed.count).toEqual({ compressed: 3, unreadable: 1 });
    const failed = Object.fromEntries(r.files.failed.files.map((f) => [f.file, f.detail]));
    expect(failed['comp/a.zst']).toMatch(/^zstd-compressed.*zstd -d/);
    expect(failed['comp/b.txt']).toMatch(/^bzip2-compressed/);
    expect(failed['comp/c.jsonl']).toMatch(/^xz-compressed/);
    expect(failed['comp/broken.txt']).toMatch(/unexpected end of file/);
  });
});

describe('a changed config', () => {
  it('is detected by config hashes in the work folder: the affected phases are redone, never stale output reused', async () => {
    const data = path.join(root, 'chg');
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(path.join(data, 'a.jsonl'), Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: `c${i}`, text: prose(20 + 4 * i) })).join('\n') + '\n');
    const inputs = [{ path: data, category: 'patent' }];
    const out = path.join(root, 'chg-out');
    const r1 = await prep(cfgFor(out, inputs), { workers: 0 });
    expect(r1.redone).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'work', 'config.json'), 'utf8')).scan['0']).toMatch(/^[0-9a-f]{16}$/);
    // stricter filters into the same folder: scan, merge and emit are redone, the result is a fresh run's
    const strict = { filters: { minWords: 60 } };
    const r2 = await prep(cfgFor(out, inputs, strict), { workers: 0 });
    expect(r2.redone).toEqual(['scan 0/1', 'merge', 'emit 0/1']);
    const fresh = await prep(cfgFor(path.join(root, 'chg-fresh'), inputs, strict), { workers: 0 });
    expect(r2.documents).toEqual(fresh.documents);
    expect(r2.stages).toEqual(fresh.stages);
    expect(r2.documents.kept).toBeLessThan(r1.documents.kept);
    // new weights only: the scan and merge stand, emit is redone
    const r3 = await prep(cfgFor(out, inputs, { ...strict, stages: { s1: { weights: { patent: 2 } } } }), { workers: 0 });
    expect(r3.redone).toEqual(['emit 0/1']);
    expect(r3.stages.s1!.categories.patent!.documents).toBe(2 * fresh.stages.s1!.categories.patent!.documents);
    // the same config again: nothing redone
    expect((await prep(cfgFor(out, inputs, { ...strict, stages: { s1: { weights: { patent: 2 } } } }), { workers: 0 })).redone).toEqual([]);
    // parts scanned separately: a merge over a part scanned with another config is refused
    const pout = path.join(root, 'chg-parts');
    await prep(cfgFor(pout, inputs), { parts: 2, part: 0, phase: 'scan', workers: 0 });
    await prep(cfgFor(pout, inputs, strict), { parts: 2, part: 1, phase: 'scan', workers: 0 });
    await expect(prep(cfgFor(pout, inputs, strict), { parts: 2, phase: 'merge' })).rejects.toThrow(/part 0\/2 was scanned with another config/);
  });
});

describe('document ids', () => {
  it('two files of the same name in different folders get different ids (their relative paths)', async () => {
    const data = path.join(root, 'ids');
    for (const d of ['cn', 'us']) {
      fs.mkdirSync(path.join(data, d), { recursive: true });
      fs.writeFileSync(path.join(data, d, 'law.md'), `# Law ${d}\n\n${prose(60)}`);
    }
    const cfg = cfgFor(path.join(root, 'ids-out'), [{ path: data, category: 'law' }]);
    await prep(cfg, { workers: 0 });
    const prov = fs.readFileSync(path.join(cfg.output, 's1', 'part-0', 'provenance.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t')[1]);
    expect(prov).toEqual(['ids/cn/law.md', 'ids/us/law.md']);
  });
});

describe('mixture repeat cap', () => {
  it('caps a category above maxRepeat copies (default 4), warns in the report and says how many tokens it is short', async () => {
    const available = { patent: { tokens: 90_000 }, law: { tokens: 1_000 } };
    const st = { tokens: 100_000, weights: { patent: 0.9, law: 0.1 } };
    const c = cappedStageFactors(st, available);
    expect(c.wanted.law).toBeCloseTo(10);
    expect(c.factors.law).toBe(4);
    expect(c.shortTokens.law).toBe(6000);
    expect(c.factors.patent).toBeCloseTo(1);
    expect(c.warnings).toEqual([expect.stringMatching(/'law' would be repeated 10\.00 times.*capped at 4.*6000 tokens short/)]);
    expect(cappedStageFactors({ ...st, maxRepeat: 20 }, available).factors.law).toBeCloseTo(10);

    const data = path.join(root, 'mix');
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(path.join(data, 'p.jsonl'), Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: `m${i}`, text: prose(60) })).join('\n') + '\n');
    fs.writeFileSync(path.join(data, 'law.jsonl'), JSON.stringify({ id: 'l0', text: prose(60) }) + '\n');
    const inputs = [{ path: path.join(data, 'p.jsonl'), category: 'patent' }, { path: path.join(data, 'law.jsonl'), category: 'law' }];
    const r: PrepReport = await prep(cfgFor(path.join(root, 'mix-out'), inputs, { stages: { s1: { tokens: 20_000, weights: { patent: 0.5, law: 0.5 } } } }), { workers: 0 });
    const law = r.stages.s1!.categories.law!;
    expect(law.documents).toBe(4);
    expect(law.wantedFactor).toBeGreaterThan(20);
    expect(law.shortTokens).toBeGreaterThan(5000);
    expect(r.stages.s1!.warnings).toHaveLength(1);
    expect(summary(r, 'out', false).join('\n')).toMatch(/warning: category 'law' would be repeated/);
  });
});
