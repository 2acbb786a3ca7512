// The synthesis runner end to end: records with provenance, every task accounted for, malformed
// replies counted, an interrupted or crashed run resumed to the same bytes; the CLI against a local
// OpenAI-compatible server; the engine backend on a tiny random model, deterministic under a seed.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GenerateError, OfflineGenerator, doneLogPath, synthesize, type GenerateRequest, type SynthOptions, type SynthRecord, type SynthReport,
} from '../../src/data/generate/index.js';
import { EngineGenerator } from '../../src/infer/index.js';
import { LlamaForCausalLM, loadPretrained, preset, savePretrained, validateConfig } from '../../src/models/index.js';
import { readDocuments } from '../../src/data/readers/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { startMockServer, type MockServer } from './generate-mock-server.js';

const run = promisify(execFile);
const CLI = ['--import', 'tsx', new URL('../../src/cli/main.ts', import.meta.url).pathname];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-synth-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const DOCS = [
  { id: 'US1', title: 'Collapsible swimsuit', abstract: 'A collapsible swimsuit includes a loop. It folds small.', claims: '1. A swimsuit comprising a loop.\n2. The swimsuit of claim 1, wherein the loop is elastic.', description: 'The invention relates to swimwear.' },
  { id: 'CN2', title: '一种GPU资源配置方法', abstract: '本发明公开了一种GPU资源配置方法。该方法对吞吐量建模。', claims: '1. 一种GPU资源配置方法，包括：获取吞吐量；求解最优配置。' },
  { id: 'US3', title: 'Bicycle lock', abstract: 'A lock for bicycles with a hardened shackle. The shackle resists cutting.' }, // no claims
  { id: 'US4', title: 'Water filter', abstract: 'A water filter with a ceramic element.', claims: '1. A filter comprising a ceramic element.', description: 'Filters remove particles.' },
  { id: 'US5', title: 'Solar roof tile', abstract: 'A roof tile that holds a solar cell.', claims: '1. A tile comprising a solar cell.' },
];
const input = path.join(tmp, 'docs.jsonl');
fs.writeFileSync(input, [...DOCS.slice(0, 3).map((d) => JSON.stringify(d)), '{"id": "broken", ', ...DOCS.slice(3).map((d) => JSON.stringify(d))].join('\n') + '\n');

const fixedNow = (): Date => new Date('2026-01-02T03:04:05.000Z');
const base = (out: string, o: Partial<SynthOptions> = {}): SynthOptions => ({
  inputs: [input], templates: ['patent-to-qa', 'claim-to-abstract'], generator: new OfflineGenerator(), out, now: fixedNow, params: { seed: 42 }, ...o,
});
const records = (file: string): SynthRecord[] => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SynthRecord);
const failedSum = (r: SynthReport): number => Object.values(r.tasks.failed).reduce((s, v) => s + v, 0);
const accounted = (r: SynthReport): void => expect(r.tasks.resumed + r.tasks.ok + failedSum(r)).toBe(r.tasks.total);

