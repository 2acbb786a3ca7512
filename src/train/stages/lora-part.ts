// LoRA as every fine-tuning stage (sft, dpo, reward, ppo) runs it: adapters attached to the
// config's target Linears (A seeded, B zeros, the base frozen) with the config's errors, the
// adapter_config.json PEFT writes for them, the model's side of the training task (only the
// adapters, and whatever else trains whole, are parameters; a checkpoint holds them in PEFT's
// format beside lora_state.json, each adapter's dropout stream position, so a resume draws the
// masks an uninterrupted run would), and the final folder of a completed run.
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PatentGPTError } from '../../errors.js';
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, PEFT_PREFIX, folderFiles, readSafetensors, safetensorsContent, saveLora, writeFileAtomic, writeSafetensors,
  type LlamaForCausalLM,
} from '../../models/index.js';
import type { Module } from '../../nn/index.js';
import { applyLora, loraLayers } from '../../nn/lora.js';
import { noGrad, type Tensor } from '../../tensor/index.js';
import type { SftLora } from '../config.js';
import type { TrainResult, TrainTask } from '../trainer.js';
import { cfgError, type StageSetup } from './common.js';

/** Where a completed LoRA run leaves its base model folder (in the run folder) and, inside it, the adapter. */
export const LORA_FINAL_DIR = 'final';
export const LORA_ADAPTER_DIR = 'adapter';
/** A LoRA checkpoint's lora_state.json: each adapter's dropout stream position. */
export const LORA_STATE_FILE = 'lora_state.json';

/** What a LoRA run trained, and its final folders (when the run completed). */
export interface LoraSummary {
  /** Linears that carry an adapter. */
  layers: number;
  /** Parameters in the optimizer (A and B of every adapter, and what trains whole). */
  trainable: number;
  /** All parameters of the model, the adapters included. */
  total: number;
  /** <runDir>/final (the base model folder) and final/adapter (PEFT's format). */
  final?: { model: string; adapter: string };
}

/** The model's side of a TrainTask. */
export type ModelTaskPart = Pick<TrainTask, 'parameters' | 'checkpointFiles' | 'restoreCheckpoint' | 'initialize'>;

/**
 * Attaches the config's adapters to `model` (the base frozen); returns the adapters' A and B. A
 * target the model lacks is the config's error, naming lora.targetModules. `targetModules`
 * overrides the config's (the reward stage keeps the score head out of "all-linear").
 */
export function attachAdapters(model: Module, l: SftLora, file: string, targetModules: SftLora['targetModules'] = l.targetModules): [string, Tensor][] {
  try {
    return applyLora(model, { r: l.r, alpha: l.alpha, dropout: l.dropout, targetModules, seed: l.seed });
  } catch (err) {
    // lora.ts names its fields bare ("targetModules"); the config's errors name file and section
    if (err instanceof PatentGPTError && err.code === 'E_CONFIG') throw cfgError(file, 'lora.targetModules', err.message.replace(/^LoRA: (field "targetModules" )?/, ''));
    throw err;
  }
}

/** Adapted layers, trainable parameters (`params`) and all the model's parameters. */
export function loraCounts(model: Module, params: readonly [string, Tensor][]): Omit<LoraSummary, 'final'> {
  return {
    layers: loraLayers(model).length,
    trainable: params.reduce((s, [, t]) => s + t.size, 0),
    total: model.namedParameters().reduce((s, [, t]) => s + t.size, 0),
  };
}

/**
 * adapter_config.json of `model`'s adapters as PEFT's writer makes it (written once: it does not
 * change during a run), with `extra` fields over it (the reward stage's task_type SEQ_CLS).
 */
