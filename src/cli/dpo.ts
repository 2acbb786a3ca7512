// patentgpt dpo: direct preference optimisation from a stage config of kind "dpo".
import { dpo } from '../train/stages/dpo.js';
import { commandRunOptions, finishStageCommand, loadCommandConfig, stageCommand, type StageFlags } from './stage-run.js';

export function dpoCommand() {
  return stageCommand('dpo', 'run (or resume) direct preference optimisation (DPO, cDPO, IPO) on chosen/rejected pairs',
    'DPO stage config JSON, "kind": "dpo" (see examples/tiny-dpo.json and examples/README.md)')
    .addHelpText('after', [
      '',
      'The data are preference pairs: {prompt, chosen, rejected} (strings or chat messages), LLaMA-Factory\'s',
      'sharegpt pairs, hh-rlhf transcripts, or a table (CSV/Parquet) with a promptTemplate; JSONL, JSON, Parquet or CSV.',
      'init names the weights to start from (usually the SFT run); they are also the reference, whose log-probs are',
      'precomputed once before training, or read from the frozen base with the adapters off under LoRA.',
      'metrics.jsonl holds rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracies (TRL\'s names),',
      'with val. ones on the held-out pairs. Running the same command again resumes from the newest checkpoint.',
      '',
      'Example:',
      '  patentgpt sft --config examples/tiny-sft.json',
      '  patentgpt dpo --config examples/tiny-dpo.json',
    ].join('\n'))
    .action(async (opts: StageFlags) => {
      const cfg = await loadCommandConfig('dpo', opts);
      finishStageCommand('dpo', opts, await dpo(cfg, commandRunOptions(opts)));
    });
}
