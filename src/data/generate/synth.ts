// A synthesis run: documents in (any format the readers take), templated requests to a generator,
// parsed replies out as JSONL records with provenance, which `data prep` can then read as input.
//
//   read ──► task per (document, template) ──► generator (up to `concurrency` in flight)
//                                                  ──► parse ──► commit in input order:
//                                                               records to <out>, a line to <out>.done.jsonl
// Resume: every finished task (records written, or failed for a reason a retry cannot fix) has a
// line in <out>.done.jsonl with the byte length of <out> after it. A restarted run cuts <out>
// back to the last logged length (dropping records of an unlogged task), skips logged tasks and
// does the rest, so it ends with the records an uninterrupted run writes (only `time` differs;
// tasks that failed for a transient reason -- timeout, network, 429, 5xx -- are retried at the end).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PatentGPTError } from '../../errors.js';
import { hash32 } from '../../util/rng.js';
import { writeFileAtomic } from '../../util/atomic.js';
import type { Category, Document } from '../document.js';
import { type ReadOptions, listFiles, readDocuments } from '../readers/index.js';
import { type PromptLang, type SynthOutput, type Template, type TemplateName, type TemplateOptions, getTemplate, promptLang } from './templates.js';
import { GenerateError, type GenerateResult, type GenerationParams, type Generator, validateParams } from './types.js';

export interface SynthOptions {
  /** Files or folders (read recursively). */
  inputs: string[];
  /** Reader options (format, category, lang, field map, ...). */
  read?: Omit<ReadOptions, 'onBytes'>;
  templates: TemplateName[];
  generator: Generator;
  /** The JSONL file of records; <out>.done.jsonl beside it is the resume log. */
  out: string;
  /** Sampling for every request; seed is the run's base seed (default 0), each task gets its own from it. */
  params?: GenerationParams;
  templateOptions?: TemplateOptions;
  /** Read at most this many documents. */
  limit?: number;
  /** Requests in flight (default: the generator's). */
  concurrency?: number;
  /** Stops the run: in-flight requests are cancelled, nothing after them is committed. */
  signal?: AbortSignal;
  onProgress?: (p: SynthProgress) => void;
  /** Clock for provenance times (tests). */
  now?: () => Date;
}

export interface SynthProgress {
  bytes: number;
  totalBytes: number;
  documents: number;
  tasksDone: number;
  generated: number;
  failed: number;
}

export interface Provenance {
  sourceId: string;
  source: string;
  template: TemplateName;
  templateVersion: number;
  backend: string;
  model: string;
  params: { maxTokens: number; temperature: number; topP?: number; seed: number };
  finishReason: string;
  usage: { promptTokens: number; completionTokens: number };
  time: string;
}

/** One line of the output: readable by `data prep` as JSONL (text, category and lang fields). */
export interface SynthRecord extends SynthOutput {
  id: string;
  category: Category;
  lang: string;
  title?: string;
  provenance: Provenance;
}

export interface SynthReport {
  out: string;
  status: 'completed' | 'aborted';
  /** Documents read; rejected ones by the reader's reason (never sent to the generator). */
  documents: { in: number; rejected: Record<string, number> };
  /** total = resumed + ok + sum(failed). */
  tasks: { total: number; resumed: number; ok: number; failed: Record<string, number> };
  /** Records written by this run. */
  generated: number;
  /** Parts of usable replies skipped as malformed (e.g. a question without an answer). */
  malformed: number;
  usage: { promptTokens: number; completionTokens: number };
  /** One message per failure reason (the first seen), to say why. */
  examples: Record<string, string>;
  elapsedSec: number;
}

/** Failures a retry cannot fix: logged as done, so a restart does not pay for them again. */
const PERMANENT = new Set(['client-error', 'malformed-response', 'engine-error', 'empty-reply', 'unparsable-reply', 'missing-field:claims', 'missing-field:text']);

interface LogEntry {
  template: TemplateName;
  source: string;
  id: string;
  /** Occurrence of this (source, id) in the input (ids repeat in some corpora). */
  n: number;
  status: 'ok' | 'failed';
  reason?: string;
  records: number;
  /** Byte length of <out> after this task's records. */
  end: number;
}

const keyOf = (e: Pick<LogEntry, 'template' | 'source' | 'id' | 'n'>): string => `${e.template}\u0000${e.source}\u0000${e.id}\u0000${e.n}`;

export function doneLogPath(out: string): string {
  return `${out}.done.jsonl`;
}

