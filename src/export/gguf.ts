// GGUF export (llama.cpp's file format, version 3) of a LlamaForCausalLM and its SentencePiece
// tokenizer, laid out as llama.cpp's convert_hf_to_gguf.py does for the llama architecture:
//   - metadata: llama.* hyper-parameters, general.file_type, tokenizer.ggml.* (model "llama":
//     pieces, scores, token types, special ids);
//   - tensors under GGUF names (token_embd, blk.N.attn_q, ..., output), dims listed innermost
//     first; q and k projections permuted from Hugging Face's rotate-half RoPE layout to the
//     interleaved pairs llama.cpp rotates; norms always f32, matrices f32 or f16, or quantized
//     to llama.cpp's Q8_0, Q4_0 or Q4_K blocks (each tensor's type as llama-quantize picks it:
//     src/models/gguf-quant.ts; the blocks by the native reference quantizers, src/tensor/ops/quant.ts);
//   - a Mixtral-style SMoE (numExperts > 1) as llama.cpp's llama architecture holds it:
//     llama.expert_count / llama.expert_used_count, the router blk.N.ffn_gate_inp (E, C) always
//     f32 (as convert_hf_to_gguf keeps it, so routing is not perturbed by rounding), and each
//     layer's experts stacked into one 3-D tensor per projection, expert outermost:
//     ffn_gate_exps = w1 and ffn_up_exps = w3 (dims [C, F, E]), ffn_down_exps = w2 ([F, C, E]).
//     llama.cpp routes as Mixtral does (softmax, top-k, renormalised); it has no shared experts;
//   - 32-byte alignment of the data section and of every tensor in it.
// A weight that is NaN or infinite (or overflows f16) is refused with the tensor's name: llama.cpp
// would load such a file and produce garbage. The file is written to a temp name and renamed, so
// a refused or failed export leaves no partial file.
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { isMoE } from '../models/config.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { tempPath } from '../models/safetensors.js';
import { fileWriteError, fsyncDir } from '../util/atomic.js';
import type { SentencePieceTokenizer } from '../tokenizer/sentencepiece.js';
import { GGML_TYPE_ID, QUANT_TYPES, Tensor, quantize, type QuantType } from '../tensor/index.js';
import { ggmlTypeBytes } from '../models/gguf-read.js';
import { GGUF_FILE_TYPE, quantTypeFor, type TensorRole } from '../models/gguf-quant.js';

export interface GgufOptions {
  /**
   * Matrices in 'f32' (default), 'f16' or 'bf16', or quantized ('q8_0', 'q4_0', 'q4_k': llama.cpp's
   * blocks), each tensor's type as src/models/gguf-quant.ts picks it; 1-D tensors stay f32 as llama.cpp expects.
   */
  dtype?: 'f32' | 'f16' | QuantType;
  /** general.name (default 'patentgpt'). */
  name?: string;
}

const ALIGN = 32;
const enum Kind { U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9 }
type Value =
  | { kind: Kind.U32 | Kind.I32 | Kind.F32; value: number }
  | { kind: Kind.BOOL; value: boolean }
  | { kind: Kind.STRING; value: string }
  | { kind: Kind.ARRAY; of: Kind.STRING; value: readonly string[] }
  | { kind: Kind.ARRAY; of: Kind.F32 | Kind.I32; value: ArrayLike<number> };

/** A little-endian byte builder. */
class Bytes {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;
  #room(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.length + n));
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.#room(4);
    this.#view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.#room(4);
    this.#view.setInt32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.#room(8);
    this.#view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  f32(v: number): void {
    this.#room(4);
    this.#view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  bytes(b: Uint8Array): void {
    this.#room(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(align: number): void {
    const n = (align - (this.length % align)) % align;
    this.#room(n);
    this.#buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  get data(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }
}

