// patentgpt reward: reward model training from a stage config of kind "reward" (preference pairs,
// a decoder with a scalar head, the Bradley-Terry loss).
import { reward } from '../train/stages/reward.js';
import { commandRunOptions, finishStageCommand, loadCommandConfig, stageCommand, type StageFlags } from './stage-run.js';

export function rewardCommand() {
  return stageCommand('reward', 'train (or resume) a reward model on preference pairs: a scalar head read at each sequence\'s last token, Bradley-Terry loss',
    'reward stage config JSON, "kind": "reward" (see examples/tiny-reward.json and examples/README.md)')
    .addHelpText('after', [
      '',
      'The data are preference pairs (prompt/chosen/rejected records, LLaMA-Factory sharegpt pairs, hh-rlhf transcripts, or a',
      'CSV with promptTemplate), each side rendered whole with the chatTemplate. init names the model to start from: an SFT or',
      'pretraining run (lm_head dropped, a new score head) or a reward model. Every checkpoint is a folder transformers loads',
      'with AutoModelForSequenceClassification; with "lora", a completed run writes <runDir>/final/ (adapters merged).',
      'metrics.jsonl holds loss, accuracy and margin per step, and val.accuracy on the held-out split (data.valFraction).',
      'Running the same command again resumes from the newest complete checkpoint; Ctrl-C saves one and exits (code 130);',
      'a run that diverges exits with code 3.',
      '',
      'Example:',
      '  patentgpt pretrain --config examples/tiny-stage1.json',
      '  patentgpt sft --config examples/tiny-sft.json',
      '  patentgpt reward --config examples/tiny-reward.json',
    ].join('\n'))
    .action(async (opts: StageFlags) => {
      const cfg = await loadCommandConfig('reward', opts);
      finishStageCommand('reward', opts, await reward(cfg, commandRunOptions(opts)));
    });
}