/** Reads the resume log, makes <out> and the log agree (cutting what an interrupted run left half done), returns the done keys and the output length. */
async function prepareResume(out: string): Promise<{ done: Set<string>; end: number }> {
  const logFile = doneLogPath(out);
  const outSize = fs.existsSync(out) ? (await fs.promises.stat(out)).size : 0;
  const raw = fs.existsSync(logFile) ? await fs.promises.readFile(logFile, 'utf8') : '';
  const kept: LogEntry[] = [];
  let end = 0;
  const lines = raw.split('\n');
  for (let i = 0; i < lines.length - 1; i++) { // the last piece has no newline: unfinished
    let e: LogEntry;
    try {
      e = JSON.parse(lines[i]!) as LogEntry;
    } catch {
      break;
    }
    if (typeof e.end !== 'number' || e.end < end || e.end > outSize) break;
    kept.push(e);
    end = e.end;
  }
  if (kept.length !== lines.length - 1 || lines[lines.length - 1] !== '')
    await writeFileAtomic(logFile, kept.map((e) => JSON.stringify(e) + '\n').join(''));
  if (outSize !== end) await fs.promises.truncate(out, end).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  return { done: new Set(kept.map(keyOf)), end };
}

type Outcome =
  | { kind: 'ok'; entry: LogEntry; records: SynthRecord[]; usage: GenerateResult['usage']; malformed: number }
  | { kind: 'failed'; entry: LogEntry; reason: string; message: string; usage?: GenerateResult['usage']; malformed?: number };

