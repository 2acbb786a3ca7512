// Weight-only quantized models for the engine. A quantized model folder (patentgpt quantize) is
// config.json, the tokenizer, and model.gguf: the GGUF llama.cpp loads, which is also where the
// engine reads the blocks from, so both run the same bits. Each tensor's type follows
// llama.cpp's convention (src/export/gguf-quant.ts): the seven projections of each layer and
// the output matrix become QuantizedMatrix weights of their Linear (Linear.setQuantized: the
// fused decode path and every forward read the blocks in place); the token embedding is stored
// quantized and held dequantized (as llama.cpp's get_rows reads it); norms stay f32.
// quantizeModel does the same to a model in memory, with the same quantizer as the GGUF export.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { quantTypeFor } from '../models/gguf-quant.js';
import { readGgufFile, type GgufFile } from '../models/gguf-read.js';
import { isMoE, readConfig, checkModelFits, CONFIG_FILE, SINGLE_FILE, INDEX_FILE, LlamaForCausalLM } from '../models/index.js';
import { SwiGLUMLP, type Linear } from '../nn/index.js';
import { QuantizedMatrix, Tensor, dequantize, noGrad, quantTypeOfGgml, quantize, type QuantType } from '../tensor/index.js';

/** The GGUF file of a quantized model folder. */
export const QUANTIZED_GGUF = 'model.gguf';

/** Whether `dir` is a quantized model folder: model.gguf with config.json and no safetensors weights. */
export function isQuantizedFolder(dir: string): boolean {
  return existsSync(join(dir, QUANTIZED_GGUF)) && existsSync(join(dir, CONFIG_FILE)) &&
    !existsSync(join(dir, SINGLE_FILE)) && !existsSync(join(dir, INDEX_FILE));
}

/** A projection of the decoder: its Linear, its GGUF name and (q, k) the heads its rows are permuted by for llama.cpp's RoPE. */
interface Projection {
  linear: Linear;
  gguf: string;
  heads: number;
}

function projections(model: LlamaForCausalLM, op: string): Projection[] {
  const cfg = model.config;
  if (isMoE(cfg)) throw new PatentGPTError('E_UNSUPPORTED', `${op}: quantizing a mixture-of-experts model is not supported (dense models only)`);
  const out: Projection[] = [];
  model.model.layers.items.forEach((b, l) => {
    const a = b.self_attn, ff = b.feedForward;
    if (!(ff instanceof SwiGLUMLP)) throw new PatentGPTError('E_UNSUPPORTED', `${op}: layer ${l}'s feed-forward is not a SwiGLU MLP`);
    out.push(
      { linear: a.q_proj, gguf: `blk.${l}.attn_q.weight`, heads: cfg.nHeads },
      { linear: a.k_proj, gguf: `blk.${l}.attn_k.weight`, heads: cfg.nKvHeads },
      { linear: a.v_proj, gguf: `blk.${l}.attn_v.weight`, heads: 0 },
      { linear: a.o_proj, gguf: `blk.${l}.attn_output.weight`, heads: 0 },
      { linear: ff.gate_proj, gguf: `blk.${l}.ffn_gate.weight`, heads: 0 },
      { linear: ff.up_proj, gguf: `blk.${l}.ffn_up.weight`, heads: 0 },
      { linear: ff.down_proj, gguf: `blk.${l}.ffn_down.weight`, heads: 0 },
    );
  });
  return out;
}

/** W's rows as llama.cpp's RoPE wants them <-> ours: GGUF row h*D + 2i + j is our row h*D + j*D/2 + i (permuteForRope). */
function fromRopeOrder(heads: number, rows: number): Int32Array {
  const D = rows / heads, order = new Int32Array(rows);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < D / 2; i++)
      for (let j = 0; j < 2; j++) order[h * D + j * (D / 2) + i] = h * D + 2 * i + j;
  return order;
}

/** Replaces the values of f32 tensor `t` by those of its `type` blocks (what llama.cpp reads of it). */
function roundTrip(t: Tensor, type: QuantType): void {
  const q = quantize(t, type);
  const d = dequantize(q);
  noGrad(() => t.write(d.toRaw() as Float32Array));
  d.dispose();
  q.dispose();
}

/**
 * Quantizes a dense model in memory, in place, to `type` as `patentgpt quantize` does (the same
 * types per tensor and the same quantizer as its GGUF): the projections and the untied head
 * become quantized Linear weights, the token embedding takes its quantized values. The model is
 * then inference-only.
 */
export function quantizeModel(model: LlamaForCausalLM, type: QuantType): void {
  const op = 'quantizeModel';
  if (model.device !== 'cpu') throw new PatentGPTError('E_DEVICE', `${op}: quantized weights run on the CPU; move the model with .to('cpu')`);
  const cfg = model.config, tied = cfg.tieEmbeddings;
  const set = (l: Linear, qt: QuantType | 'f32'): void => {
    if (qt !== 'f32') l.setQuantized(quantize(l.weight, qt));
  };
  for (const p of projections(model, op)) set(p.linear, quantTypeFor('projection', p.linear.inFeatures, type));
  const et = quantTypeFor('embedding', cfg.dim, type, tied);
  if (et !== 'f32') roundTrip(model.model.embed_tokens.weight, et);
  if (model.lm_head) set(model.lm_head, quantTypeFor('output', cfg.dim, type));
  else if (et !== 'f32') model.setQuantizedTiedHead(quantize(model.model.embed_tokens.weight, et)); // the blocks of the table's (round-tripped) values
}

