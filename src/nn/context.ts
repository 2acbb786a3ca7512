// What a forward pass reports besides its output: auxiliary losses (a router's load-balancing
// loss) that the model adds to its loss, and metrics (tokens per expert, router entropy) for the
// caller's logs. Modules report through the ForwardContext they are handed; the model gives each
// layer a view whose names carry the layer (`layers.3.load_balance`).
//
// An auxiliary loss is made inside the forward's memory scopes, which end before the loss reads
// it: the recorder takes it out of them (keep) and owns it until dispose().
import { PatentGPTError } from '../errors.js';
import { keep, type Tensor } from '../tensor/index.js';

/** What a module may report during forward. */
export interface ForwardContext {
  /** A scalar loss term to add to the model's loss (its gradient flows like the loss's); one per name. */
  addAuxLoss(name: string, loss: Tensor): void;
  /** A number for the logs (the last value per name wins). */
  addMetric(name: string, value: number): void;
}

/** Collects what a forward reports; the model's loss adds the auxiliary losses. */
export class ForwardRecorder implements ForwardContext {
  readonly #aux = new Map<string, Tensor>();
  readonly #metrics = new Map<string, number>();

  addAuxLoss(name: string, loss: Tensor): void {
    if (loss.size !== 1) throw new PatentGPTError('E_SHAPE', `addAuxLoss("${name}"): an auxiliary loss is a scalar, got ${loss.describe()}`);
    if (this.#aux.has(name)) throw new PatentGPTError('E_ARGUMENT', `addAuxLoss: "${name}" was already reported in this forward; give each term its own name`);
    this.#aux.set(name, keep(loss));
  }

  addMetric(name: string, value: number): void {
    this.#metrics.set(name, value);
  }

  /** The auxiliary losses reported so far, by name (owned by this recorder). */
  get auxLosses(): ReadonlyMap<string, Tensor> {
    return this.#aux;
  }

  get metrics(): ReadonlyMap<string, number> {
    return this.#metrics;
  }

  /** Frees the auxiliary losses (their graph stays on the tape until backward). */
  dispose(): void {
    for (const t of this.#aux.values()) t.dispose();
    this.#aux.clear();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A view of ctx that reports under `prefix + name` (the model's per-layer view). */
export function prefixContext(ctx: ForwardContext, prefix: string): ForwardContext {
  return {
    addAuxLoss: (name, loss) => ctx.addAuxLoss(prefix + name, loss),
    addMetric: (name, value) => ctx.addMetric(prefix + name, value),
  };
}