describe('synthesize', () => {
  it('writes one record per output with provenance and accounts for every document and task', async () => {
    const out = path.join(tmp, 'offline.jsonl');
    const r = await synthesize(base(out));
    expect(r.documents).toEqual({ in: 6, rejected: { 'malformed-json': 1 } });
    expect(r.tasks).toEqual({ total: 10, resumed: 0, ok: 9, failed: { 'missing-field:claims': 1 } });
    accounted(r);
    const recs = records(out);
    expect(recs.length).toBe(r.generated);
    const us1 = recs.filter((x) => x.provenance.sourceId === 'US1');
    expect(us1.map((x) => x.id)).toEqual(['US1/patent-to-qa/0', 'US1/patent-to-qa/1', 'US1/patent-to-qa/2', 'US1/claim-to-abstract/0']);
    expect(us1[3]).toMatchObject({ category: 'sft', lang: 'en', output: DOCS[0]!.abstract });
    expect(us1[0]!.provenance).toEqual({
      sourceId: 'US1', source: input, template: 'patent-to-qa', templateVersion: 1, backend: 'offline', model: 'extractive',
      params: { maxTokens: 512, temperature: 0, seed: us1[0]!.provenance.params.seed }, finishReason: 'stop',
      usage: us1[0]!.provenance.usage, time: '2026-01-02T03:04:05.000Z',
    });
    // Each task its own seed, the same for every output of the task.
    expect(us1[0]!.provenance.params.seed).toBe(us1[2]!.provenance.params.seed);
    expect(us1[0]!.provenance.params.seed).not.toBe(us1[3]!.provenance.params.seed);
    const cn = recs.filter((x) => x.provenance.sourceId === 'CN2');
    expect(cn[0]).toMatchObject({ category: 'qa', lang: 'zh' });
    expect(cn[0]!.text).toMatch(/^问：/);
    // data prep reads the output back as JSONL documents (category and lang from their fields).
    const back = [];
    for await (const item of readDocuments(out, { fields: { category: 'category', lang: 'lang' } })) back.push(item.ok ? item.doc : null);
    expect(back.map((d) => [d?.id, d?.category, d?.lang, d?.text])).toEqual(recs.map((x) => [x.id, x.category, x.lang, x.text]));
    // Running again does nothing new: every task is logged as done.
    const again = await synthesize(base(out));
    expect(again.tasks).toMatchObject({ total: 10, resumed: 10, ok: 0 });
    expect(records(out).length).toBe(recs.length);
  });

  it('counts empty, unparsable and partly malformed replies without stopping', async () => {
    const replies: Record<string, string> = {
      US1: 'Q: Good?\nA: Yes.\nQ: dangling\n\nA: orphan answer\nA: another orphan',
      CN2: '',
      US3: 'no pairs here',
      US4: 'Q: One?\nA: One.',
      US5: '```\nQ: Two?\nA: Two.\n```',
    };
    const generator = new OfflineGenerator({ respond: (req: GenerateRequest) => replies[req.task!.document.id]! });
    const r = await synthesize(base(path.join(tmp, 'scripted.jsonl'), { generator, templates: ['patent-to-qa'] }));
    expect(r.tasks).toEqual({ total: 5, resumed: 0, ok: 3, failed: { 'empty-reply': 1, 'unparsable-reply': 1 } });
    expect(r.malformed).toBe(1); // US1: the second orphan answer ('dangling' got 'orphan answer')
    expect(r.generated).toBe(4);
    expect(r.examples['unparsable-reply']).toMatch(/US3: "no pairs here"/);
    expect(records(path.join(tmp, 'scripted.jsonl')).map((x) => x.provenance.model)).toEqual(['scripted', 'scripted', 'scripted', 'scripted']);
  });

  it('resumes an interrupted or crashed run to the same bytes', async () => {
    const full = path.join(tmp, 'full.jsonl');
    await synthesize(base(full));
    const want = fs.readFileSync(full);

    // Interrupted: aborted during the 5th request, 2 in flight.
    const out = path.join(tmp, 'resumed.jsonl');
    const ac = new AbortController();
    let calls = 0;
    const extractive = new OfflineGenerator();
    const interrupting = new OfflineGenerator({
      respond: async (req) => {
        if (++calls === 5) ac.abort();
        if (req.signal?.aborted) throw new GenerateError('E_ABORTED', 'aborted', 'aborted');
        return (await extractive.complete(req)).text;
      },
      model: 'extractive',
    });
    const first = await synthesize(base(out, { generator: interrupting, signal: ac.signal, concurrency: 2 }));
    expect(first.status).toBe('aborted');
    expect(first.tasks.failed.aborted).toBeGreaterThan(0);
    accounted(first);
    expect(want.subarray(0, fs.statSync(out).size).equals(fs.readFileSync(out))).toBe(true); // a prefix
    const second = await synthesize(base(out));
    expect(second.status).toBe('completed');
    expect(second.tasks.resumed).toBe(first.tasks.ok + (first.tasks.failed['missing-field:claims'] ?? 0));
    expect(fs.readFileSync(out).equals(want)).toBe(true);

    // Crashed mid-write: a half record in the output, a half line in the log, a lost log line.
    const log = doneLogPath(out);
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    fs.writeFileSync(log, lines.slice(0, 3).join('\n') + '\n' + lines[3]!.slice(0, 10));
    fs.appendFileSync(out, '{"id":"half');
    const third = await synthesize(base(out));
    expect(third.tasks.resumed).toBe(3);
    expect(fs.readFileSync(out).equals(want)).toBe(true);
  });

  it('retries tasks that failed for a transient reason on the next run', async () => {
    const out = path.join(tmp, 'transient.jsonl');
    const extractive = new OfflineGenerator();
    let failOnce = true;
    const flaky = new OfflineGenerator({
      model: 'extractive',
      respond: async (req) => {
        if (req.task!.document.id === 'US4' && failOnce) {
          failOnce = false;
          throw new GenerateError('E_IO', 'timeout', 'no answer in time');
        }
        return (await extractive.complete(req)).text;
      },
    });
    const r1 = await synthesize(base(out, { generator: flaky, templates: ['claim-to-abstract'] }));
    expect(r1.tasks.failed).toEqual({ timeout: 1, 'missing-field:claims': 1 });
    const r2 = await synthesize(base(out, { generator: flaky, templates: ['claim-to-abstract'] }));
    expect(r2.tasks).toEqual({ total: 5, resumed: 4, ok: 1, failed: {} }); // 3 written + 1 without claims, logged
    expect(records(out).map((x) => x.provenance.sourceId)).toEqual(['US1', 'CN2', 'US5', 'US4']);
  });

  it('rejects bad options with clear errors', async () => {
    await expect(synthesize(base(path.join(tmp, 'x.jsonl'), { templates: [] }))).rejects.toThrow(/at least one template/);
    await expect(synthesize(base(path.join(tmp, 'x.jsonl'), { templates: ['nope' as never] }))).rejects.toThrow(/unknown template 'nope'/);
    await expect(synthesize(base(path.join(tmp, 'x.jsonl'), { params: { temperature: 9 } }))).rejects.toThrow(/temperature must be in/);
    await expect(synthesize(base(path.join(tmp, 'x.jsonl'), { inputs: [path.join(tmp, 'missing')] }))).rejects.toThrow(/cannot read input/);
  });
});

