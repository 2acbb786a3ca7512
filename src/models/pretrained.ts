// Model folders as transformers writes and reads them (save_pretrained / from_pretrained):
// config.json plus either model.safetensors or shards model-0000i-of-0000n.safetensors with
// model.safetensors.index.json ({metadata: {total_size}, weight_map: {tensor: file}}).
// Continued pretraining starts from such a folder: every tensor is checked (present, right
// shape) before any weight is replaced, so a mismatched checkpoint never half-loads.
//
// A folder we write is complete on its own: config.json and generation_config.json carry the
// tokenizer's bos/eos/pad ids (transformers' generate() stops at that EOS), and the tokenizer is
// recorded beside the weights: tokenizer.model for SentencePiece, tokenizer_spec.json
// ({"type": "byte"}) for the byte-level tokenizer, which has no file of its own.
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, rm, mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { Tensor, noGrad } from '../tensor/index.js';
import {
  LLAMA2_SPECIAL_IDS, fromHFConfig, hfConfigJson, specialIdsFromHF, toHFConfig, toHFGenerationConfig, validateConfig, validateSpecialIds,
  type ModelConfig, type SpecialTokenIds,
} from './config.js';
import { fileWriteError } from '../util/atomic.js';
import { checkModelFits, checkTensorFits } from './limits.js';
import { LlamaForCausalLM, type LlamaOptions } from './llama.js';
import {
  SafetensorsFile, diskBytes, exists, syncDir, tempPath, writeFileAtomic, writeSafetensors, type WriteDType,
} from './safetensors.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
export const CONFIG_FILE = 'config.json';
export const GENERATION_CONFIG_FILE = 'generation_config.json';
/** A SentencePiece tokenizer's ModelProto, the name transformers and llama.cpp's converter look for. */
export const TOKENIZER_MODEL_FILE = 'tokenizer.model';
/** The record of a tokenizer with no file of its own: {"type": "byte"}. */
export const TOKENIZER_SPEC_FILE = 'tokenizer_spec.json';

/**
 * The tokenizer a folder records, described by what it has (SentencePieceTokenizer and
 * ByteTokenizer both fit; src/models does not depend on src/tokenizer).
 */
export interface FolderTokenizer {
  /** 'byte' for the byte-level tokenizer. */
  readonly name?: string;
  readonly vocabSize: number;
  /** Special ids; -1 where the tokenizer has none. */
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId?: number;
  /** The tokenizer.model bytes (SentencePiece). Absent on the byte-level tokenizer. */
  serialize?(): Uint8Array;
}

/** What a folder records about its tokenizer (see readFolderTokenizer). */
export type RecordedTokenizer = { type: 'sentencepiece'; path: string } | { type: 'byte' };

/**
 * The special ids of a tokenizer as a folder writes them. Generation pads with the tokenizer's
 * pad, else <unk> (as Meta's LLaMA-2 folders do), never with EOS: padding must not read as an end.
 */
export function specialIdsOf(tok: FolderTokenizer): SpecialTokenIds {
  const what = `the tokenizer${tok.name ? ` "${tok.name}"` : ''}`;
  if (!(tok.eosId >= 0)) throw new PatentGPTError('E_ARGUMENT', `${what} has no EOS id; a model folder needs one so generation can stop`);
  if (!(tok.bosId >= 0)) throw new PatentGPTError('E_ARGUMENT', `${what} has no BOS id; a model folder needs one`);
  const unk = tok.unkId ?? -1;
  const pad = tok.padId >= 0 ? tok.padId : null;
  return { bos: tok.bosId, eos: tok.eosId, pad, generationPad: pad ?? (unk >= 0 && unk !== tok.eosId ? unk : null) };
}

/** A file of a model folder besides the weights. */
export interface FolderFile {
  name: string;
  content: string | Uint8Array;
}

export interface FolderFilesOptions {
  /** On-disk dtype of the weights (config.json's torch_dtype; default f32). */
  dtype?: WriteDType;
  /** The model's tokenizer: its ids go into the configs and the tokenizer is recorded. */
  tokenizer?: FolderTokenizer;
  /** Special ids when no tokenizer is given (default LLaMA-2's). */
  ids?: SpecialTokenIds;
  /** Extra fields of an existing generation_config.json to keep (sampling settings). */
  generation?: Record<string, unknown>;
}

/**
 * The files of a model folder other than the weights: config.json, generation_config.json and,
 * with a tokenizer, its record (tokenizer.model or tokenizer_spec.json). savePretrained writes
 * them; a training checkpoint lists them beside its model.safetensors.
 */
export function folderFiles(config: ModelConfig, opts: FolderFilesOptions = {}): FolderFile[] {
  const tok = opts.tokenizer;
  if (tok && tok.vocabSize > config.vocabSize)
    throw new PatentGPTError('E_ARGUMENT',
      `the tokenizer${tok.name ? ` "${tok.name}"` : ''} has ${tok.vocabSize} ids, more than the model's ${config.vocabSize} embeddings; use a tokenizer that fits the vocabulary`);
  const ids = validateSpecialIds(tok ? specialIdsOf(tok) : opts.ids ?? LLAMA2_SPECIAL_IDS, config.vocabSize, tok ? `tokenizer${tok.name ? ` "${tok.name}"` : ''}` : 'special token ids');
  const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';
  const files: FolderFile[] = [
    { name: CONFIG_FILE, content: hfConfigJson(toHFConfig(config, opts.dtype ?? 'f32', ids)) },
    { name: GENERATION_CONFIG_FILE, content: json({ ...(opts.generation ?? {}), ...toHFGenerationConfig(ids) }) },
  ];
  if (tok) files.push(tokenizerRecord(tok));
  return files;
}