function writeValue(b: Bytes, v: Value): void {
  b.u32(v.kind);
  switch (v.kind) {
    case Kind.U32: b.u32(v.value); break;
    case Kind.I32: b.i32(v.value); break;
    case Kind.F32: b.f32(v.value); break;
    case Kind.BOOL: b.bytes(Uint8Array.of(v.value ? 1 : 0)); break;
    case Kind.STRING: b.str(v.value); break;
    case Kind.ARRAY:
      b.u32(v.of);
      b.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) {
        const x = v.value[i]!;
        if (v.of === Kind.STRING) b.str(x as string);
        else if (v.of === Kind.F32) b.f32(x as number);
        else b.i32(x as number);
      }
  }
}

/** Rows of a (nHeads * D, in) projection reordered from rotate-half to interleaved RoPE pairs. */
export function permuteForRope(w: Float32Array, nHeads: number, rows: number, cols: number): Float32Array {
  const D = rows / nHeads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++)
    for (let i = 0; i < D / 2; i++)
      for (let j = 0; j < 2; j++) {
        const src = (h * D + j * (D / 2) + i) * cols;
        out.set(w.subarray(src, src + cols), (h * D + 2 * i + j) * cols);
      }
  return out;
}

/** IEEE half from float, round to nearest even. */
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function toHalf(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry moves to the next binade (or to inf): still right
  return sign | h;
}

/** Refuses NaN and infinite weights, naming the tensor (ours and its GGUF name) and where. */
function checkFinite(w: Float32Array, name: string, ggufName: string): void {
  let bad = 0;
  let first = -1;
  for (let i = 0; i < w.length; i++)
    if (!Number.isFinite(w[i]!)) {
      if (first < 0) first = i;
      bad++;
    }
  if (bad > 0)
    throw new PatentGPTError('E_NONFINITE',
      `exportGguf: tensor "${name}" (GGUF ${ggufName}) holds ${bad} non-finite value${bad === 1 ? '' : 's'} ` +
      `(first ${w[first]} at index ${first}); the model has diverged or the folder is corrupt: export an earlier checkpoint`);
}

/** Refuses f32 weights beyond f16's range (they would become infinite in an f16 file). */
function checkHalfRange(w: Float32Array, name: string, ggufName: string): void {
  for (let i = 0; i < w.length; i++)
    if (Math.abs(w[i]!) >= 65520) // rounds to infinity in f16
      throw new PatentGPTError('E_ARGUMENT',
        `exportGguf: tensor "${name}" (GGUF ${ggufName}) holds ${w[i]} at index ${i}, beyond f16's range (65504): export with dtype f32`);
}

function f16Bytes(x: Float32Array): Uint8Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = toHalf(x[i]!);
  return new Uint8Array(out.buffer);
}

interface Entry {
  name: string;
  /** GGUF dims, innermost first. */
  dims: number[];
  type: number; // GGML_TYPE_F32 (0), F16 (1), Q4_0 (2), Q8_0 (8), Q4_K (12)
  /** The data in order, one piece at a time (a stacked expert tensor: one expert per piece). */
  data: () => Iterable<Uint8Array>;
}

/**
 * Writes `model` and `tokenizer` to `path` as a GGUF v3 file llama.cpp loads (architecture
 * llama), dense or SMoE (numExperts > 1, in llama.cpp's MoE layout; shared experts are refused).
 * The tokenizer may have fewer pieces than the model's vocabulary (padded with unused pieces),
 * never more.
 */