describe('patentgpt data synth', () => {
  let server: MockServer;
  beforeAll(async () => {
    server = await startMockServer();
  });
  afterAll(() => server.close());

  it('runs against an OpenAI-compatible server with the key from an environment variable', async () => {
    const out = path.join(tmp, 'cli-http.jsonl');
    const args = [...CLI, 'data', 'synth', '--input', input, '--template', 'claim-to-abstract', '--backend', 'http', '--url', server.url,
      '--key-env', 'SYNTH_TEST_KEY', '--model', 'gpt-test', '--out', out, '--json', '--quiet', '--rpm', '6000'];
    const { stdout } = await run(process.execPath, args, { env: { ...process.env, SYNTH_TEST_KEY: 'sk-from-env' } });
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as SynthReport;
    expect(report.tasks).toEqual({ total: 5, resumed: 0, ok: 4, failed: { 'missing-field:claims': 1 } });
    const recs = records(out);
    expect(recs.map((x) => x.provenance.sourceId)).toEqual(['US1', 'CN2', 'US4', 'US5']);
    expect(recs[0]!.provenance).toMatchObject({ backend: 'http', model: 'served-gpt-test', template: 'claim-to-abstract', params: { maxTokens: 512, temperature: 0 } });
    expect(recs[0]!.output).toBe('echo: </claims>'); // the server repeats the prompt's last line
    const seen = server.seen.filter((s) => (s.body.model as string) === 'gpt-test');
    expect(seen.length).toBe(4);
    expect(seen.every((s) => s.headers.authorization === 'Bearer sk-from-env')).toBe(true);
    expect(seen[1]!.body.messages).toEqual([expect.objectContaining({ role: 'system' }), expect.objectContaining({ role: 'user', content: expect.stringMatching(/^下面是一件专利的权利要求/) })]);
    // A missing key variable is an error before any request.
    await expect(run(process.execPath, [...args.slice(0, -4), '--key-env', 'SYNTH_UNSET_VAR'])).rejects.toThrow(/SYNTH_UNSET_VAR: that environment variable is not set/);
    await expect(run(process.execPath, [...CLI, 'data', 'synth', '--input', input, '--template', 'summarize', '--backend', 'offline', '--out', out])).rejects.toThrow(/unknown template 'summarize'/);
  });
});

