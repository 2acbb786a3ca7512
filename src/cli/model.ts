// patentgpt model: presets, size and cost of a config, and a freshly initialised model folder.
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { PatentGPTError } from '../errors.js';
import {
  LlamaForCausalLM, checkModelFits, flopsPerToken, holdsModel, parameterCount, preset, presetNames, readConfig, savePretrained, validateConfig,
  type ModelConfig,
} from '../models/index.js';
import { BYTE_VOCAB_SIZE, LLAMA2_VOCAB_SIZE } from '../tokenizer/index.js';
import { positiveInt } from './args.js';
import { tokenizerFromSpec } from './tokenizer-spec.js';

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got "${v}"`);
  return n;
}

/** A config from --preset NAME or --config PATH (our JSON, or a Hugging Face folder / config.json). */
async function resolveConfig(opts: { preset?: string; config?: string }): Promise<{ config: ModelConfig; name: string }> {
  if (opts.preset && opts.config) throw new PatentGPTError('E_ARGUMENT', 'give --preset or --config, not both');
  if (opts.preset) return { config: preset(opts.preset).config, name: opts.preset };
  if (!opts.config) throw new PatentGPTError('E_ARGUMENT', `give --preset NAME (${presetNames().join(', ')}) or --config PATH`);
  const path = opts.config;
  if ((await stat(path)).isDirectory()) return { config: await readConfig(path), name: path };
  const json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  if ('hidden_size' in json) {
    if (basename(path) !== 'config.json') throw new PatentGPTError('E_CONFIG', `${path}: a Hugging Face config must be named config.json (or pass its folder)`);
    return { config: await readConfig(dirname(path)), name: path };
  }
  return { config: validateConfig(json, path), name: path };
}

const fmt = (n: number): string => n.toLocaleString('en-US');
const human = (n: number): string =>
  n >= 1e12 ? `${(n / 1e12).toFixed(2)} T` : n >= 1e9 ? `${(n / 1e9).toFixed(2)} G` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(2)} K`;

