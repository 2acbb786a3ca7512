// LoRA adapters in PEFT's format, so PeftModel.from_pretrained loads what we save and we load
// what PEFT saves: a folder with adapter_config.json (LoraConfig's fields) and
// adapter_model.safetensors, whose tensors are named below PeftModel's wrapper
// (`base_model.model.` + the module's name + `.lora_A.weight` / `.lora_B.weight`; PEFT drops the
// adapter name "default" when saving). Only plain LoRA is read: one r / alpha / dropout for all
// layers, no bias, no DoRA or rsLoRA; anything else is refused with the field named.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { applyLora, loraLayers, loraParameters, matchesTarget, namedLinears, removeLora, type LoraOptions } from '../nn/lora.js';
import type { Module } from '../nn/module.js';
import { noGrad, type Tensor } from '../tensor/index.js';
import { exists, readSafetensors, writeFileAtomic, writeSafetensors, type WriteDType } from './safetensors.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
/** What PeftModel puts before the base model's own module names. */
export const PEFT_PREFIX = 'base_model.model.';

/** The LoraConfig fields we write and read (PEFT's names). */
export interface PeftLoraConfig {
  peft_type: 'LORA';
  task_type: string;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[] | string;
  bias: 'none';
  fan_in_fan_out: boolean;
  base_model_name_or_path: string | null;
  inference_mode: boolean;
  init_lora_weights: boolean;
  use_rslora: boolean;
  use_dora: boolean;
  modules_to_save: string[] | null;
  layers_to_transform: number[] | number | null;
  layers_pattern: string[] | string | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  revision: string | null;
}

export interface SaveLoraOptions {
  /** base_model_name_or_path: the base folder or hub id PEFT loads the adapter onto. */
  baseModel?: string;
  /** On-disk dtype of the adapter tensors (default f32). */
  dtype?: WriteDType;
}

/**
 * Writes the model's LoRA adapters as a PEFT adapter folder. target_modules is the shortest
 * description PEFT matches to exactly the adapted layers: their last name parts when those
 * select no other Linear, else an exact-name regex.
 */
export async function saveLora(model: Module, dir: string, opts: SaveLoraOptions = {}): Promise<void> {
  const layers = loraLayers(model);
  if (layers.length === 0) throw new PatentGPTError('E_ARGUMENT', 'saveLora: the model has no LoRA adapters (applyLora or loadLora first)');
  const first = layers[0]![1].adapter;
  for (const [name, l] of layers) {
    const a = l.adapter;
    if (a.r !== first.r || a.alpha !== first.alpha || a.dropout !== first.dropout)
      throw new PatentGPTError('E_UNSUPPORTED', `saveLora: layer ${name} has r ${a.r}, alpha ${a.alpha}, dropout ${a.dropout}, unlike ${layers[0]![0]}; PEFT's format is written for one setting`);
  }
  const config: PeftLoraConfig = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: first.r, lora_alpha: first.alpha, lora_dropout: first.dropout,
    target_modules: describeTargets(model, layers.map(([n]) => n)), bias: 'none', fan_in_fan_out: false,
    base_model_name_or_path: opts.baseModel ?? null, inference_mode: true, init_lora_weights: true, use_rslora: false, use_dora: false,
    modules_to_save: null, layers_to_transform: null, layers_pattern: null, rank_pattern: {}, alpha_pattern: {}, revision: null,
  };
  await mkdir(dir, { recursive: true });
  const tensors = loraParameters(model).map(([n, t]) => [PEFT_PREFIX + n, t] as const);
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { dtype: opts.dtype });
  await writeFileAtomic(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
}

function describeTargets(model: Module, adapted: string[]): string[] | string {
  const suffixes = [...new Set(adapted.map((n) => n.slice(n.lastIndexOf('.') + 1)))];
  const selected = namedLinears(model).map(([n]) => n).filter((n) => matchesTarget(n, suffixes));
  if (selected.length === adapted.length && selected.every((n, i) => n === adapted[i])) return suffixes;
  return adapted.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
}