export async function exportGguf(model: LlamaForCausalLM, tokenizer: SentencePieceTokenizer, path: string, opts: GgufOptions = {}): Promise<void> {
  const cfg = model.config;
  const dtype = opts.dtype ?? 'f32';
  // f16 keeps its own path (every matrix f16, stacked experts included); the other types go
  // through the native quantizer, one matrix at a time.
  const quant = dtype !== 'f16' && (QUANT_TYPES as readonly string[]).includes(dtype) ? (dtype as QuantType) : null;
  if (dtype !== 'f32' && dtype !== 'f16' && !quant)
    throw new PatentGPTError('E_ARGUMENT', `exportGguf: dtype must be 'f32', ${QUANT_TYPES.map((t) => `'${t}'`).join(', ')}, got ${String(dtype)}`);
  const moe = isMoE(cfg);
  if (moe && quant) throw new PatentGPTError('E_UNSUPPORTED', `exportGguf: ${quant} export of a mixture-of-experts model is not supported; export it as f32 or f16`);
  if (moe && (cfg.numSharedExperts ?? 0) > 0)
    throw new PatentGPTError('E_UNSUPPORTED',
      `exportGguf: numSharedExperts ${cfg.numSharedExperts}: llama.cpp's llama architecture has no shared experts; export a model with numSharedExperts 0`);
  if (cfg.ropeScaling !== null && cfg.ropeScaling.type !== 'linear')
    throw new PatentGPTError('E_UNSUPPORTED', `exportGguf: rope scaling "${cfg.ropeScaling.type}" has no GGUF equivalent here (only linear)`);
  if (tokenizer.vocabSize > cfg.vocabSize)
    throw new PatentGPTError('E_ARGUMENT', `exportGguf: the tokenizer has ${tokenizer.vocabSize} pieces, more than the model's ${cfg.vocabSize} embeddings`);
  const D = cfg.dim / cfg.nHeads;
  const params = new Map(model.namedParameters());
  const get = (n: string, ggufName: string): Float32Array => {
    const t = params.get(n);
    if (!t) throw new PatentGPTError('E_INTERNAL', `exportGguf: no parameter ${n}`);
    const w = t.toArray() as Float32Array;
    checkFinite(w, n, ggufName);
    return w;
  };
  /** Parameter `src` as `type` (f16: refused past f16's range, the index in `src`'s own order). */
  const read = (src: string, name: string, type: 0 | 1, permuteHeads = 0, rows = 0, cols = 0): Uint8Array => {
    let w = get(src, name);
    if (type === 1) checkHalfRange(w, src, name);
    if (permuteHeads) w = permuteForRope(w, permuteHeads, rows, cols);
    return type === 1 ? f16Bytes(w) : new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  };
  const matType = dtype === 'f16' || quant ? 1 : 0; // quantized: mat() picks each matrix's block type by its role
  // A matrix's blocks: the f32 rows (permuted first: each row is quantized alone) through the native quantizer.
  const quantized = (src: string, name: string, type: QuantType, permuteHeads: number, rows: number, cols: number): Uint8Array => {
    let w = get(src, name);
    if (permuteHeads) w = permuteForRope(w, permuteHeads, rows, cols);
    const t = Tensor.from(w, [rows, cols]);
    const q = quantize(t, type);
    t.dispose();
    const b = q.bytes().slice();
    q.dispose();
    return b;
  };
  const mat = (name: string, src: string, rows: number, cols: number, permuteHeads = 0, type: 0 | 1 = matType, role: TensorRole = 'projection'): Entry => {
    const qt = quant && type !== 0 ? quantTypeFor(role, cols, quant, cfg.tieEmbeddings) : quant ? 'f32' : null;
    if (qt && qt !== 'f32')
      return { name, dims: [cols, rows], type: GGML_TYPE_ID[qt], data: function* () { yield quantized(src, name, qt, permuteHeads, rows, cols); } };
    const t: 0 | 1 = qt === 'f32' ? 0 : type;
    return { name, dims: [cols, rows], type: t, data: function* () { yield read(src, name, t, permuteHeads, rows, cols); } };
  };
  const vec = (name: string, src: string, n: number): Entry => ({
    name, dims: [n], type: 0, data: function* () {
      yield read(src, name, 0);
    },
  });
  // E (rows, cols) matrices, one per expert, as one (E, rows, cols) tensor: expert e's matrix is
  // the e-th slab, so it is written expert by expert (a Mixtral-8x7B slab is 235 MB in f32).
  const stacked = (name: string, srcs: string[], rows: number, cols: number): Entry => ({
    name, dims: [cols, rows, srcs.length], type: matType,
    data: function* () {
      for (const src of srcs) yield read(src, name, matType);
    },
  });
  const C = cfg.dim;
  const tensors: Entry[] = [mat('token_embd.weight', 'model.embed_tokens.weight', cfg.vocabSize, C, 0, matType, 'embedding')];
  for (let l = 0; l < cfg.nLayers; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(
      vec(`blk.${l}.attn_norm.weight`, `${p}input_layernorm.weight`, C),
      mat(`blk.${l}.attn_q.weight`, `${p}self_attn.q_proj.weight`, cfg.nHeads * D, C, cfg.nHeads),
      mat(`blk.${l}.attn_k.weight`, `${p}self_attn.k_proj.weight`, cfg.nKvHeads * D, C, cfg.nKvHeads),
      mat(`blk.${l}.attn_v.weight`, `${p}self_attn.v_proj.weight`, cfg.nKvHeads * D, C),
      mat(`blk.${l}.attn_output.weight`, `${p}self_attn.o_proj.weight`, C, cfg.nHeads * D),
      vec(`blk.${l}.ffn_norm.weight`, `${p}post_attention_layernorm.weight`, C),
    );
    if (moe) {
      const e = (w: string): string[] => Array.from({ length: cfg.numExperts }, (_, i) => `${p}block_sparse_moe.experts.${i}.${w}.weight`);
      tensors.push(
        mat(`blk.${l}.ffn_gate_inp.weight`, `${p}block_sparse_moe.gate.weight`, cfg.numExperts, C, 0, 0),
        stacked(`blk.${l}.ffn_gate_exps.weight`, e('w1'), cfg.ffnDim, C),
        stacked(`blk.${l}.ffn_up_exps.weight`, e('w3'), cfg.ffnDim, C),
        stacked(`blk.${l}.ffn_down_exps.weight`, e('w2'), C, cfg.ffnDim),
      );
    } else {
      tensors.push(
        mat(`blk.${l}.ffn_gate.weight`, `${p}mlp.gate_proj.weight`, cfg.ffnDim, C),
        mat(`blk.${l}.ffn_up.weight`, `${p}mlp.up_proj.weight`, cfg.ffnDim, C),
        mat(`blk.${l}.ffn_down.weight`, `${p}mlp.down_proj.weight`, C, cfg.ffnDim),
      );
    }
  }
  tensors.push(vec('output_norm.weight', 'model.norm.weight', C));
  if (!cfg.tieEmbeddings) tensors.push(mat('output.weight', 'lm_head.weight', cfg.vocabSize, C, 0, matType, 'output'));

  // Tokenizer: every piece with its score and type; padding up to the model's vocabulary.
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (let id = 0; id < cfg.vocabSize; id++) {
    if (id < tokenizer.vocabSize) {
      pieces.push(tokenizer.idToPiece(id));
      scores.push(tokenizer.score(id));
      types.push(tokenizer.pieceType(id));
    } else {
      pieces.push(`<unused${id - tokenizer.vocabSize}>`);
      scores.push(-1e9);
      types.push(5); // UNUSED
    }
  }
  const kv: [string, Value][] = [
    ['general.architecture', { kind: Kind.STRING, value: 'llama' }],
    ['general.name', { kind: Kind.STRING, value: opts.name ?? 'patentgpt' }],
    ['general.alignment', { kind: Kind.U32, value: ALIGN }],
    ['general.file_type', { kind: Kind.U32, value: quant ? GGUF_FILE_TYPE[quant] : dtype === 'f16' ? 1 : 0 }],
    ['llama.vocab_size', { kind: Kind.U32, value: cfg.vocabSize }],
    ['llama.context_length', { kind: Kind.U32, value: cfg.maxSeqLen }],
    ['llama.embedding_length', { kind: Kind.U32, value: C }],
    ['llama.block_count', { kind: Kind.U32, value: cfg.nLayers }],
    ['llama.feed_forward_length', { kind: Kind.U32, value: cfg.ffnDim }],
    ['llama.rope.dimension_count', { kind: Kind.U32, value: D }],
    ['llama.attention.head_count', { kind: Kind.U32, value: cfg.nHeads }],
    ['llama.attention.head_count_kv', { kind: Kind.U32, value: cfg.nKvHeads }],
    ['llama.attention.layer_norm_rms_epsilon', { kind: Kind.F32, value: cfg.normEps }],
    ['llama.rope.freq_base', { kind: Kind.F32, value: cfg.ropeTheta }],
    ...(moe
      ? ([['llama.expert_count', { kind: Kind.U32, value: cfg.numExperts }], ['llama.expert_used_count', { kind: Kind.U32, value: cfg.topK }]] as [string, Value][])
      : []),
    ...(cfg.ropeScaling?.type === 'linear'
      ? ([['llama.rope.scaling.type', { kind: Kind.STRING, value: 'linear' }], ['llama.rope.scaling.factor', { kind: Kind.F32, value: cfg.ropeScaling.factor }]] as [string, Value][])
      : []),
    ['tokenizer.ggml.model', { kind: Kind.STRING, value: 'llama' }],
    ['tokenizer.ggml.tokens', { kind: Kind.ARRAY, of: Kind.STRING, value: pieces }],
    ['tokenizer.ggml.scores', { kind: Kind.ARRAY, of: Kind.F32, value: scores }],
    ['tokenizer.ggml.token_type', { kind: Kind.ARRAY, of: Kind.I32, value: types }],
    ...(['bos', 'eos', 'unk', 'padding'] as const).flatMap((k): [string, Value][] => {
      const id = k === 'bos' ? tokenizer.bosId : k === 'eos' ? tokenizer.eosId : k === 'unk' ? tokenizer.unkId : tokenizer.padId;
      return id >= 0 ? [[`tokenizer.ggml.${k === 'padding' ? 'padding' : k}_token_id`, { kind: Kind.U32, value: id }]] : [];
    }),
    ['tokenizer.ggml.add_bos_token', { kind: Kind.BOOL, value: true }],
    ['tokenizer.ggml.add_eos_token', { kind: Kind.BOOL, value: false }],
  ];

  const head = new Bytes();
  head.bytes(new TextEncoder().encode('GGUF'));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(kv.length);
  for (const [k, v] of kv) {
    head.str(k);
    writeValue(head, v);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(t.type);
    head.u64(offset);
    const bytes = ggmlTypeBytes(t.type, t.dims.reduce((a, d) => a * d, 1));
    sizes.push(bytes);
    offset += Math.ceil(bytes / ALIGN) * ALIGN;
  }
  head.pad(ALIGN);

  try {
    await writeFile(path, head.data, tensors, sizes);
  } catch (err) {
    throw fileWriteError(path, err); // ENOSPC and friends name the .gguf file
  }
}

async function writeFile(path: string, head: Uint8Array, tensors: Entry[], sizes: number[]): Promise<void> {
  const tmp = tempPath(path);
  const fh = await open(tmp, 'w');
  try {
    const put = async (b: Uint8Array): Promise<void> => {
      // fh.write may write less than asked, and takes at most 2 GiB per call
      for (let done = 0; done < b.length;) done += (await fh.write(b, done, Math.min(1 << 30, b.length - done))).bytesWritten;
    };
    await put(head);
    const zeros = new Uint8Array(ALIGN);
    for (const [i, t] of tensors.entries()) {
      let n = 0;
      for (const piece of t.data()) {
        await put(piece);
        n += piece.length;
      }
      if (n !== sizes[i]) throw new PatentGPTError('E_INTERNAL', `exportGguf: ${t.name} has ${n} bytes, expected ${sizes[i]}`);
      const pad = (ALIGN - (n % ALIGN)) % ALIGN;
      if (pad) await put(zeros.subarray(0, pad));
    }
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path)); // the rename survives a power cut
}
