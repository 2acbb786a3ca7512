// How large one tensor may be: every weight passes through a JS typed array (initialisation,
// safetensors reads, exports), and V8 caps a typed array's length. A config or file past the cap
// is refused up front with the tensor's name and size, not with V8's bare "RangeError: Invalid
// typed array length" midway through allocating a model.
import { constants } from 'node:buffer';
import { PatentGPTError } from '../errors.js';
import { headDim, type ModelConfig } from './config.js';

/** The most elements one typed array holds in this runtime (2^32 in Node 20; more in later versions). */
export const MAX_TENSOR_ELEMENTS: number = Math.min(constants.MAX_LENGTH, Number.MAX_SAFE_INTEGER);

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/**
 * Refuses a tensor of more than MAX_TENSOR_ELEMENTS elements. `where` names the source (a
 * file, a config) and `bytesPerElement` the dtype it would be held in.
 */
export function checkTensorFits(name: string, shape: readonly number[], where: string, bytesPerElement = 4): void {
  const n = shape.reduce((a, d) => a * d, 1);
  if (n > MAX_TENSOR_ELEMENTS)
    throw new PatentGPTError('E_UNSUPPORTED',
      `${where}: tensor "${name}" [${shape.join(', ')}] has ${n.toLocaleString('en-US')} elements (${gib(n * bytesPerElement)}), ` +
      `more than the ${MAX_TENSOR_ELEMENTS.toLocaleString('en-US')} one typed array holds in this Node.js ${process.version}; ` +
      'use a smaller config (vocabulary, dim or ffnDim) or a Node.js with larger typed arrays');
}

/** The shape of each kind of parameter of a config (layer 0 stands for every layer), largest first. */
export function parameterShapes(cfg: ModelConfig): [string, number[]][] {
  const C = cfg.dim;
  const D = headDim(cfg);
  const p = 'model.layers.0.';
  const shapes: [string, number[]][] = [
    ['model.embed_tokens.weight', [cfg.vocabSize, C]],
    [`${p}self_attn.q_proj.weight`, [cfg.nHeads * D, C]],
    [`${p}self_attn.k_proj.weight`, [cfg.nKvHeads * D, C]],
    [`${p}self_attn.v_proj.weight`, [cfg.nKvHeads * D, C]],
    [`${p}self_attn.o_proj.weight`, [C, cfg.nHeads * D]],
    [`${p}mlp.gate_proj.weight`, [cfg.ffnDim, C]],
    [`${p}mlp.up_proj.weight`, [cfg.ffnDim, C]],
    [`${p}mlp.down_proj.weight`, [C, cfg.ffnDim]],
    [`${p}input_layernorm.weight`, [C]],
    ['model.norm.weight', [C]],
  ];
  if (!cfg.tieEmbeddings) shapes.push(['lm_head.weight', [cfg.vocabSize, C]]);
  const size = (s: number[]): number => s.reduce((a, d) => a * d, 1);
  return shapes.sort((a, b) => size(b[1]) - size(a[1]));
}

/** Refuses a config any of whose parameters is too large for a typed array (before anything is allocated). */
export function checkModelFits(cfg: ModelConfig, source: string): void {
  for (const [name, shape] of parameterShapes(cfg)) checkTensorFits(name, shape, source);
}