/** Runs a synthesis job (see the file comment); resolves with the closing report. */
export async function synthesize(opts: SynthOptions): Promise<SynthReport> {
  const t0 = performance.now();
  if (!Array.isArray(opts.templates) || opts.templates.length === 0) throw new PatentGPTError('E_ARGUMENT', 'synthesize: give at least one template');
  const templates: Template[] = opts.templates.map(getTemplate);
  const params = opts.params ?? {};
  validateParams(params, 'synthesize');
  if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 0)) throw new PatentGPTError('E_ARGUMENT', `synthesize: limit must be an integer >= 0, got ${opts.limit}`);
  const concurrency = opts.concurrency ?? opts.generator.concurrency;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new PatentGPTError('E_ARGUMENT', `synthesize: concurrency must be an integer >= 1, got ${concurrency}`);
  const files: string[] = [];
  for (const p of opts.inputs) {
    try {
      files.push(...(await listFiles(p)));
    } catch (err) {
      throw new PatentGPTError('E_IO', `synthesize: cannot read input ${p}: ${(err as Error).message}`);
    }
  }
  const totalBytes = files.reduce((s, f) => s + fs.statSync(f).size, 0);
  const now = opts.now ?? (() => new Date());
  const baseSeed = params.seed ?? 0;
  const maxTokens = params.maxTokens ?? 512;
  const temperature = params.temperature ?? 0;

  await fs.promises.mkdir(path.dirname(path.resolve(opts.out)), { recursive: true });
  const { done, end: startEnd } = await prepareResume(opts.out);
  const outFh = await fs.promises.open(opts.out, 'a');
  const logFh = await fs.promises.open(doneLogPath(opts.out), 'a');
  let end = startEnd;

  const report: SynthReport = {
    out: opts.out, status: 'completed', documents: { in: 0, rejected: {} }, tasks: { total: 0, resumed: 0, ok: 0, failed: {} },
    generated: 0, malformed: 0, usage: { promptTokens: 0, completionTokens: 0 }, examples: {}, elapsedSec: 0,
  };
  let bytesDone = 0;
  let bytesFile = 0;
  let tasksDone = 0;
  const failedTotal = (): number => Object.values(report.tasks.failed).reduce((s, v) => s + v, 0);
  const progress = (): void =>
    opts.onProgress?.({ bytes: bytesDone + bytesFile, totalBytes, documents: report.documents.in, tasksDone, generated: report.generated, failed: failedTotal() });

  const runTask = async (doc: Document, t: Template, lang: PromptLang, entry: LogEntry): Promise<Outcome> => {
    if (!doc[t.requires].trim()) return { kind: 'failed', entry, reason: `missing-field:${t.requires}`, message: `${doc.id} has no ${t.requires}` };
    const seed = hash32(baseSeed, t.name, doc.id, entry.n);
    let res: GenerateResult;
    try {
      res = await opts.generator.complete({
        messages: t.render(doc, lang, opts.templateOptions),
        maxTokens, temperature, seed,
        ...(params.topP !== undefined ? { topP: params.topP } : {}),
        ...(params.stop ? { stop: params.stop } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        task: { template: t.name, document: doc, lang, ...(opts.templateOptions ? { options: opts.templateOptions } : {}) },
      });
    } catch (err) {
      const reason = err instanceof GenerateError ? err.reason : opts.signal?.aborted ? 'aborted' : 'generator-error';
      return { kind: 'failed', entry, reason, message: err instanceof Error ? err.message : String(err) };
    }
    const parsed = t.parse(res.text, doc, lang, opts.templateOptions);
    if (parsed.outputs.length === 0) {
      const reason = parsed.failure ?? 'unparsable-reply';
      return { kind: 'failed', entry, reason, message: `${doc.id}: ${JSON.stringify(res.text.slice(0, 120))}`, usage: res.usage, malformed: parsed.malformed };
    }
    const provenance: Provenance = {
      sourceId: doc.id, source: doc.source, template: t.name, templateVersion: t.version, backend: opts.generator.backend, model: res.model,
      params: { maxTokens, temperature, ...(params.topP !== undefined ? { topP: params.topP } : {}), seed },
      finishReason: res.finishReason, usage: res.usage, time: now().toISOString(),
    };
    const suffix = entry.n > 0 ? `#${entry.n}` : '';
    const records = parsed.outputs.map((o, k): SynthRecord => ({
      id: `${doc.id}${suffix}/${t.name}/${k}`, category: t.category(doc), lang: doc.lang !== 'und' ? doc.lang : lang,
      ...(doc.title ? { title: doc.title } : {}), ...o, provenance,
    }));
    return { kind: 'ok', entry, records, usage: res.usage, malformed: parsed.malformed };
  };

  let stopped = false;
  const commit = async (o: Outcome): Promise<void> => {
    tasksDone++;
    if (o.usage) {
      report.usage.promptTokens += o.usage.promptTokens;
      report.usage.completionTokens += o.usage.completionTokens;
    }
    report.malformed += o.malformed ?? 0;
    // After a cancellation nothing more is committed, so the output stays a prefix of the full run's.
    if (stopped || (o.kind === 'failed' && o.reason === 'aborted') || opts.signal?.aborted) {
      stopped = true;
      report.tasks.failed.aborted = (report.tasks.failed.aborted ?? 0) + 1;
      return progress();
    }
    if (o.kind === 'ok') {
      const bytes = Buffer.from(o.records.map((r) => JSON.stringify(r) + '\n').join(''), 'utf8');
      await outFh.write(bytes);
      end += bytes.length;
      report.tasks.ok++;
      report.generated += o.records.length;
      await logFh.write(JSON.stringify({ ...o.entry, status: 'ok', records: o.records.length, end }) + '\n');
    } else {
      report.tasks.failed[o.reason] = (report.tasks.failed[o.reason] ?? 0) + 1;
      report.examples[o.reason] ??= o.message;
      if (PERMANENT.has(o.reason)) await logFh.write(JSON.stringify({ ...o.entry, status: 'failed', reason: o.reason, records: 0, end }) + '\n');
    }
    progress();
  };

  const window: Promise<Outcome>[] = [];
  const seen = new Map<string, number>();
  try {
    read: for (const file of files) {
      bytesFile = 0;
      for await (const item of readDocuments(file, { ...(opts.read ?? {}), onBytes: (n) => (bytesFile = n) })) {
        if (stopped || opts.signal?.aborted) break read;
        if (opts.limit !== undefined && report.documents.in >= opts.limit) break read;
        report.documents.in++;
        if (!item.ok) {
          const r = item.rejected.reason;
          report.documents.rejected[r] = (report.documents.rejected[r] ?? 0) + 1;
          continue;
        }
        const doc = item.doc;
        const occ = `${doc.source}\u0000${doc.id}`;
        const n = seen.get(occ) ?? 0;
        seen.set(occ, n + 1);
        const lang = promptLang(doc);
        for (const t of templates) {
          const entry: LogEntry = { template: t.name, source: doc.source, id: doc.id, n, status: 'ok', records: 0, end: 0 };
          report.tasks.total++;
          if (done.has(keyOf(entry))) {
            report.tasks.resumed++;
            continue;
          }
          window.push(runTask(doc, t, lang, entry));
          while (window.length >= concurrency) await commit(await window.shift()!);
        }
        progress();
      }
      bytesDone += fs.statSync(file).size;
      bytesFile = 0;
    }
    while (window.length > 0) await commit(await window.shift()!);
  } finally {
    // A throw (a bug, a full disk) must not leave requests running unobserved.
    await Promise.allSettled(window);
    await outFh.sync().catch(() => undefined);
    await logFh.sync().catch(() => undefined);
    await outFh.close();
    await logFh.close();
  }
  if (stopped || opts.signal?.aborted) report.status = 'aborted';
  report.elapsedSec = (performance.now() - t0) / 1000;
  return report;
}
