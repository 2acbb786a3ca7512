// Module: a named tree of parameters, as torch.nn.Module. A module owns its parameters (leaf
// tensors that require grad) and its child modules; the dotted path of a parameter through the
// tree is its checkpoint name, so modules named as in Hugging Face give LlamaForCausalLM's names
// (model.layers.0.self_attn.q_proj.weight) for free.
import { PatentGPTError } from '../errors.js';
import { keep, type Tensor } from '../tensor/index.js';

export abstract class Module {
  readonly #params = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();

  /** Registers (or replaces) parameter `name`: it becomes a leaf that requires grad and outlives scopes. */
  protected registerParameter(name: string, t: Tensor): Tensor {
    if (name.includes('.')) throw new PatentGPTError('E_ARGUMENT', `parameter name "${name}" must not contain "."`);
    if (t.dtype !== 'f32') throw new PatentGPTError('E_DTYPE', `parameter ${name} must be f32 (master weights), got ${t.describe()}`);
    t.requiresGrad = true;
    keep(t);
    t.name = name;
    this.#params.set(name, t);
    return t;
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

  /** [dotted name, tensor] for every parameter below this module, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#params) out.push([prefix + n, t]);
    for (const [n, m] of this.#children) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** The parameter at a dotted path, or undefined. */
  getParameter(path: string): Tensor | undefined {
    const dot = path.indexOf('.');
    if (dot < 0) return this.#params.get(path);
    return this.#children.get(path.slice(0, dot))?.getParameter(path.slice(dot + 1));
  }

  /**
   * Replaces the parameter at a dotted path with `t` (same shape unless `allowReshape`); the
   * old tensor and its gradient are disposed.
   */
  setParameter(path: string, t: Tensor, opts: { allowReshape?: boolean } = {}, fullPath = path): void {
    const dot = path.indexOf('.');
    if (dot >= 0) {
      const child = this.#children.get(path.slice(0, dot));
      if (!child) throw new PatentGPTError('E_ARGUMENT', `no module on the path of parameter "${fullPath}"`);
      child.setParameter(path.slice(dot + 1), t, opts, fullPath);
      return;
    }
    const old = this.#params.get(path);
    if (!old) throw new PatentGPTError('E_ARGUMENT', `${this.constructor.name} has no parameter "${fullPath}"`);
    if (!opts.allowReshape && (old.shape.length !== t.shape.length || old.shape.some((d, i) => d !== t.shape[i])))
      throw new PatentGPTError('E_SHAPE', `parameter ${fullPath} is ${old.describe()}, cannot replace it with ${t.describe()}`);
    if (old === t) return;
    this.registerParameter(path, t);
    old.grad?.dispose();
    old.grad = null;
    old.dispose();
  }

  /** Drops every parameter's gradient (after an optimizer step). */
  zeroGrad(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.grad = null;
    }
  }

  /** Frees every parameter and gradient. */
  dispose(): void {
    for (const t of new Set(this.parameters())) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