function tokenizerRecord(tok: FolderTokenizer): FolderFile {
  if (typeof tok.serialize === 'function') return { name: TOKENIZER_MODEL_FILE, content: tok.serialize() };
  if (tok.name === 'byte') return { name: TOKENIZER_SPEC_FILE, content: JSON.stringify({ type: 'byte' }, null, 2) + '\n' };
  throw new PatentGPTError('E_ARGUMENT', `cannot record tokenizer "${tok.name ?? '?'}" in a model folder: give a SentencePiece tokenizer (with a tokenizer.model) or the byte tokenizer`);
}

/**
 * The tokenizer a folder records: its tokenizer.model (SentencePiece), else the type in its
 * tokenizer_spec.json; null when it records none (a folder from an older writer or elsewhere).
 * Synchronous: the CLI's --tokenizer resolution is.
 */
export function readFolderTokenizer(dir: string): RecordedTokenizer | null {
  const model = join(dir, TOKENIZER_MODEL_FILE);
  if (existsSync(model)) return { type: 'sentencepiece', path: model };
  const specPath = join(dir, TOKENIZER_SPEC_FILE);
  if (!existsSync(specPath)) return null;
  let spec: unknown;
  try {
    spec = JSON.parse(readFileSync(specPath, 'utf8'));
  } catch (err) {
    throw new PatentGPTError('E_FORMAT', `${specPath}: cannot read the tokenizer record (${(err as Error).message})`);
  }
  const type = (spec as { type?: unknown } | null)?.type;
  if (type !== 'byte') throw new PatentGPTError('E_FORMAT', `${specPath}: field "type" is ${JSON.stringify(type)}, expected "byte"`);
  return { type: 'byte' };
}

/** The special ids a folder's config.json (and generation_config.json) carry; null when they name none (older writers). */
export async function readSpecialIds(dir: string): Promise<SpecialTokenIds | null> {
  const config = await readJsonObject(join(dir, CONFIG_FILE));
  return config ? specialIdsFromHF(config, await readJsonObject(join(dir, GENERATION_CONFIG_FILE))) : null;
}

/** Whether a folder holds a model (a config.json or weight files), so a writer can refuse to replace it. */
export async function holdsModel(dir: string): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return false;
  }
  return names.some((f) => f === CONFIG_FILE || isWeightFile(f));
}

/** Tensors some checkpoints carry that are not parameters (recomputed from the config). */
const IGNORED = /\.rotary_emb\.inv_freq$/;

export interface SaveOptions {
  /** On-disk dtype (default f32). */
  dtype?: WriteDType;
  /** Largest shard in bytes before splitting into several files (default 5 GiB, as transformers 4). */
  maxShardBytes?: number;
  /**
   * The model's tokenizer: its special ids go into config.json and generation_config.json and
   * it is recorded (tokenizer.model or tokenizer_spec.json), so readers need no --tokenizer.
   * Without it an existing folder keeps its tokenizer files and the ids its config.json had;
   * a new folder gets LLaMA-2's ids and no tokenizer record.
   */
  tokenizer?: FolderTokenizer;
}

/**
 * Saves a model as a folder transformers loads with LlamaForCausalLM.from_pretrained (and
 * generates from, stopping at the tokenizer's EOS). A new folder is built beside the target and
 * renamed into place; an existing folder keeps its other files and gets each file replaced
 * atomically, stale weight files (and a stale tokenizer record of the other kind) removed.
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
  // Without a tokenizer, an existing folder keeps the ids (and sampling settings) it had.
  const meta = folderFiles(model.config, {
    dtype,
    ...(opts.tokenizer ? { tokenizer: opts.tokenizer } : {}),
    ...(!fresh && !opts.tokenizer ? { ids: (await readSpecialIds(dir)) ?? LLAMA2_SPECIAL_IDS } : {}),
    ...(!fresh ? { generation: await readJsonObject(join(dir, GENERATION_CONFIG_FILE)) } : {}),
  });
  const target = fresh ? tempPath(dir) : dir;
  try {
    await mkdir(target, { recursive: true });
  } catch (err) {
    throw fileWriteError(dir, err); // e.g. a file in the way of the folder
  }
  try {
    for (const f of meta) await writeFileAtomic(join(target, f.name), f.content);
    const recorded = meta.find((f) => f.name === TOKENIZER_MODEL_FILE || f.name === TOKENIZER_SPEC_FILE)?.name;
    const otherRecord = recorded === TOKENIZER_MODEL_FILE ? TOKENIZER_SPEC_FILE : recorded === TOKENIZER_SPEC_FILE ? TOKENIZER_MODEL_FILE : null;
    const stale = fresh ? [] : (await readdir(dir)).filter((f) => (isWeightFile(f) && !files.includes(f)) || f === otherRecord);
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
    throw fileWriteError(dir, err); // the files' own errors already name them and pass through
  }
}

/** A JSON object file's content, or undefined when it is absent or not an object. */
async function readJsonObject(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v: unknown = JSON.parse(await readFile(path, 'utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
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
  const path = join(dir, CONFIG_FILE);
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

/** What loadWeights reads of a model: its named parameters (written in place) and its config. */
export interface WeightTarget {
  namedParameters(): [string, Tensor][];
  readonly config: ModelConfig;
}

/**
 * Replaces every parameter of `model` with the folder's tensors (converted to f32). All files
 * are opened and every tensor's presence and shape checked first; then data is read. Errors
 * name the tensor, the file and both shapes.
 */
export async function loadWeights(model: WeightTarget, dir: string, opts: LoadOptions = {}): Promise<void> {
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
  checkModelFits(config, join(dir, CONFIG_FILE)); // before allocating a parameter
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
  checkTensorFits('model.embed_tokens.weight', [newSize, C], 'resizeVocabulary');
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
