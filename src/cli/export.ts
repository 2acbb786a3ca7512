// patentgpt export: a trained model folder to other runtimes' formats (GGUF for llama.cpp).
import { Command, InvalidArgumentError } from 'commander';
import { PatentGPTError } from '../errors.js';
import { exportGguf } from '../export/gguf.js';
import { loadPretrained } from '../models/index.js';
import { SentencePieceTokenizer } from '../tokenizer/index.js';
import { folderTokenizer, sentencePieceFromSpec } from './tokenizer-spec.js';

export function exportCommand(): Command {
  const cmd = new Command('export').description('write a model folder in another runtime\'s format');
  cmd
    .command('gguf')
    .description('a safetensors model folder to one GGUF file (llama architecture) that llama.cpp loads')
    .argument('<model>', 'model folder (config.json + model.safetensors)')
    .argument('<out>', 'output .gguf file')
    .option('--dtype <dtype>', 'f32 or f16 for the matrices (norms stay f32)', (v: string) => {
      if (v !== 'f32' && v !== 'f16') throw new InvalidArgumentError('expected f32 or f16');
      return v;
    }, 'f32')
    .option('--tokenizer <path>', "a tokenizer.model, or 'llama2' (default: the tokenizer the folder records, <model>/tokenizer.model)")
    .option('--name <name>', 'general.name in the file')
    .action(async (model: string, out: string, opts: { dtype: 'f32' | 'f16'; tokenizer?: string; name?: string }) => {
      const tok = opts.tokenizer !== undefined ? sentencePieceFromSpec(opts.tokenizer) : folderTokenizer(model);
      if (!(tok instanceof SentencePieceTokenizer))
        throw new PatentGPTError('E_UNSUPPORTED', `${model} records the byte tokenizer, which GGUF's llama vocabulary cannot carry; pass --tokenizer with a SentencePiece tokenizer.model`);
      const m = await loadPretrained(model);
      await exportGguf(m, tok, out, { dtype: opts.dtype, name: opts.name });
      m.dispose();
      console.log(`wrote ${out} (${opts.dtype}, ${m.config.nLayers} layers, vocabulary ${m.config.vocabSize})`);
    });
  return cmd;
}
