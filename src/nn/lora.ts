// LoRA (Hu et al. 2021) as PEFT computes it: a Linear y = x W^T becomes
//   y = x W^T + (alpha / r) * dropout(x) A^T B^T,   A (r, in), B (out, r)
// with A Kaiming-uniform (PEFT's kaiming_uniform_(a = sqrt(5)): U(-1/sqrt(in), 1/sqrt(in))) and
// B zeros, so a fresh adapter leaves the model's outputs exactly as they were. The adapter hangs
// on the Linear (LinearAdapter in layers.ts): the model's forward is unchanged, its parameters
// are named below the layer as PEFT saves them (q_proj.lora_A.weight), and a layer that has one
// reports itself not fusable, so the engine serves base + adapter through the separate ops.
//
// Targets follow PEFT's rules (check_target_module_exists): a string is a regular expression that
// must match the whole module name; a list matches a name equal to an entry or ending in
// "." + entry; "all-linear" is every Linear but the output layer.
import { PatentGPTError } from '../errors.js';
import { add, dropout, isGradEnabled, linear, matmul, noGrad, scale, sub, Tensor } from '../tensor/index.js';
import { dropoutRowsFor, rowDropoutOptions } from './dropout-rows.js';
import { Linear, type LinearAdapter } from './layers.js';
import { Module } from './module.js';

export interface LoraOptions {
  /** Rank r of A (r, in) and B (out, r). */
  r: number;
  /** The update is scaled by alpha / r (PEFT's lora_alpha; default r, a scale of 1). */
  alpha?: number;
  /** Dropout on the adapter's input while gradients are recorded (training); 0 by default. */
  dropout?: number;
  /** PEFT's target_modules: module-name suffixes (["q_proj", "v_proj"]), a full-match regex string, or "all-linear". */
  targetModules: readonly string[] | string;
  /** Seeds A's initialisation and the dropout masks (layer i uses seed + i). */
  seed?: number;
}

/** The low-rank term of one Linear: (alpha / r) * dropout(x) A^T B^T. */
export class LoraAdapter extends Module implements LinearAdapter {
  readonly lora_A: Linear;
  readonly lora_B: Linear;
  readonly r: number;
  readonly alpha: number;
  readonly dropout: number;
  readonly #dropSeed: number;
  #dropOffset = 0;
  #merged = false;

  constructor(inFeatures: number, outFeatures: number, opts: { r: number; alpha?: number; dropout?: number; seed?: number }) {
    super();
    const { r } = opts;
    this.r = r;
    this.alpha = opts.alpha ?? r;
    this.dropout = opts.dropout ?? 0;
    checkHyper(this.r, this.alpha, this.dropout);
    const seed = opts.seed ?? 0;
    // The masks' stream, apart from the init seeds of the other layers (kept below 2^53 for the op).
    this.#dropSeed = Number((BigInt(seed) + 0x5deece66dn) % (1n << 53n));
    const bound = 1 / Math.sqrt(inFeatures);
    this.lora_A = this.registerModule('lora_A', new Linear(inFeatures, r, (shape) => Tensor.uniform(shape, { seed, low: -bound, high: bound })));
    this.lora_B = this.registerModule('lora_B', new Linear(r, outFeatures, (shape) => Tensor.zeros(shape)));
  }

  /** alpha / r. */
  get scaling(): number {
    return this.alpha / this.r;
  }

  /** True while B A * alpha / r is folded into the layer's weight (mergeLora with unload false). */
  get merged(): boolean {
    return this.#merged;
  }
  /** @internal set by mergeLora / unmergeLora, which change the weight to match. */
  setMerged(merged: boolean): void {
    this.#merged = merged;
  }

