// Tape autograd: ops record a node (inputs, what backward needs, a backward closure) when
// gradients are wanted; backward() walks the tape in reverse, accumulates into leaf .grad and
// releases everything the tape held. Ops are coarse and fused, so the tape stays short.
import { PatentGPTError } from '../errors.js';
import { addon } from './addon.js';
import { scope, untracked } from './scope.js';
import { Tensor } from './tensor.js';

/** Returns one gradient per input (null where an input needs none). */
export type BackwardFn = (grad: Tensor) => readonly (Tensor | null)[];

interface GradNode {
  op: string;
  inputs: readonly Tensor[];
  output: Tensor;
  saved: readonly Tensor[];
  backward: BackwardFn;
}

let tape: GradNode[] = [];
let gradDisabled = 0;

export function isGradEnabled(): boolean {
  return gradDisabled === 0;
}

/** Runs fn without recording: for inference, evaluation and optimizer updates. */
export function noGrad<T>(fn: () => T): T {
  gradDisabled++;
  try {
    return fn();
  } finally {
    gradDisabled--;
  }
}

/**
 * Records `output = op(inputs)` when grad is enabled and some input requires grad; returns
 * output. `saved` are tensors backward reads (the tape keeps them alive until it runs); inputs
 * are held for their metadata only.
 */
export function record(op: string, output: Tensor, inputs: readonly Tensor[], saved: readonly Tensor[], backward: BackwardFn): Tensor {
  if (gradDisabled > 0 || !inputs.some((t) => t.requiresGrad)) return output;
  for (const t of saved) t.retain();
  const node: GradNode = { op, inputs: [...inputs], output, saved: [...saved], backward };
  output.requiresGrad = true;
  output.node = node;
  tape.push(node);
  return output;
}

/** Number of nodes waiting on the tape (for tests and leak hunts). */
export function tapeLength(): number {
  return tape.length;
}

/** Drops the tape without running backward (e.g. after a forward whose loss is not needed). */
export function clearTape(): void {
  const nodes = tape;
  tape = [];
  for (const node of nodes) releaseNode(node);
}

export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad || root.node === null) {
    throw new PatentGPTError('E_AUTOGRAD', `backward(): ${root.describe()} does not require grad (no recorded op produced it)`);
  }
  if (!grad && root.size !== 1) {
    throw new PatentGPTError('E_AUTOGRAD', `backward(): ${root.describe()} is not a scalar; pass the gradient of the output`);
  }
  if (grad && (grad.size !== root.size || grad.dtype !== 'f32')) {
    throw new PatentGPTError('E_SHAPE', `backward(): gradient ${grad.describe()} does not match ${root.describe()}`);
  }
  const nodes = tape;
  tape = [];
  untracked(() =>
    noGrad(() => {
      const grads = new Map<Tensor, Tensor>();
      grads.set(root, grad ? grad.clone() : Tensor.full(root.shape, 1, { device: root.device }));
      try {
        for (let i = nodes.length - 1; i >= 0; i--) {
          const node = nodes[i]!;
          const g = grads.get(node.output);
          if (!g) continue;
          grads.delete(node.output);
          propagate(node, g, grads);
        }
      } finally {
        for (const g of grads.values()) g.dispose();
        for (const node of nodes) releaseNode(node);
      }
    }),
  );
}

function propagate(node: GradNode, g: Tensor, grads: Map<Tensor, Tensor>): void {
  const inputGrads = scope(() => node.backward(g));
  // Each gradient has one owner: the first input handed a tensor (g itself for a pass-through
  // such as add's) takes it as is; later inputs handed the same tensor get copies, made before
  // any owner can free it.
  const handed = new Set<Tensor>();
  const owned = node.inputs.map((input, i): Tensor | null => {
    const gi = inputGrads[i] ?? null;
    if (!gi || !input.requiresGrad) return null;
    if (gi.size !== input.size) {
      throw new PatentGPTError('E_AUTOGRAD', `backward of ${node.op}: gradient ${gi.describe()} for input ${input.describe()}`);
    }
    if (handed.has(gi)) return gi.clone();
    handed.add(gi);
    return gi;
  });
  for (const gi of inputGrads) if (gi && !handed.has(gi)) gi.dispose(); // gradients no input needs
  if (!handed.has(g)) g.dispose();
  node.inputs.forEach((input, i) => {
    const gi = owned[i];
    if (!gi) return;
    if (input.node === null) accumulateLeaf(input, gi);
    else {
      const existing = grads.get(input);
      if (existing) {
        addon().axpy(existing.storage, existing.offset, gi.storage, gi.offset, 1, gi.size);
        gi.dispose();
      } else grads.set(input, gi.shape === input.shape ? gi : reshaped(gi, input));
    }
  });
}

function accumulateLeaf(leaf: Tensor, gi: Tensor): void {
  if (leaf.grad === null) {
    leaf.grad = reshaped(gi, leaf);
    return;
  }
  addon().axpy(leaf.grad.storage, leaf.grad.offset, gi.storage, gi.offset, 1, gi.size);
  gi.dispose();
}

function reshaped(g: Tensor, like: Tensor): Tensor {
  if (g.shape.length === like.shape.length && g.shape.every((d, i) => d === like.shape[i])) return g;
  const r = g.reshape(like.shape);
  g.dispose();
  return r;
}

function releaseNode(node: GradNode): void {
  for (const t of node.saved) t.release();
  if (node.output.node === node) node.output.node = null;
}
