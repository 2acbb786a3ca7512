// patentgpt demo: the paper's pipeline end to end at toy scale on the bundled data (src/demo).
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MINUTES, runDemo } from '../demo/index.js';

export function demoCommand(): Command {
  return new Command('demo')
    .description('run the whole PatentGPT pipeline at toy scale on bundled IP data: data prep, tokenizer train + merge, two-stage pretraining, an SMoE variant, SFT, reward model + PPO (or DPO), eval after each stage, a chat transcript, and report.html')
    .option('--out <dir>', 'demo folder (rerunning with the same folder skips finished steps and resumes a half-done stage)', 'patentgpt-demo')
    .option('--minutes <n>', `time budget on 2 cores; scales every stage's steps (default ${DEFAULT_MINUTES})`, (v: string) => {
      const n = Number(v);
      if (!(n > 0 && Number.isFinite(n))) throw new InvalidArgumentError('expected a positive number of minutes');
      return n;
    })
    .option('--align <method>', "alignment after SFT: 'ppo' (reward model + PPO) or 'dpo'", (v: string) => {
      if (v !== 'ppo' && v !== 'dpo') throw new InvalidArgumentError("expected 'ppo' or 'dpo'");
      return v;
    }, 'ppo')
    .option('--quiet', 'no progress output, only the final summary')
    .addOption(new Option('--smoke', 'tiny steps and model (tests)').hideHelp())
    .addHelpText('after', [
      '',
      'Progress: a bar per stage on a terminal, JSON lines when piped. Ctrl-C saves a checkpoint; run the same command again to continue.',
      'Open <out>/report.html in a browser when it finishes.',
    ].join('\n'))
    .action(async (o: { out: string; minutes?: number; align: 'ppo' | 'dpo'; quiet?: boolean; smoke?: boolean }) => {
      const out = process.stderr;
      const r = await runDemo({
        out: path.resolve(o.out), align: o.align, ...(o.minutes !== undefined ? { minutes: o.minutes } : {}), ...(o.smoke ? { smoke: true } : {}),
        progress: o.quiet ? null : out.isTTY ? out : process.stdout,
        ...(o.quiet ? {} : { log: (m: string) => (out.isTTY ? out.write(`${m}\n`) : process.stdout.write(JSON.stringify({ event: 'log', message: m }) + '\n')) }),
        handleSignals: true,
      });
      if (out.isTTY && !o.quiet) out.write(r.status === 'completed' ? `done in ${Math.round(r.seconds)} s; open ${r.report}\n` : 'interrupted: run the same command again to continue\n');
      console.log(JSON.stringify({ event: 'summary', status: r.status, out: r.out, report: r.report, ran: r.ran, skipped: r.skipped, seconds: +r.seconds.toFixed(1) }));
      if (r.status === 'interrupted') process.exitCode = 130;
    });
}
