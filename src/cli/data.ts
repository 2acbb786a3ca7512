// `patentgpt data prep --config prep.json [--shard i/N] [--phase scan|merge|emit|all] [--workers N] [--merge-memory MiB] [--explain]`
// `patentgpt data junk --out junk.jsonl [--count N] [--categories a,b] [--seed S]`
import * as fs from 'node:fs';
import { Command } from 'commander';
import { PatentGPTError } from '../errors.js';
import { junkDocuments } from '../data/junk.js';
import { loadPrepConfig, prep, type PrepReport } from '../data/prep.js';
import { Progress } from '../train/progress.js';

function parseShard(s: string): { part: number; parts: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m || Number(m[1]) >= Number(m[2]) || Number(m[2]) < 1)
    throw new PatentGPTError('E_ARGUMENT', `--shard must be i/N with 0 <= i < N (e.g. 0/4), got '${s}'`);
  return { part: Number(m[1]), parts: Number(m[2]) };
}

export function dataCommand(): Command {
  const data = new Command('data').description('prepare training data: read, filter, deduplicate, mix, tokenize');
  data
    .command('prep')
    .description('run the data-prep pipeline of a config; writes token shards per stage and prep-report.json')
    .requiredOption('--config <file>', 'prep config (JSON), see examples/prep.json')
    .option('--shard <i/N>', 'process part i of N (files split round-robin); then --phase merge once, then --phase emit per part')
    .option('--phase <phase>', 'scan | merge | emit | all (default: all for one part, scan with --shard)')
    .option('--workers <n>', 'scan worker threads besides the main thread, which scans too when they are busy; 0 scans in the main thread only (default: 0 under 32 MiB of input, where a worker cannot pay for its start-up, else one per core but one, at most 8)')
    .option('--merge-memory <MiB>', 'sort buffers of the dedup merge; beyond them sorted runs spill to disk (default 256)')
    .option('--explain', 'print what the filters kept and dropped per category and why, and their precision/recall on labelled inputs')
    .action(async (o: { config: string; shard?: string; phase?: string; workers?: string; mergeMemory?: string; explain?: boolean }) => {
      const workers = o.workers === undefined ? undefined : Number(o.workers);
      if (workers !== undefined && !(Number.isInteger(workers) && workers >= 0 && workers <= 256))
        throw new PatentGPTError('E_ARGUMENT', `--workers must be an integer from 0 to 256, got '${o.workers}'`);
      const mergeMiB = o.mergeMemory === undefined ? undefined : Number(o.mergeMemory);
      if (mergeMiB !== undefined && !(Number.isFinite(mergeMiB) && mergeMiB >= 1 && mergeMiB <= 65536))
        throw new PatentGPTError('E_ARGUMENT', `--merge-memory must be a number of MiB from 1 to 65536, got '${o.mergeMemory}'`);
      const cfg = loadPrepConfig(o.config);
      const { part, parts } = o.shard ? parseShard(o.shard) : { part: 0, parts: 1 };
      const phase = (o.phase ?? (parts > 1 ? 'scan' : 'all')) as 'scan' | 'merge' | 'emit' | 'all';
      if (!['scan', 'merge', 'emit', 'all'].includes(phase)) throw new PatentGPTError('E_ARGUMENT', `--phase must be scan, merge, emit or all, got '${phase}'`);
      let bar: Progress | null = null;
      let barPhase = '';
      const report = await prep(cfg, {
        part,
        parts,
        phase,
        workers,
        mergeBudgetBytes: mergeMiB === undefined ? undefined : Math.floor(mergeMiB * 2 ** 20),
        onProgress(e) {
          if (e.phase !== barPhase) {
            bar?.done();
            barPhase = e.phase;
            bar = new Progress({ total: Math.max(1, e.totalBytes || e.documents), label: `${e.phase} ${part}/${parts}` });
          }
          bar!.update(e.totalBytes ? e.bytes : e.documents, { docs: e.documents, kept: e.kept, MB: e.bytes / 1e6 });
        },
      });
      (bar as Progress | null)?.done();
      console.log(summary(report, cfg.output, o.explain ?? false).join('\n'));
    });
  data
    .command('junk')
    .description('write generated junk documents (machine-repeated text, boilerplate pages, tables of numbers, garbled OCR, keyword spam, mojibake) as JSONL, to label as junk in a prep config and measure the filters')
    .requiredOption('--out <file>', 'JSONL file to write ({id, text, kind, category} per line)')
    .option('--count <n>', 'documents (default 600)', '600')
    .option('--categories <list>', 'comma-separated categories they are spread over (default patent,application,law,general)', 'patent,application,law,general')
    .option('--seed <n>', 'seed (default 1)', '1')
    .action((o: { out: string; count: string; categories: string; seed: string }) => {
      const count = Number(o.count);
      const seed = Number(o.seed);
      if (!Number.isSafeInteger(count) || count < 0) throw new PatentGPTError('E_ARGUMENT', `--count must be an integer >= 0, got '${o.count}'`);
      if (!Number.isSafeInteger(seed)) throw new PatentGPTError('E_ARGUMENT', `--seed must be an integer, got '${o.seed}'`);
      const docs = junkDocuments(count, o.categories.split(',').map((c) => c.trim()).filter((c) => c), seed);
      fs.writeFileSync(o.out, docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
      console.log(`${docs.length} junk documents: ${o.out}`);
    });
  return data;
}

const pct = (x: number | null): string => (x === null ? '-' : `${(100 * x).toFixed(1)}%`);

/** The lines the CLI prints after a run: totals, warnings, and with --explain the filters' decisions per category. */
export function summary(report: PrepReport, output: string, explain: boolean): string[] {
  const d = report.documents;
  const lines = [
    `documents in ${d.in}, kept ${d.kept}, dropped ${d.in - d.kept}`,
    ...Object.entries(d.dropped).map(([k, v]) => `  ${k}: ${v}`),
    `duplicates: exact ${report.duplicates.exact}, near ${report.duplicates.near} in ${report.duplicates.clusters} clusters`,
  ];
  const failed = Object.entries(report.files.failed.count);
  if (failed.length > 0) lines.push(`files failed as wholes: ${failed.map(([k, v]) => `${k} ${v}`).join(', ')}`, ...report.files.failed.files.slice(0, 10).map((f) => `  ${f.file}: ${f.reason} (${f.detail})`));
  const skipped = Object.entries(report.files.skipped.count);
  if (skipped.length > 0) lines.push(`paths skipped: ${skipped.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (report.redone.length > 0) lines.push(`config changed since the last run: redone ${report.redone.join(', ')}`);
  if (explain) {
    lines.push('filters per category (before dedup):');
    for (const [c, v] of Object.entries(report.categories)) {
      const why = Object.entries(v.dropped).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
      lines.push(`  ${c}: in ${v.in}, kept ${v.kept} (${pct(v.in ? v.kept / v.in : null)})${why ? `; dropped: ${why}` : ''}`);
    }
    const q = Object.entries(report.filterQuality);
    if (q.length > 0) {
      lines.push('labelled inputs (junk = positive): category  good kept  junk dropped  precision  recall');
      for (const [c, v] of q) lines.push(`  ${c}: good ${v.good.kept}/${v.good.in} (${pct(v.goodKept)}), junk ${v.junk.in - v.junk.kept}/${v.junk.in} (${pct(v.junkDropped)}), precision ${pct(v.precision)}, recall ${pct(v.recall)}`);
    }
  }
  for (const [s, st] of Object.entries(report.stages)) {
    lines.push(`stage ${s}: ${st.tokens} tokens`);
    lines.push(...Object.entries(st.categories).map(([c, v]) => `  ${c}: ${v.tokens} tokens, ${v.documents} documents (x${v.factor.toFixed(3)}${v.shortTokens > 0 ? `, capped from x${v.wantedFactor.toFixed(2)}: ${v.shortTokens} tokens short` : ''})`));
    lines.push(...st.warnings.map((w) => `  warning: ${w}`));
  }
  lines.push(`report: ${output}/prep-report.json; dropped documents: ${report.rejects}`);
  return lines;
}
