// patentgpt sft: supervised fine-tuning (full or LoRA) from a stage config of kind "sft", and
// `patentgpt sft merge`, which folds a LoRA adapter into its base model folder.
import { Command } from 'commander';
import { mergeAdapterFolder } from '../models/lora-merge.js';
import { sft } from '../train/stages/sft.js';
import { commandRunOptions, finishStageCommand, loadCommandConfig, stageCommand, type StageFlags } from './stage-run.js';
import { PatentGPTError } from '../errors.js';

export function sftCommand() {
  return stageCommand('sft', 'run (or resume) supervised fine-tuning: chat data, the loss on the assistant tokens only',
    'SFT stage config JSON, "kind": "sft" (see examples/tiny-sft.json and examples/README.md)', { subcommands: true })
    .addHelpText('after', [
      '',
      'The data are messages, Alpaca or ShareGPT records (JSONL, JSON or Parquet) rendered with the chatTemplate;',
      'init names the weights to start from (a run, checkpoint or Hugging Face folder). Every checkpoint is a complete model folder;',
      'with "lora" in the config only the adapters train, each checkpoint is a PEFT adapter folder, and a completed run writes',
      '<runDir>/final/ (the base model folder) with final/adapter/ (PEFT format): merge them with `patentgpt sft merge`.',
      'Running the same command again resumes from the newest complete checkpoint; Ctrl-C saves one and exits (code 130);',
      'a run that diverges exits with code 3.',
      '',
      'Example:',
      '  patentgpt pretrain --config examples/tiny-stage1.json',
      '  patentgpt sft --config examples/tiny-sft.json',
      '  patentgpt sft merge --base runs/x/final --adapter runs/x/final/adapter --out runs/x/merged',
    ].join('\n'))
    .addCommand(mergeCommand())
    .action(async (opts: StageFlags) => {
      const cfg = await loadCommandConfig('sft', opts);
      finishStageCommand('sft', opts, await sft(cfg, commandRunOptions(opts)));
    });
}

const DTYPES = ['f32', 'bf16', 'f16'] as const;

function mergeCommand() {
  return new Command('merge')
    .description('fold a LoRA adapter (PEFT format) into its base model: a plain model folder that transformers loads and the engine serves')
    .requiredOption('--base <dir>', 'the base model folder the adapter was trained on (a LoRA run\'s final/)')
    .requiredOption('--adapter <dir>', 'the adapter folder (adapter_config.json + adapter_model.safetensors; a LoRA run\'s final/adapter or a checkpoint)')
    .requiredOption('--out <dir>', 'the merged model folder to write (new or empty)')
    .option('--dtype <dtype>', `weights on disk: ${DTYPES.join(', ')}`, 'f32')
    .action(async (o: { base: string; adapter: string; out: string; dtype: string }) => {
      if (!(DTYPES as readonly string[]).includes(o.dtype))
        throw new PatentGPTError('E_ARGUMENT', `--dtype: must be one of ${DTYPES.join(', ')}, got "${o.dtype}"`);
      const { layers } = await mergeAdapterFolder(o.base, o.adapter, o.out, { dtype: o.dtype as (typeof DTYPES)[number] });
      console.log(JSON.stringify({ event: 'summary', status: 'merged', out: o.out, layers }));
    });
}