  apply(x: Tensor, y: Tensor): Tensor {
    if (this.#merged) return y; // already in W
    // (N, in) -> (N, r), scaled there -> (N, out), added to y. Scaling the rank-r activation instead
    // of the (N, out) product saves one (N, out) tensor per adapter, live until backward.
    return add(y, linear(scale(linear(this.#dropped(x), this.lora_A.weight), this.scaling), this.lora_B.weight));
  }

  /** B A * alpha / r (out, in): what merging adds to W. */
  delta(): Tensor {
    return noGrad(() => scale(matmul(this.lora_B.weight, this.lora_A.weight), this.scaling));
  }

  /**
   * Where the next dropout mask starts in this adapter's stream (elements drawn so far): the
   * dropout's whole state, for a trainer that checkpoints it to resume with the same masks.
   */
  get dropoutOffset(): number {
    return this.#dropOffset;
  }
  set dropoutOffset(v: number) {
    if (!Number.isSafeInteger(v) || v < 0) throw new PatentGPTError('E_ARGUMENT', `LoRA: dropoutOffset must be an integer >= 0, got ${v}`);
    this.#dropOffset = v;
  }

  #dropped(x: Tensor): Tensor {
    const p = this.dropout;
    if (p === 0 || !isGradEnabled()) return x;
    // Inverted dropout as torch.nn.Dropout (kept entries scaled by 1 / (1 - p)), the native op.
    // Inside a trainer's withDropoutRows scope whose tokens are x's rows, each token's mask is a
    // function of (seed, step, global row, position, column): the same on any rank or micro-batch,
    // nothing to checkpoint (a last layer's subset of the tokens included). Otherwise (rows not
    // said, or x's rows are not the forward's tokens, as an MoE expert's row group) the mask is a
    // function of (seed, offset), so each forward takes the next x.size draws of the adapter's own stream.
    const rows = x.shape.length === 2 ? dropoutRowsFor(x.shape[0]!) : null;
    if (rows) return dropout(x, p, rowDropoutOptions(this.#dropSeed, rows, x.shape[1]!));
    const out = dropout(x, p, { seed: this.#dropSeed, offset: this.#dropOffset });
    this.#dropOffset += x.size;
    return out;
  }
}

function checkHyper(r: number, alpha: number, dropout: number): void {
  if (!Number.isInteger(r) || r < 1) throw new PatentGPTError('E_CONFIG', `LoRA: field "r" must be an integer >= 1, got ${r}`);
  if (!Number.isFinite(alpha) || alpha <= 0) throw new PatentGPTError('E_CONFIG', `LoRA: field "alpha" must be a number > 0, got ${alpha}`);
  if (!(dropout >= 0 && dropout < 1)) throw new PatentGPTError('E_CONFIG', `LoRA: field "dropout" must be in [0, 1), got ${dropout}`);
}

/**
 * Every Linear below `root` with its module name (the checkpoint name of its weight less
 * ".weight"). Modules hold their children as public fields (and ModuleList as `items`); the
 * names come from namedParameters, so they are the checkpoint's, whatever the field is called.
 */
export function namedLinears(root: Module): [string, Linear][] {
  const names = new Map<Tensor, string>();
  for (const [n, t] of root.namedParameters()) names.set(t, n);
  const out: [string, Linear][] = [];
  const seen = new Set<unknown>();
  const walk = (v: unknown): void => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return;
    seen.add(v);
    if (Array.isArray(v)) {
      for (const item of v) walk(item);
      return;
    }
    if (!(v instanceof Module)) return;
    if (v instanceof Linear) {
      const n = names.get(v.weight);
      if (n !== undefined && n.endsWith('.weight')) out.push([n.slice(0, -'.weight'.length), v]);
      return; // an adapter's own Linears are not targets
    }
    for (const child of Object.values(v)) walk(child);
  };
  walk(root);
  // In checkpoint order, as PEFT walks named_modules.
  const order = new Map(root.namedParameters().map(([n], i) => [n, i]));
  return out.sort((a, b) => order.get(`${a[0]}.weight`)! - order.get(`${b[0]}.weight`)!);
}

/** PEFT's check_target_module_exists for one module name. */
export function matchesTarget(name: string, targets: readonly string[] | string): boolean {
  if (typeof targets === 'string') {
    if (targets === 'all-linear') return name !== 'lm_head' && !name.endsWith('.lm_head');
    return new RegExp(`^(?:${targets})$`).test(name);
  }
  return targets.some((t) => name === t || name.endsWith(`.${t}`));
}

/** The adapted Linears below `root`, by module name. */
export function loraLayers(root: Module): [string, Linear & { adapter: LoraAdapter }][] {
  return namedLinears(root).filter((e): e is [string, Linear & { adapter: LoraAdapter }] => e[1].adapter instanceof LoraAdapter);
}

/**
 * Wraps every Linear of `model` whose name matches `targetModules` with a LoRA adapter, freezes
 * every other parameter (requiresGrad false, as PEFT does) and returns the adapters' parameters
 * by checkpoint name: those, and only those, go to the optimizer.
 */
export function applyLora(model: Module, opts: LoraOptions): [string, Tensor][] {
  const { r } = opts;
  const alpha = opts.alpha ?? r;
  const dropout = opts.dropout ?? 0;
  checkHyper(r, alpha, dropout);
  if (typeof opts.targetModules === 'string' && opts.targetModules !== 'all-linear') {
    try {
      new RegExp(opts.targetModules);
    } catch (err) {
      throw new PatentGPTError('E_CONFIG', `LoRA: field "targetModules" is not a valid regular expression: ${(err as Error).message}`);
    }
  } else if (typeof opts.targetModules !== 'string' && (!Array.isArray(opts.targetModules) || opts.targetModules.length === 0))
    throw new PatentGPTError('E_CONFIG', 'LoRA: field "targetModules" must be a non-empty list of module names (["q_proj", "v_proj"]), a regex string or "all-linear"');
  const linears = namedLinears(model);
  if (linears.some(([, l]) => l.adapter)) throw new PatentGPTError('E_ARGUMENT', 'applyLora: the model already has adapters (mergeLora first, or load a fresh base)');
  const targets = linears.filter(([n]) => matchesTarget(n, opts.targetModules));
  if (targets.length === 0) {
    const example = linears.slice(0, 3).map(([n]) => n).join(', ');
    throw new PatentGPTError('E_CONFIG', `LoRA: field "targetModules" ${JSON.stringify(opts.targetModules)} matches no Linear (names look like ${example})`);
  }
  for (const [name] of targets)
    if (name === 'lm_head' || name.endsWith('.lm_head'))
      throw new PatentGPTError('E_CONFIG', 'LoRA: the output layer (lm_head) cannot take an adapter (the loss reads its weight directly); leave it out of "targetModules"');
  for (const t of model.parameters()) t.requiresGrad = false;
  const seed = opts.seed ?? 0;
  targets.forEach(([, l], i) => l.setAdapter(new LoraAdapter(l.inFeatures, l.outFeatures, { r, alpha, dropout, seed: seed + i })));
  return loraParameters(model);
}

/** The adapters' parameters by checkpoint name (`model.layers.0.self_attn.q_proj.lora_A.weight`). */
export function loraParameters(model: Module): [string, Tensor][] {
  return model.namedParameters().filter(([n]) => /\.lora_[AB]\.weight$/.test(n));
}

export interface MergeOptions {
  /**
   * true (default): remove the adapters after folding them in (PEFT's merge_and_unload). false:
   * keep them, marked merged (PEFT's merge_adapter), so unmergeLora can take them out again.
   */
  unload?: boolean;
}

/**
 * Folds B A * alpha / r into every adapted Linear's weight: the layers are plain weights again
 * and take the fused decode path. By default the adapters are removed (merge_and_unload); with
 * `unload: false` they stay, merged, until unmergeLora. The base weights keep their requiresGrad.
 */
export function mergeLora(model: Module, opts: MergeOptions = {}): void {
  const unload = opts.unload ?? true;
  for (const [, l] of loraLayers(model)) {
    const a = l.adapter;
    if (!a.merged) addToWeight(l, a, 1);
    if (unload) {
      l.setAdapter(null);
      a.dispose();
    } else a.setMerged(true);
  }
}

/**
 * Takes merged adapters back out of the weights (PEFT's unmerge_adapter): W - B A * alpha / r,
 * equal to the weight before merging up to float rounding. Adapters not merged are left alone.
 */
export function unmergeLora(model: Module): void {
  for (const [, l] of loraLayers(model)) {
    const a = l.adapter;
    if (!a.merged) continue;
    addToWeight(l, a, -1);
    a.setMerged(false);
  }
}

/** W + sign * delta as a new weight tensor (a registration: cached decode plans look again). */
function addToWeight(l: Linear, a: LoraAdapter, sign: 1 | -1): void {
  const frozen = !l.weight.requiresGrad;
  const next = noGrad(() => {
    const d = a.delta();
    const w = sign > 0 ? add(l.weight, d) : sub(l.weight, d);
    d.dispose();
    return w;
  });
  l.setParameter('weight', next);
  if (frozen) next.requiresGrad = false;
}

/** Detaches and frees every adapter without merging (the base weights are left as they are). */
export function removeLora(model: Module): void {
  for (const [, l] of loraLayers(model)) {
    const a = l.adapter;
    l.setAdapter(null);
    a.dispose();
  }
}

/**
 * Runs `fn` on the frozen base: every unmerged adapter of `model` is taken off its layer for the
 * call and put back whatever happens (PEFT's disable_adapter()). DPO's and PPO's reference model
 * under LoRA is this: one base in memory, no copy. A merged adapter is already in the weights, so
 * it is refused rather than silently counted in the "base".
 */
export function withAdaptersDisabled<T>(model: Module, fn: () => T): T {
  const layers = loraLayers(model);
  const merged = layers.find(([, l]) => l.adapter.merged);
  if (merged) throw new PatentGPTError('E_ARGUMENT', `withAdaptersDisabled: the adapter of ${merged[0]} is merged into its weight; unmergeLora first`);
  const saved = layers.map(([, l]) => [l, l.adapter] as const);
  for (const [l] of saved) l.setAdapter(null);
  try {
    return fn();
  } finally {
    for (const [l, a] of saved) l.setAdapter(a);
  }
}