export async function peftAdapterConfig(model: Module, baseModel: string, extra?: Record<string, unknown>): Promise<string> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'pgpt-lora-'));
  try {
    await saveLora(model, tmp, { baseModel });
    const text = await fsp.readFile(path.join(tmp, ADAPTER_CONFIG_FILE), 'utf8');
    return extra ? JSON.stringify({ ...(JSON.parse(text) as Record<string, unknown>), ...extra }, null, 2) + '\n' : text;
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Reads `file` (safetensors) into `pairs` (the name in the file, the tensor to write), every one
 * required with its size; E_CHECKPOINT naming the file otherwise. `what` names the content in
 * the read error, `whose` what the checkpoint is not when a tensor is missing.
 */
export async function readTensorsInto(file: string, pairs: readonly (readonly [string, Tensor])[], what = 'it', whose = "this run's"): Promise<void> {
  let saved: Map<string, Tensor>;
  try {
    saved = await readSafetensors(file);
  } catch (err) {
    throw new PatentGPTError('E_CHECKPOINT', `${file}: cannot read ${what} (${(err as Error).message})`);
  }
  try {
    noGrad(() => {
      for (const [n, p] of pairs) {
        const t = saved.get(n);
        if (!t || t.size !== p.size) throw new PatentGPTError('E_CHECKPOINT', `${file}: no ${n} of ${p.size} values; the checkpoint is not ${whose}`);
        p.write(t.toRaw() as Float32Array);
      }
    });
  } finally {
    for (const t of saved.values()) t.dispose();
  }
}

/** PEFT's adapter folder files of `params` (module names; PEFT's prefix added): adapter_config.json and adapter_model.safetensors. */
export function peftCheckpointFiles(params: readonly [string, Tensor][], adapterConfig: string): ReturnType<TrainTask['checkpointFiles']> {
  return [
    { name: ADAPTER_CONFIG_FILE, content: adapterConfig },
    { name: ADAPTER_WEIGHTS_FILE, content: (sink) => safetensorsContent(params.map(([n, t]) => [PEFT_PREFIX + n, t] as const)).write(sink) },
  ];
}

/**
 * The task's model side under LoRA: `params` (the adapters, and what trains whole, under their
 * module names) are the loop's parameters; a checkpoint holds them in PEFT's format
 * (adapter_config.json, adapter_model.safetensors) beside lora_state.json; a resume restores both
 * over the same base. The base is loaded before the adapters are attached, so `initialize` does nothing.
 */
export function adapterTaskPart(model: Module, params: [string, Tensor][], adapterConfig: string, opts: { what: string; whose: string }): ModelTaskPart {
  const adapters = loraLayers(model).map(([n, lin]) => [n, lin.adapter] as const);
  return {
    parameters: () => params,
    checkpointFiles: () => [
      ...peftCheckpointFiles(params, adapterConfig),
      { name: LORA_STATE_FILE, content: JSON.stringify({ dropoutOffsets: Object.fromEntries(adapters.map(([n, a]) => [n, a.dropoutOffset])) }, null, 2) + '\n' },
    ],
    restoreCheckpoint: async (ck) => {
      const stateFile = path.join(ck.dir, LORA_STATE_FILE);
      let offsets: Record<string, unknown>;
      try {
        offsets = (JSON.parse(await fsp.readFile(stateFile, 'utf8')) as { dropoutOffsets: Record<string, unknown> }).dropoutOffsets;
      } catch (err) {
        throw new PatentGPTError('E_CHECKPOINT', `${stateFile}: cannot read the adapters' dropout positions (${(err as Error).message})`);
      }
      for (const [n, a] of adapters) {
        const v = offsets?.[n];
        if (typeof v !== 'number') throw new PatentGPTError('E_CHECKPOINT', `${stateFile}: no dropout position for ${n}; the checkpoint is not this run's adapter`);
        a.dropoutOffset = v;
      }
      await readTensorsInto(path.join(ck.dir, ADAPTER_WEIGHTS_FILE), params.map(([n, t]) => [PEFT_PREFIX + n, t] as const), opts.what, opts.whose);
    },
    initialize: async () => {}, // the base is loaded before the adapters; they start as applyLora made them
  };
}

/** A LoRA run's summary for its result: final/ written (rank 0) when the run completed. */
export async function finalLoraSummary(summary: LoraSummary, result: TrainResult, model: LlamaForCausalLM, setup: StageSetup): Promise<LoraSummary> {
  const out = { ...summary };
  if (result.status === 'completed' && setup.rank === 0) {
    out.final = await writeLoraFinal(model, setup);
    setup.log(`final model: ${out.final.model} (base) with its adapter ${out.final.adapter}`);
  }
  return out;
}

/**
 * <runDir>/final of a completed LoRA run: the base model folder (model.safetensors of the frozen
 * weights, config, generation config, tokenizer record; transformers loads it) and adapter/
 * (PEFT's format, base_model_name_or_path the final folder), so `patentgpt sft merge` and
 * Engine.fromPretrained(final, { adapter }) take it. Built in final.tmp and renamed into place,
 * replacing an older final.
 */
export async function writeLoraFinal(model: LlamaForCausalLM, setup: StageSetup): Promise<{ model: string; adapter: string }> {
  const dir = path.resolve(setup.runDir, LORA_FINAL_DIR);
  const tmp = `${dir}.tmp`;
  await fsp.rm(tmp, { recursive: true, force: true });
  await fsp.mkdir(tmp, { recursive: true });
  await writeSafetensors(path.join(tmp, 'model.safetensors'), model.namedParameters().filter(([n]) => !/\.lora_[AB]\.weight$/.test(n)));
  for (const f of folderFiles(model.config, { tokenizer: setup.tokenizer })) await writeFileAtomic(path.join(tmp, f.name), f.content);
  await saveLora(model, path.join(tmp, LORA_ADAPTER_DIR), { baseModel: dir });
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.rename(tmp, dir);
  return { model: dir, adapter: path.join(dir, LORA_ADAPTER_DIR) };
}
