// `patentgpt data prep --config prep.json [--shard i/N] [--phase scan|merge|emit|all] [--workers N] [--merge-memory MiB]`
import { Command } from 'commander';
import { PatentGPTError } from '../errors.js';
import { loadPrepConfig, prep } from '../data/prep.js';
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
    .action(async (o: { config: string; shard?: string; phase?: string; workers?: string; mergeMemory?: string }) => {
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
      const d = report.documents;
      const lines = [
        `documents in ${d.in}, kept ${d.kept}, dropped ${d.in - d.kept}`,
        ...Object.entries(d.dropped).map(([k, v]) => `  ${k}: ${v}`),
        `duplicates: exact ${report.duplicates.exact}, near ${report.duplicates.near} in ${report.duplicates.clusters} clusters`,
        ...Object.entries(report.stages).flatMap(([s, st]) => [
          `stage ${s}: ${st.tokens} tokens`,
          ...Object.entries(st.categories).map(([c, v]) => `  ${c}: ${v.tokens} tokens, ${v.documents} documents (x${v.factor.toFixed(3)})`),
        ]),
        `report: ${cfg.output}/prep-report.json`,
      ];
      console.log(lines.join('\n'));
    });
  return data;
}
