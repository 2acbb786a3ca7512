// Module: a named tree of parameters, as torch.nn.Module. A module owns its parameters (leaf
// tensors that require grad) and its child modules; the dotted path of a parameter through the
// tree is its checkpoint name, so modules named as in Hugging Face give LlamaForCausalLM's names
// (model.layers.0.self_attn.q_proj.weight) for free. A module whose own layout differs from the
// checkpoint's declares, per parameter, the name the checkpoint gives it below the module (it
// may hold dots: a mixture of experts keeps expert m's w1 as `experts.m.w1.weight`, as Mixtral).
import { PatentGPTError } from '../errors.js';
import { checkDeviceAvailable, keep, type Device, type Tensor } from '../tensor/index.js';

export abstract class Module {
  /** Parameters by the name the module uses. */
  readonly #params = new Map<string, Tensor>();
  /** Checkpoint name (below this module) -> the module's name, for parameters that declare one. */
  readonly #checkpointNames = new Map<string, string>();
  readonly #children = new Map<string, Module>();
  /** Bumped on every parameter registration anywhere: callers holding weights know when to look again. */
  static #generation = 0;

  /**
   * Registers (or replaces) parameter `name`: it becomes a leaf that requires grad and outlives
   * scopes. `checkpointName` (default `name`) is its name in checkpoints below this module.
   */
  protected registerParameter(name: string, t: Tensor, checkpointName = name): Tensor {
    if (name.includes('.')) throw new PatentGPTError('E_ARGUMENT', `parameter name "${name}" must not contain "."`);
    if (t.dtype !== 'f32') throw new PatentGPTError('E_DTYPE', `parameter ${name} must be f32 (master weights), got ${t.describe()}`);
    if (checkpointName !== name) {
      if (!/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/.test(checkpointName))
        throw new PatentGPTError('E_ARGUMENT', `checkpoint name "${checkpointName}" of parameter ${name} must be dotted identifiers`);
      const other = this.#checkpointNames.get(checkpointName);
      if (other !== undefined && other !== name)
        throw new PatentGPTError('E_ARGUMENT', `checkpoint name "${checkpointName}" is declared by parameters ${other} and ${name}`);
      this.#checkpointNames.set(checkpointName, name);
    }
    t.requiresGrad = true;
    keep(t);
    t.name = name;
    this.#params.set(name, t);
    Module.#generation++;
    return t;
  }

  /**
   * A number that changes whenever any module registers or replaces a parameter: a cache of
   * weight tensors (prepared native calls) that saw the same number is still current.
   */
  static get parameterGeneration(): number {
    return Module.#generation;
  }

  protected registerModule<M extends Module>(name: string, m: M): M {
    if (name.includes('.')) throw new PatentGPTError('E_ARGUMENT', `module name "${name}" must not contain "."`);
    this.#children.set(name, m);
    return m;
  }

  /** This module's own parameter `name`. */
  protected param(name: string): Tensor {
    const t = this.#params.get(name);
    if (!t) throw new PatentGPTError('E_ARGUMENT', `${this.constructor.name} has no parameter "${name}"`);
    return t;
  }

  /**
   * Drops own parameter `name` and frees it (an inference-only layer that replaced its weight by
   * another form, as a quantized Linear): it leaves the checkpoint names.
   */
  protected removeParameter(name: string): void {
    const t = this.param(name);
    this.#params.delete(name);
    for (const [ck, n] of this.#checkpointNames) if (n === name) this.#checkpointNames.delete(ck);
    t.grad?.dispose();
    t.grad = null;
    t.dispose();
    Module.#generation++;
  }

  /** Tensors a module holds besides its parameters (a quantized weight): freed by dispose(). */
  protected disposeBuffers(): void {}

  #disposeAllBuffers(): void {
    this.disposeBuffers();
    for (const m of this.#children.values()) m.#disposeAllBuffers();
  }

  /** The checkpoint name (below this module) of own parameter `name`. */
  #checkpointName(name: string): string {
    for (const [ck, n] of this.#checkpointNames) if (n === name) return ck;
    return name;
  }

  /** The own parameter name behind a checkpoint name below this module, if it is one. */
  #ownName(path: string): string | undefined {
    const declared = this.#checkpointNames.get(path);
    if (declared !== undefined) return declared;
    return !path.includes('.') && this.#params.has(path) && this.#checkpointName(path) === path ? path : undefined;
  }

  /** [checkpoint name, tensor] for every parameter below this module, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#params) out.push([prefix + this.#checkpointName(n), t]);
    for (const [n, m] of this.#children) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** The parameter with this checkpoint name (a dotted path), or undefined. */
  getParameter(path: string): Tensor | undefined {
    const own = this.#ownName(path);
    if (own !== undefined) return this.#params.get(own);
    const dot = path.indexOf('.');
    if (dot < 0) return undefined;
    return this.#children.get(path.slice(0, dot))?.getParameter(path.slice(dot + 1));
  }

  /**
   * Replaces the parameter with this checkpoint name with `t` (same shape unless
   * `allowReshape`); the old tensor and its gradient are disposed.
   */
  setParameter(path: string, t: Tensor, opts: { allowReshape?: boolean } = {}, fullPath = path): void {
    const own = this.#ownName(path);
    const dot = path.indexOf('.');
    if (own === undefined && dot >= 0) {
      const child = this.#children.get(path.slice(0, dot));
      if (!child) throw new PatentGPTError('E_ARGUMENT', `no module on the path of parameter "${fullPath}"`);
      child.setParameter(path.slice(dot + 1), t, opts, fullPath);
      return;
    }
    const old = own === undefined ? undefined : this.#params.get(own);
    if (!old || own === undefined) throw new PatentGPTError('E_ARGUMENT', `${this.constructor.name} has no parameter "${fullPath}"`);
    if (!opts.allowReshape && (old.shape.length !== t.shape.length || old.shape.some((d, i) => d !== t.shape[i])))
      throw new PatentGPTError('E_SHAPE', `parameter ${fullPath} is ${old.describe()}, cannot replace it with ${t.describe()}`);
    if (old === t) return;
    const frozen = !old.requiresGrad; // a replaced weight stays frozen (LoRA's base), as torch's load_state_dict keeps it
    this.registerParameter(own, t, this.#checkpointName(own));
    if (frozen) t.requiresGrad = false;
    old.grad?.dispose();
    old.grad = null;
    old.dispose();
  }

  /**
   * Moves every parameter to `device` (a copy each; the old tensors and gradients are freed).
   * Nothing moves when one copy fails; asking for 'cuda' where there is none is E_DEVICE.
   */
  to(device: Device): this {
    checkDeviceAvailable(device, 'Module.to');
    const moves: [string, Tensor][] = [];
    try {
      for (const [name, t] of this.namedParameters()) if (t.device !== device) moves.push([name, t.to(device)]);
    } catch (err) {
      for (const [, t] of moves) t.dispose();
      throw err;
    }
    for (const [name, t] of moves) this.setParameter(name, t);
    return this;
  }

  /** Drops every parameter's gradient (after an optimizer step). */
  zeroGrad(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.grad = null;
    }
  }

  /** Frees every parameter and gradient (and every module's buffers). */
  dispose(): void {
    for (const t of new Set(this.parameters())) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
    this.#disposeAllBuffers();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