/** The f32 values of GGUF tensor `name` (f32 or quantized), as (rows, cols) in our row order. */
function readF32(g: GgufFile, name: string, rows: number, cols: number, heads = 0): Float32Array {
  const info = g.tensors.get(name)!;
  const b = g.bytes(name);
  let out: Float32Array;
  if (info.type === 0) out = new Float32Array(b.slice().buffer);
  else {
    const qt = quantTypeOfGgml(info.type)!;
    const q = QuantizedMatrix.fromBytes(qt, rows, cols, b);
    const d = dequantize(q);
    out = d.toArray() as Float32Array;
    d.dispose();
    q.dispose();
  }
  if (!heads) return out;
  const order = fromRopeOrder(heads, rows), res = new Float32Array(out.length);
  for (let r = 0; r < rows; r++) res.set(out.subarray(order[r]! * cols, (order[r]! + 1) * cols), r * cols);
  return res;
}

/** Checks that GGUF tensor `name` exists with (rows, cols) (or (n) for rows = 0) and a type this package reads. */
function expectTensor(g: GgufFile, name: string, rows: number, cols: number): void {
  const t = g.tensors.get(name);
  const dims = rows ? [cols, rows] : [cols];
  if (!t) throw new PatentGPTError('E_FORMAT', `${g.path}: tensor "${name}" is missing`);
  if (t.dims.join() !== dims.join())
    throw new PatentGPTError('E_SHAPE', `${g.path}: tensor "${name}" has dims [${t.dims.join(', ')}], config.json implies [${dims.join(', ')}]`);
  if (t.type !== 0 && quantTypeOfGgml(t.type) === undefined)
    throw new PatentGPTError('E_FORMAT', `${g.path}: tensor "${name}" has GGML type ${t.type}; patentgpt reads f32, q8_0, q4_0 and q4_k`);
}

/** A model from a quantized model folder (isQuantizedFolder): config.json, then model.gguf's tensors. */
export async function loadQuantized(dir: string): Promise<LlamaForCausalLM> {
  const config = await readConfig(dir);
  checkModelFits(config, join(dir, CONFIG_FILE));
  const g = await readGgufFile(join(dir, QUANTIZED_GGUF));
  if (g.kv.get('llama.block_count') !== config.nLayers || g.kv.get('llama.embedding_length') !== config.dim)
    throw new PatentGPTError('E_FORMAT', `${g.path}: ${String(g.kv.get('llama.block_count'))} layers of ${String(g.kv.get('llama.embedding_length'))} do not match config.json's ${config.nLayers} of ${config.dim}`);
  const model = new LlamaForCausalLM(config, { init: 'zeros' });
  try {
    const C = config.dim, V = config.vocabSize;
    const writeParam = (path: string, values: Float32Array): void => {
      const p = model.getParameter(path);
      if (!p) throw new PatentGPTError('E_INTERNAL', `loadQuantized: no parameter ${path}`);
      noGrad(() => p.write(values));
    };
    const projs = projections(model, 'loadQuantized');
    for (const p of projs) expectTensor(g, p.gguf, p.linear.outFeatures, p.linear.inFeatures);
    expectTensor(g, 'token_embd.weight', V, C);
    if (!config.tieEmbeddings) expectTensor(g, 'output.weight', V, C);
    for (let l = 0; l < config.nLayers; l++) {
      expectTensor(g, `blk.${l}.attn_norm.weight`, 0, C);
      expectTensor(g, `blk.${l}.ffn_norm.weight`, 0, C);
      writeParam(`model.layers.${l}.input_layernorm.weight`, readF32(g, `blk.${l}.attn_norm.weight`, 1, C));
      writeParam(`model.layers.${l}.post_attention_layernorm.weight`, readF32(g, `blk.${l}.ffn_norm.weight`, 1, C));
    }
    expectTensor(g, 'output_norm.weight', 0, C);
    writeParam('model.norm.weight', readF32(g, 'output_norm.weight', 1, C));
    writeParam('model.embed_tokens.weight', readF32(g, 'token_embd.weight', V, C));
    const te = g.tensors.get('token_embd.weight')!;
    if (config.tieEmbeddings && te.type !== 0) // the tied head reads the blocks, as llama.cpp does
      model.setQuantizedTiedHead(QuantizedMatrix.fromBytes(quantTypeOfGgml(te.type)!, V, C, g.bytes('token_embd.weight')));
    const load = (l: Linear, name: string, heads: number): void => {
      const info = g.tensors.get(name)!;
      const [rows, cols] = [l.outFeatures, l.inFeatures];
      if (info.type === 0) return noGrad(() => void l.weight.write(readF32(g, name, rows, cols, heads)));
      let q = QuantizedMatrix.fromBytes(quantTypeOfGgml(info.type)!, rows, cols, g.bytes(name));
      if (heads) {
        const p = q.permuteRows(fromRopeOrder(heads, rows));
        q.dispose();
        q = p;
      }
      l.setQuantized(q);
    };
    for (const p of projs) load(p.linear, p.gguf, p.heads);
    if (model.lm_head) load(model.lm_head, 'output.weight', 0);
    return model;
  } catch (err) {
    model.dispose();
    throw err;
  }
}