/** Reads and checks adapter_config.json; the options to applyLora with. */
export async function readLoraConfig(dir: string): Promise<{ config: PeftLoraConfig; options: LoraOptions }> {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  if (!(await exists(path))) throw new PatentGPTError('E_IO', `loadLora: ${path} not found (a PEFT adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE})`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new PatentGPTError('E_FORMAT', `loadLora: ${path} is not JSON: ${(err as Error).message}`);
  }
  const bad = (field: string, why: string): never => {
    throw new PatentGPTError('E_UNSUPPORTED', `loadLora: ${path}: field "${field}" ${why}`);
  };
  if (raw.peft_type !== 'LORA') bad('peft_type', `is ${JSON.stringify(raw.peft_type)}; only LORA adapters are read`);
  const empty = (v: unknown): boolean => v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0);
  if ((raw.bias ?? 'none') !== 'none') bad('bias', `is ${JSON.stringify(raw.bias)}; only "none" is read`);
  if (raw.use_dora === true) bad('use_dora', 'is true; DoRA adapters are not read');
  if (raw.use_rslora === true) bad('use_rslora', 'is true; rsLoRA scaling is not read');
  if (raw.fan_in_fan_out === true) bad('fan_in_fan_out', 'is true; only (out, in) Linear weights are read');
  if (raw.lora_bias === true) bad('lora_bias', 'is true; LoRA biases are not read');
  for (const f of ['rank_pattern', 'alpha_pattern', 'modules_to_save', 'layers_to_transform', 'layers_pattern', 'exclude_modules', 'layer_replication', 'trainable_token_indices', 'target_parameters'])
    if (!empty(raw[f])) bad(f, `is ${JSON.stringify(raw[f])}; only one r and alpha for all target modules are read`);
  const r = raw.r, alpha = raw.lora_alpha ?? raw.r, dropout = raw.lora_dropout ?? 0;
  if (typeof r !== 'number') bad('r', 'must be a number');
  if (typeof alpha !== 'number') bad('lora_alpha', 'must be a number');
  if (typeof dropout !== 'number') bad('lora_dropout', 'must be a number');
  const t = raw.target_modules;
  if (!(typeof t === 'string' || (Array.isArray(t) && t.every((x) => typeof x === 'string'))))
    bad('target_modules', 'must be a list of module names or a regex string');
  const config = raw as unknown as PeftLoraConfig;
  return { config, options: { r: r as number, alpha: alpha as number, dropout: dropout as number, targetModules: t as string[] | string } };
}

/**
 * Attaches the adapters of a PEFT folder to `model` (a base model without adapters) and returns
 * their parameters, as applyLora does. Every tensor of the file must land on an adapted layer
 * with its shape, and every adapted layer must find its A and B in the file.
 */
export async function loadLora(model: Module, dir: string): Promise<[string, Tensor][]> {
  const { options } = await readLoraConfig(dir);
  const wpath = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!(await exists(wpath))) {
    const binPath = join(dir, 'adapter_model.bin');
    throw new PatentGPTError('E_IO', `loadLora: ${wpath} not found${(await exists(binPath)) ? ' (adapter_model.bin is a pickle: re-save it with safe_serialization=True)' : ''}`);
  }
  const file = await readSafetensors(wpath);
  const trainable = model.parameters().map((p) => p.requiresGrad);
  let attached = false;
  try {
    const params = applyLora(model, options);
    attached = true;
    const want = new Map(params);
    for (const name of file.keys()) {
      const own = name.startsWith(PEFT_PREFIX) ? name.slice(PEFT_PREFIX.length).replace('.default.weight', '.weight') : null;
      if (own === null || !want.has(own))
        throw new PatentGPTError('E_FORMAT', `loadLora: ${wpath} holds "${name}", which is no adapter of the model (expected names like "${PEFT_PREFIX}${params[0]![0]}")`);
    }
    noGrad(() => {
      for (const [name, p] of params) {
        const t = file.get(PEFT_PREFIX + name) ?? file.get(PEFT_PREFIX + name.replace(/\.weight$/, '.default.weight'));
        if (!t) throw new PatentGPTError('E_FORMAT', `loadLora: ${wpath} has no "${PEFT_PREFIX}${name}" (target_modules selects that layer)`);
        if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
          throw new PatentGPTError('E_SHAPE', `loadLora: "${name}" is ${t.describe()} in the file, the model's is ${p.describe()} (another r or base model?)`);
        p.write(t.toRaw());
      }
    });
    return params;
  } catch (err) {
    if (attached) {
      removeLora(model); // the model as it was: no half-loaded adapters, the base trainable as before
      model.parameters().forEach((p, i) => (p.requiresGrad = trainable[i]!));
    }
    throw err;
  } finally {
    for (const t of file.values()) t.dispose();
  }
}
