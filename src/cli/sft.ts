// patentgpt sft: supervised fine-tuning (full fine-tuning) from a stage config of kind "sft".
import { sft } from '../train/stages/sft.js';
import { commandRunOptions, finishStageCommand, loadCommandConfig, stageCommand, type StageFlags } from './stage-run.js';

export function sftCommand() {
  return stageCommand('sft', 'run (or resume) supervised fine-tuning: chat data, the loss on the assistant tokens only',
    'SFT stage config JSON, "kind": "sft" (see examples/tiny-sft.json and examples/README.md)')
    .addHelpText('after', [
      '',
      'The data are messages, Alpaca or ShareGPT records (JSONL, JSON or Parquet) rendered with the chatTemplate;',
      'init names the weights to start from (a run, checkpoint or Hugging Face folder). Every checkpoint is a complete model folder.',
      'Running the same command again resumes from the newest complete checkpoint; Ctrl-C saves one and exits (code 130);',
      'a run that diverges exits with code 3.',
      '',
      'Example:',
      '  patentgpt pretrain --config examples/tiny-stage1.json',
      '  patentgpt sft --config examples/tiny-sft.json',
    ].join('\n'))
    .action(async (opts: StageFlags) => {
      const cfg = await loadCommandConfig('sft', opts);
      finishStageCommand('sft', opts, await sft(cfg, commandRunOptions(opts)));
    });
}
