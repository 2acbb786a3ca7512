// Autograd over per-loss graphs: ops record a node (inputs, what backward needs, a backward
// closure) when gradients are wanted; backward(root) walks only the nodes reachable from root
// (depth-first over node.inputs, so O(nodes + edges)), accumulates into leaf .grad and releases
// the nodes of that graph that nothing else still consumes. Two losses built from shared
// parameters therefore backward independently (reward-model pairs, PPO policy and value losses,
// DPO chosen/rejected): a node shared by both is reference-counted by its live consumers and
// survives the first backward. Ops are coarse and fused, so graphs stay short.
import { PatentGPTError } from '../errors.js';
import { addon } from '../native/loader.js';
import { onScopeDispose, scope, untracked } from './scope.js';
import { Tensor } from './tensor.js';

/** Returns one gradient per input (null where an input needs none). */
export type BackwardFn = (grad: Tensor) => readonly (Tensor | null)[];

export interface BackwardOptions {
  /** Keep the graph (and what it saved) for another backward through it. */
  retainGraph?: boolean;
}

interface GradNode {
  op: string;
  inputs: readonly Tensor[];
  output: Tensor;
  saved: readonly Tensor[];
  backward: BackwardFn;
  /** Live recorded nodes that read this node's output (one per edge). */
  uses: number;
  /** A scope disposed the output: once nothing uses the node, no backward can reach it. */
  orphan: boolean;
  /** Not yet released. */
  alive: boolean;
  /** Walk bookkeeping, kept on the node so a walk allocates nothing per node. */
  mark: number;
  cursor: number;
  // Intrusive list of live nodes (clearTape, tapeLength) with O(1) removal.
  prev: GradNode | null;
  next: GradNode | null;
}

let head: GradNode | null = null;
let live = 0;
let walkEpoch = 0;
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
 * output. `saved` are tensors backward reads (the graph keeps them alive until it is released);
 * inputs are held for their metadata only.
 */
export function record(op: string, output: Tensor, inputs: readonly Tensor[], saved: readonly Tensor[], backward: BackwardFn): Tensor {
  if (gradDisabled > 0 || !inputs.some((t) => t.requiresGrad)) return output;
  for (const t of saved) t.retain();
  const node: GradNode = {
    op, inputs: [...inputs], output, saved: [...saved], backward,
    uses: 0, orphan: false, alive: true, mark: 0, cursor: 0, prev: null, next: head,
  };
  for (const t of inputs) {
    const n = t.node as GradNode | null;
    if (n !== null) n.uses++;
  }
  if (head !== null) head.prev = node;
  head = node;
  live++;
  output.requiresGrad = true;
  output.node = node;
  return output;
}

/** Number of recorded nodes not yet released, over all graphs (for tests and leak hunts). */
export function tapeLength(): number {
  return live;
}

/** Releases every recorded graph without running backward (e.g. after a forward whose loss is not needed). */
export function clearTape(): void {
  while (head !== null) releaseNode(head);
}

/**
 * Back-propagates from root (a scalar unless `grad` is given) into the .grad of the leaves it
 * depends on, through the nodes reachable from root only; then releases those nodes unless
 * `retainGraph`, except the ones another live graph still uses.
 */
export function backward(root: Tensor, grad?: Tensor, opts: BackwardOptions = {}): void {
  const rootNode = root.node as GradNode | null;
  if (!root.requiresGrad || rootNode === null) {
    throw new PatentGPTError('E_AUTOGRAD', `backward(): ${root.describe()} does not require grad: no recorded op produced it, or its graph was ` +
      `released (by an earlier backward: pass { retainGraph: true } to it; or by the end of a scope() that made it and did not return it)`);
  }
  if (!grad && root.size !== 1) {
    throw new PatentGPTError('E_AUTOGRAD', `backward(): ${root.describe()} is not a scalar; pass the gradient of the output`);
  }
  if (grad && (grad.size !== root.size || grad.dtype !== 'f32')) {
    throw new PatentGPTError('E_SHAPE', `backward(): gradient ${grad.describe()} does not match ${root.describe()}`);
  }
  const order = topologicalOrder(rootNode);
  untracked(() =>
    noGrad(() => {
      const grads = new Map<Tensor, Tensor>();
      grads.set(root, grad ? grad.clone() : Tensor.full(root.shape, 1, { device: root.device }));
      try {
        for (let i = order.length - 1; i >= 0; i--) {
          const node = order[i]!;
          const g = grads.get(node.output);
          if (!g) continue;
          grads.delete(node.output);
          propagate(node, g, grads);
        }
      } finally {
        for (const g of grads.values()) g.dispose();
        if (!opts.retainGraph) releaseWalked(order);
      }
    }),
  );
}

// Post-order depth-first walk from root: every node comes after the nodes its inputs came from.
// Iterative (graphs of deep models are thousands of nodes long), with the visit mark and the
// input cursor stored on the nodes.
function topologicalOrder(root: GradNode): GradNode[] {
  const epoch = ++walkEpoch;
  const order: GradNode[] = [];
  const stack: GradNode[] = [root];
  root.mark = epoch;
  root.cursor = 0;
  while (stack.length > 0) {
    const node = stack[stack.length - 1]!;
    if (node.cursor < node.inputs.length) {
      const next = node.inputs[node.cursor++]!.node as GradNode | null;
      if (next !== null && next.mark !== epoch) {
        next.mark = epoch;
        next.cursor = 0;
        stack.push(next);
      }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order;
}

// Consumers before their inputs: a node is released once no live node uses it, so a node that
// another graph still reads keeps its saved tensors until that graph's backward (or clearTape).
function releaseWalked(order: GradNode[]): void {
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i]!;
    if (node.uses === 0 && node.alive) releaseNode(node);
  }
}

/**
 * Called by scope() for each tensor it disposes: a node whose output was dropped and
 * that no live node uses can never be back-propagated, so it is released now (with the inputs'
 * nodes that become unreachable the same way). Side computations recorded inside a step (a
 * metric built from parameters, a loss that is never back-propagated) then do not pile up.
 */
function outputDropped(t: Tensor): void {
  const node = t.node as GradNode | null;
  if (node === null) return;
  node.orphan = true;
  if (node.uses > 0) return;
  const stack: GradNode[] = [node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (!n.alive) continue;
    releaseNode(n);
    for (const input of n.inputs) {
      const m = input.node as GradNode | null;
      if (m !== null && m.uses === 0 && m.orphan) stack.push(m);
    }
  }
}

onScopeDispose(outputDropped);

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
  node.alive = false;
  if (node.prev !== null) node.prev.next = node.next;
  else head = node.next;
  if (node.next !== null) node.next.prev = node.prev;
  node.prev = node.next = null;
  live--;
  for (const input of node.inputs) {
    const n = input.node as GradNode | null;
    if (n !== null) n.uses--;
  }
  for (const t of node.saved) t.release();
  if (node.output.node === node) node.output.node = null;
}
