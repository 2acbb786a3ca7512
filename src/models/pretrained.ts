// Model folders as transformers writes and reads them (save_pretrained / from_pretrained):
// config.json plus either model.safetensors or shards model-0000i-of-0000n.safetensors with
// model.safetensors.index.json ({metadata: {total_size}, weight_map: {tensor: file}}).
// Continued pretraining starts from such a folder: every tensor is checked (present, right
// shape) before any weight is replaced, so a mismatched checkpoint never half-loads.
import { readdir, readFile, rm, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { Tensor, noGrad } from '../tensor/index.js';
import { fromHFConfig, toHFConfig, validateConfig, type ModelConfig } from './config.js';
import { LlamaForCausalLM, type LlamaOptions } from './llama.js';
import {
  SafetensorsFile, diskBytes, exists, syncDir, tempPath, writeFileAtomic, writeSafetensors, type WriteDType,
} from './safetensors.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** Tensors some checkpoints carry that are not parameters (recomputed from the config). */
const IGNORED = /\.rotary_emb\.inv_freq$/;

export interface SaveOptions {
  /** On-disk dtype (default f32). */
  dtype?: WriteDType;
  /** Largest shard in bytes before splitting into several files (default 5 GiB, as transformers 4). */
  maxShardBytes?: number;
}

/**
 * Saves a model as a folder transformers loads with LlamaForCausalLM.from_pretrained. A new
 * folder is built beside the target and renamed into place; an existing folder keeps its other
 * files (tokenizer, ...) and gets each file replaced atomically, stale weight files removed.
 */
export async function savePretrained(model: LlamaForCausalLM, dir: string, opts: SaveOptions = {}): Promise<void> {
  const dtype = opts.dtype ?? 'f32';
  const maxShard = opts.maxShardBytes ?? 5 * 2 ** 30;
  if (!(maxShard > 0)) throw new PatentGPTError('E_ARGUMENT', `savePretrained: maxShardBytes must be positive, got ${maxShard}`);
  const params = model.namedParameters();
  // Greedy shards in parameter order; a tensor larger than the limit gets a shard of its own.
  const shards: [string, Tensor][][] = [[]];
  let current = 0;
  for (const p of params) {
    const b = diskBytes(p[1], dtype);
    if (current > 0 && current + b > maxShard) {
      shards.push([]);
      current = 0;
    }
    shards[shards.length - 1]!.push(p);
    current += b;
  }
  const n = shards.length;
  const files = n === 1 ? [SINGLE_FILE] : shards.map((_, i) => `model-${pad5(i + 1)}-of-${pad5(n)}.safetensors`);

  const fresh = !(await exists(dir));
  const target = fresh ? tempPath(dir) : dir;
  await mkdir(target, { recursive: true });
  try {
    const config = JSON.stringify(toHFConfig(model.config, dtype), null, 2) + '\n';
    await writeFileAtomic(join(target, 'config.json'), config);
    const stale = fresh ? [] : (await readdir(dir)).filter((f) => isWeightFile(f) && !files.includes(f));
    // A stale single file would win over a new index in transformers: remove it before the index exists.
    if (stale.includes(SINGLE_FILE)) await rm(join(dir, SINGLE_FILE));
    let total = 0;
    for (let i = 0; i < n; i++) total += await writeSafetensors(join(target, files[i]!), shards[i]!, { dtype });
    if (n > 1) {
      const weightMap: Record<string, string> = {};
      shards.forEach((s, i) => s.forEach(([name]) => (weightMap[name] = files[i]!)));
      await writeFileAtomic(join(target, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
    }
    for (const f of stale) await rm(join(dir, f), { force: true });
    if (fresh) {
      await rename(target, dir);
      await syncDir(join(dir, '..'));
    } else if (stale.length) await syncDir(dir);
  } catch (err) {
    if (fresh) await rm(target, { recursive: true, force: true });
    throw err;
  }
}

function pad5(i: number): string {
  return String(i).padStart(5, '0');
}

function isWeightFile(f: string): boolean {
  return f === SINGLE_FILE || f === INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f);
}

/** config.json of a model folder as a ModelConfig. */
export async function readConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${path}: cannot read the model config (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${path}: not JSON (${(err as Error).message})`);
  }
  return fromHFConfig(json, path);
}

/** Which file holds each tensor of a folder. */
async function weightFiles(dir: string): Promise<Map<string, string>> {
  const index = join(dir, INDEX_FILE);
  const single = join(dir, SINGLE_FILE);
  if (await exists(single)) {
    const f = await SafetensorsFile.open(single);
    await f.close();
    return new Map([...f.entries.keys()].map((k) => [k, SINGLE_FILE]));
  }
  if (await exists(index)) {
    let parsed: { weight_map?: unknown };
    try {
      parsed = JSON.parse(await readFile(index, 'utf8')) as { weight_map?: unknown };
    } catch (err) {
      throw new PatentGPTError('E_FORMAT', `${index}: not JSON (${(err as Error).message})`);
    }
    const wm = parsed.weight_map;
    if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) throw new PatentGPTError('E_FORMAT', `${index}: field "weight_map" is missing or not an object`);
    const map = new Map<string, string>();
    for (const [k, v] of Object.entries(wm as Record<string, unknown>)) {
      if (typeof v !== 'string' || v.includes('/') || v.includes('\\'))
        throw new PatentGPTError('E_FORMAT', `${index}: weight_map["${k}"] must be a file name in the folder, got ${JSON.stringify(v)}`);
      map.set(k, v);
    }
    return map;
  }
  throw new PatentGPTError('E_FORMAT', `${dir}: no ${SINGLE_FILE} or ${INDEX_FILE} (not a safetensors model folder)`);
}

export interface LoadOptions {
  /** Refuse tensors in the files that the model has no parameter for (default true). */
  strict?: boolean;
}

/**
 * Replaces every parameter of `model` with the folder's tensors (converted to f32). All files
 * are opened and every tensor's presence and shape checked first; then data is read. Errors
 * name the tensor, the file and both shapes.
 */
export async function loadWeights(model: LlamaForCausalLM, dir: string, opts: LoadOptions = {}): Promise<void> {
  const strict = opts.strict ?? true;
  const where = await weightFiles(dir);
  const fileNames = [...new Set(where.values())];
  const files = new Map<string, SafetensorsFile>();
  try {
    for (const f of fileNames) files.set(f, await SafetensorsFile.open(join(dir, f)));
    // The index and the files must agree.
    for (const [name, f] of where)
      if (!files.get(f)!.entries.has(name))
        throw new PatentGPTError('E_FORMAT', `${join(dir, INDEX_FILE)}: names ${f} for tensor "${name}", which that file does not hold`);
    const params = model.namedParameters();
    for (const [name, p] of params) {
      const f = where.get(name);
      if (f === undefined)
        throw new PatentGPTError('E_FORMAT', `${dir}: tensor "${name}" ${shapeStr(p.shape)} is missing (searched ${fileNames.join(', ')})`);
      const e = files.get(f)!.entries.get(name)!;
      if (e.dtype !== 'F32' && e.dtype !== 'BF16' && e.dtype !== 'F16' && e.dtype !== 'F64')
        throw new PatentGPTError('E_FORMAT', `${join(dir, f)}: tensor "${name}" is ${e.dtype}, expected a float type`);
      if (e.shape.length !== p.shape.length || e.shape.some((d, i) => d !== p.shape[i]))
        throw new PatentGPTError('E_SHAPE',
          `${join(dir, f)}: tensor "${name}" has shape ${shapeStr(e.shape)}, the model expects ${shapeStr(p.shape)} (config and checkpoint disagree)`);
    }
    if (strict) {
      const known = new Set(params.map(([n]) => n));
      const tiedHead = model.config.tieEmbeddings ? 'lm_head.weight' : null;
      for (const [name, f] of where)
        if (!known.has(name) && name !== tiedHead && !IGNORED.test(name))
          throw new PatentGPTError('E_FORMAT', `${join(dir, f)}: tensor "${name}" is not a parameter of this model (pass strict: false to skip it)`);
    }
    // Everything checked: read and copy in place (same tensors, so optimizer state stays keyed).
    for (const [name, p] of params) {
      const f = where.get(name)!;
      const t = await files.get(f)!.read(name);
      noGrad(() => p.write(t.toRaw() as Float32Array));
      t.dispose();
    }
  } finally {
    for (const f of files.values()) await f.close();
  }
}

function shapeStr(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/** A model from a folder: config.json, then the weights. */
export async function loadPretrained(dir: string, opts: LoadOptions & Omit<LlamaOptions, 'init' | 'seed' | 'initStd'> = {}): Promise<LlamaForCausalLM> {
  const config = await readConfig(dir);
  const model = new LlamaForCausalLM(config, { ...opts, init: 'zeros' });
  try {
    await loadWeights(model, dir, opts);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

export interface ResizeOptions {
  /**
   * New rows: 'mean' (default) sets every new row to the mean of the existing rows (of the
   * embedding and of the output layer separately); a function returns the (newRows, C) values
   * for a table ('embed' or 'head').
   */
  init?: 'mean' | ((table: 'embed' | 'head', newRows: number, dim: number) => Float32Array);
}

/**
 * Grows the token-embedding table and the output layer to `newSize` rows (a merged
 * vocabulary): the first rows keep their values. The parameter tensors are replaced (make the
 * optimizer after resizing) and model.config.vocabSize follows.
 */
export function resizeVocabulary(model: LlamaForCausalLM, newSize: number, opts: ResizeOptions = {}): void {
  const old = model.config.vocabSize;
  if (!Number.isSafeInteger(newSize) || newSize < old)
    throw new PatentGPTError('E_ARGUMENT', `resizeVocabulary: new size ${newSize} must be an integer >= the current ${old} (shrinking would drop trained rows)`);
  if (newSize === old) return;
  const C = model.config.dim;
  const added = newSize - old;
  const grow = (table: 'embed' | 'head', w: Tensor): Tensor => {
    const values = w.toArray() as Float32Array;
    const out = new Float32Array(newSize * C);
    out.set(values);
    let fresh: Float32Array;
    if (opts.init === undefined || opts.init === 'mean') {
      const mean = new Float64Array(C);
      for (let r = 0; r < old; r++) for (let c = 0; c < C; c++) mean[c]! += values[r * C + c]!;
      fresh = new Float32Array(added * C);
      for (let r = 0; r < added; r++) for (let c = 0; c < C; c++) fresh[r * C + c] = mean[c]! / old;
    } else {
      fresh = opts.init(table, added, C);
      if (!(fresh instanceof Float32Array) || fresh.length !== added * C)
        throw new PatentGPTError('E_ARGUMENT', `resizeVocabulary: init for ${table} must return a Float32Array of ${added} x ${C} = ${added * C} values`);
    }
    out.set(fresh, old * C);
    return Tensor.from(out, [newSize, C]);
  };
  const embed = grow('embed', model.model.embed_tokens.weight);
  const head = model.lm_head ? grow('head', model.lm_head.weight) : null;
  model.setParameter('model.embed_tokens.weight', embed, { allowReshape: true });
  if (head) model.setParameter('lm_head.weight', head, { allowReshape: true });
  model.setConfig(validateConfig({ ...model.config, vocabSize: newSize }));
}