describe('engine backend', () => {
  it('generates on a tiny random model, deterministic under a seed; the CLI gives the same records', async () => {
    const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: 1024 });
    const dir = path.join(tmp, 'tiny-model');
    const model = new LlamaForCausalLM(cfg, { seed: 3, initStd: 0.08 });
    await savePretrained(model, dir);
    model.dispose();
    const loaded = await loadPretrained(dir);
    const opts = (out: string, generator: EngineGenerator): SynthOptions => ({
      inputs: [input], templates: ['rewrite-to-prose'], generator, out, limit: 3, now: fixedNow,
      params: { maxTokens: 8, temperature: 0.9, seed: 5 }, templateOptions: { maxSourceChars: 120 },
    });
    const strip = (f: string): unknown[] => records(f).map((x) => ({ ...x, provenance: { ...x.provenance, time: null } }));
    const g = EngineGenerator.fromModel(loaded, new ByteTokenizer(), 'tiny-model', { kvCacheBytes: 2 ** 22 });
    const a = await synthesize(opts(path.join(tmp, 'engine-a.jsonl'), g));
    const b = await synthesize({ ...opts(path.join(tmp, 'engine-b.jsonl'), g), concurrency: 1 });
    g.close();
    loaded.dispose();
    expect(a.tasks.total).toBe(3); // the first 3 documents
    accounted(a);
    expect(a.usage.promptTokens).toBeGreaterThan(300);
    const ra = strip(path.join(tmp, 'engine-a.jsonl'));
    expect(ra.length).toBe(a.tasks.ok);
    expect(ra.length).toBeGreaterThan(0);
    expect(ra).toEqual(strip(path.join(tmp, 'engine-b.jsonl'))); // batched or alone, same seed: same text
    for (const r of records(path.join(tmp, 'engine-a.jsonl')))
      expect(r.provenance).toMatchObject({ backend: 'engine', model: 'tiny-model', template: 'rewrite-to-prose', params: { maxTokens: 8, temperature: 0.9 } });
    const out = path.join(tmp, 'engine-cli.jsonl');
    await run(process.execPath, [...CLI, 'data', 'synth', '--input', input, '--template', 'rewrite-to-prose', '--backend', 'engine', '--model', dir,
      '--tokenizer', 'byte', '--limit', '3', '--max-tokens', '8', '--temperature', '0.9', '--seed', '5', '--max-source-chars', '120', '--kv-cache-mb', '4', '--out', out, '--quiet']);
    expect(strip(out)).toEqual(ra);
  });

  it('without maxTokens, a long prompt asks for what the context leaves (no error), up to 512', async () => {
    const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: 128 });
    const model = new LlamaForCausalLM(cfg, { seed: 3, initStd: 0.08 });
    const g = EngineGenerator.fromModel(model, new ByteTokenizer(), 'tiny-model', { kvCacheBytes: 2 ** 22 });
    try {
      const r = await g.complete({ messages: [{ role: 'user', content: 'x'.repeat(90) }], seed: 1 });
      // [INST] ... [/INST] around 90 bytes leaves the 128-token context 128 - 108 = 20 tokens.
      expect(r.usage.promptTokens + r.usage.completionTokens).toBeLessThanOrEqual(128);
      if (r.finishReason === 'length') expect(r.usage.promptTokens + r.usage.completionTokens).toBe(128);
      await expect(g.complete({ messages: [{ role: 'user', content: 'x'.repeat(90) }], maxTokens: 100 })).rejects.toThrow(/exceed the context of 128/);
    } finally {
      g.close();
      model.dispose();
    }
  });
});