export function modelCommand(): Command {
  const cmd = new Command('model').description('model presets, parameter counts and FLOPs, new model folders');

  cmd.command('list')
    .description('list the presets')
    .action(() => {
      for (const name of presetNames()) {
        const p = preset(name);
        console.log(`${name.padEnd(16)} ${human(parameterCount(p.config).total).padStart(9)}  ${p.description}`);
      }
    });

  cmd.command('info')
    .description('parameter count and FLOPs per token of a config')
    .option('--preset <name>', 'a preset (see `patentgpt model list`)')
    .option('--config <path>', 'a model config JSON, or a Hugging Face folder or config.json')
    .option('--seq-len <T>', 'sequence length for the attention FLOPs (default: the config maxSeqLen)', positiveInt)
    .option('--json', 'print one JSON object')
    .action(async (opts: { preset?: string; config?: string; seqLen?: number; json?: boolean }) => {
      const { config, name } = await resolveConfig(opts);
      const count = parameterCount(config);
      const flops = flopsPerToken(config, opts.seqLen ?? config.maxSeqLen);
      if (opts.json) {
        console.log(JSON.stringify({ name, config, parameters: count, flopsPerToken: flops }));
        return;
      }
      const D = config.dim / config.nHeads;
      console.log([
        `model ${name}`,
        `  vocabulary ${fmt(config.vocabSize)}, dim ${config.dim}, ${config.nLayers} layers, ${config.nHeads} heads` +
          ` (${config.nKvHeads} kv, head size ${D}), feed-forward ${config.ffnDim}`,
        `  RoPE base ${config.ropeTheta}${config.ropeScaling ? `, ${config.ropeScaling.type} x${config.ropeScaling.factor}` : ''},` +
          ` context ${config.maxSeqLen}, norm eps ${config.normEps}, ${config.tieEmbeddings ? 'tied' : 'untied'} output layer`,
        ...(config.numExperts > 1 ? [
          `  mixture of experts: ${config.numExperts} experts, top-${config.topK}` +
            `${config.numSharedExperts ? `, ${config.numSharedExperts} shared` : ''}, aux loss x${config.routerAuxLossCoef}` +
            `, z-loss x${config.routerZLossCoef}, router jitter ${config.routerJitter}`,
        ] : []),
        `parameters      ${fmt(count.total).padStart(16)}  (${human(count.total)})`,
        `  active/token  ${fmt(count.active).padStart(16)}  (${human(count.active)})${config.numExperts > 1 ? '' : ', dense: all of them'}`,
        `  embedding     ${fmt(count.embedding).padStart(16)}`,
        `  output layer  ${fmt(count.lmHead).padStart(16)}`,
        `  attention     ${fmt(count.attention).padStart(16)}`,
        `  feed-forward  ${fmt(count.feedForward).padStart(16)}`,
        `  norms         ${fmt(count.norms).padStart(16)}`,
        `  non-embedding ${fmt(count.nonEmbedding).padStart(16)}`,
        `FLOPs per token at T = ${flops.seqLen} (PaLM: 6N + 12 L T d, N = ${fmt(flops.matmulParams)} weights that multiply activations${config.numExperts > 1 ? ', active experts only' : ''})`,
        `  forward       ${fmt(flops.forward).padStart(16)}  (${human(flops.forward)})`,
        `  training      ${fmt(flops.training).padStart(16)}  (${human(flops.training)})`,
        `weights: ${(count.total * 4 / 2 ** 30).toFixed(2)} GiB f32, ${(count.total * 2 / 2 ** 30).toFixed(2)} GiB bf16`,
      ].join('\n'));
    });

  cmd.command('init')
    .description('write a randomly initialised model as a Hugging Face folder')
    .option('--preset <name>', 'a preset (see `patentgpt model list`)')
    .option('--config <path>', 'a model config JSON, or a Hugging Face folder or config.json')
    .requiredOption('--out <dir>', 'folder to write (config.json, generation_config.json, model.safetensors, the tokenizer)')
    .option('--seed <n>', 'seed of the weights', nonNegativeInt, 0)
    .option('--dtype <dtype>', 'f32, bf16 or f16 on disk', 'f32')
    .option('--tokenizer <spec>',
      "the model's tokenizer, recorded in the folder: 'byte', 'llama2' or a tokenizer.model " +
      `(default: llama2 for a vocabulary of ${LLAMA2_VOCAB_SIZE}+, byte for ${BYTE_VOCAB_SIZE}+)`)
    .option('--force', 'replace a model already in --out')
    .action(async (opts: { preset?: string; config?: string; out: string; seed: number; dtype: string; tokenizer?: string; force?: boolean }) => {
      if (!['f32', 'bf16', 'f16'].includes(opts.dtype)) throw new PatentGPTError('E_ARGUMENT', `--dtype must be f32, bf16 or f16, got ${opts.dtype}`);
      const { config, name } = await resolveConfig(opts);
      if (!opts.force && (await holdsModel(opts.out)))
        throw new PatentGPTError('E_ARGUMENT', `${opts.out} already holds a model (config.json or weights); pass --force to replace it, or choose another --out`);
      checkModelFits(config, name); // a clear error before allocating anything
      const spec = opts.tokenizer ?? (config.vocabSize >= LLAMA2_VOCAB_SIZE ? 'llama2' : config.vocabSize >= BYTE_VOCAB_SIZE ? 'byte' : undefined);
      if (spec === undefined)
        console.error(`note: no built-in tokenizer fits a vocabulary of ${config.vocabSize}; the folder records none (pass --tokenizer PATH to record one)`);
      const tokenizer = spec === undefined ? undefined : tokenizerFromSpec(spec, opts.out);
      const model = new LlamaForCausalLM(config, { seed: opts.seed });
      try {
        await savePretrained(model, opts.out, { dtype: opts.dtype as 'f32' | 'bf16' | 'f16', ...(tokenizer ? { tokenizer } : {}) });
      } finally {
        model.dispose();
      }
      console.log(`wrote ${opts.out} (${fmt(parameterCount(config).total)} parameters, ${opts.dtype}${spec ? `, tokenizer ${spec}` : ''})`);
    });
  return cmd;
}
