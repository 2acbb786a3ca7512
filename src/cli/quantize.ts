// patentgpt quantize: a model folder to a weight-only quantized one (llama.cpp's Q8_0, Q4_0 or
// Q4_K blocks, or F16/BF16 weights) that the engine serves (generate, serve, chat) and llama.cpp loads: config.json,
// generation_config.json, the tokenizer, and model.gguf, the one copy of the weights.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { PatentGPTError } from '../errors.js';
import { exportGguf } from '../export/gguf.js';
import { QUANTIZED_GGUF } from '../infer/quantized.js';
import { folderFiles, isMoE, loadPretrained } from '../models/index.js';
import { QUANT_TYPES, checkQuantType, type QuantType } from '../tensor/index.js';
import { SentencePieceTokenizer } from '../tokenizer/index.js';
import { writeFileAtomic } from '../util/atomic.js';
import { folderTokenizer, sentencePieceFromSpec } from './tokenizer-spec.js';

export function quantizeCommand(): Command {
  return new Command('quantize')
    .description('write a weight-only quantized model folder (model.gguf in llama.cpp\'s blocks) that the engine serves and llama.cpp loads')
    .argument('<model>', 'model folder (config.json + model.safetensors)')
    .requiredOption('--type <type>', `${QUANT_TYPES.join(', ')}`, (v: string) => {
      try {
        return checkQuantType(v, '--type');
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
    })
    .requiredOption('--out <dir>', 'output folder')
    .option('--tokenizer <path>', "a tokenizer.model, or 'llama2' (default: the tokenizer the folder records)")
    .action(async (model: string, opts: { type: QuantType; out: string; tokenizer?: string }) => {
      const tok = opts.tokenizer !== undefined ? sentencePieceFromSpec(opts.tokenizer) : folderTokenizer(model);
      if (!(tok instanceof SentencePieceTokenizer))
        throw new PatentGPTError('E_UNSUPPORTED', `${model} records the byte tokenizer, which GGUF's llama vocabulary cannot carry; pass --tokenizer with a SentencePiece tokenizer.model`);
      const m = await loadPretrained(model);
      try {
        if (isMoE(m.config)) throw new PatentGPTError('E_UNSUPPORTED', `${model}: quantizing a mixture-of-experts model is not supported (dense models only)`);
        await mkdir(opts.out, { recursive: true });
        await exportGguf(m, tok, join(opts.out, QUANTIZED_GGUF), { dtype: opts.type });
        for (const f of folderFiles(m.config, { tokenizer: tok })) await writeFileAtomic(join(opts.out, f.name), f.content);
        console.log(`wrote ${opts.out} (${opts.type}: ${join(opts.out, QUANTIZED_GGUF)}, ${m.config.nLayers} layers, vocabulary ${m.config.vocabSize})`);
      } finally {
        m.dispose();
      }
    });
}
