// patentgpt pretrain: one stage of continued pretraining from a stage config (see examples/).
import { pretrain } from '../train/pretrain.js';
import { commandRunOptions, finishStageCommand, loadCommandConfig, stageCommand, type StageFlags } from './stage-run.js';

export function pretrainCommand() {
  return stageCommand('pretrain', 'run (or resume) a pretraining stage: stage 1 at a short context, stage 2 with an extended context',
    'stage config JSON (see examples/tiny-stage1.json and examples/README.md)')
    .option('--data <path...>', 'train on these text files or folders (.txt, .md, .jsonl, .json) instead of the config data')
    .addHelpText('after', [
      '',
      'With no data in the config and no --data, the built-in sample corpus is tokenized with the byte tokenizer.',
      'Running the same command again resumes from the newest complete checkpoint; Ctrl-C saves one and exits (code 130).',
      'A run that diverges (non-finite losses, see maxNonFiniteSteps and onDivergence) exits with code 3 and writes no checkpoint from the bad weights.',
      '',
      'Example:',
      '  patentgpt pretrain --config examples/tiny-stage1.json',
      '  patentgpt pretrain --config examples/tiny-stage2.json',
    ].join('\n'))
    .action(async (opts: StageFlags & { data?: string[] }) => {
      const cfg = await loadCommandConfig('pretrain', opts);
      const result = await pretrain(cfg, { ...commandRunOptions(opts), ...(opts.data ? { dataPaths: opts.data } : {}) });
      finishStageCommand('pretrain', opts, result);
    });
}
