// Deterministic memory: tensors made inside scope(fn) are disposed when fn ends, except the ones
// its result reaches (at any depth) and those passed to keep(). The autograd graph keeps what
// backward needs alive by reference count, so a scope may end before backward runs.
//
// Which scope a new tensor belongs to: synchronous scopes nest on a stack (cheap: no allocation
// beyond the frame); an async scope also binds its frame to the async context
// (AsyncLocalStorage), so two async scopes running at once each own what they make, across
// awaits. At every await the stack is empty (a synchronous scope cannot span one), so a tensor
// made in an async continuation falls through to the async context's frame.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Tensor } from './tensor.js';

interface Frame {
  readonly tensors: Set<Tensor>;
  /** The scope that was current when this one began (receives this one's survivors). */
  readonly parent: Frame | null;
  closed: boolean;
}

// Innermost last; a null frame (untracked) hides the scopes below it.
const stack: (Frame | null)[] = [];
// Created by the first async scope, so programs that never use one pay nothing for it.
let asyncFrames: AsyncLocalStorage<Frame> | null = null;

function current(): Frame | null {
  let f = stack.length > 0 ? stack[stack.length - 1]! : (asyncFrames?.getStore() ?? null);
  // An un-awaited async scope may outlive its parent: its tensors go to the nearest open one.
  while (f !== null && f.closed) f = f.parent;
  return f;
}

/** Called by every new Tensor: registers it with the innermost active scope. */
export function track(t: Tensor): void {
  current()?.tensors.add(t);
}

/** Removes t from the scopes that would dispose it; it then lives until dispose(). */
export function keep<T extends Tensor>(t: T): T {
  for (const f of stack) f?.tensors.delete(t);
  for (let f = asyncFrames?.getStore() ?? null; f !== null; f = f.parent) f.tensors.delete(t);
  return t;
}

/**
 * Runs fn and disposes the tensors it made that its result does not reach. The result is
 * searched at any depth through arrays, Maps (keys and values), Sets, plain objects and class
 * instances' own enumerable fields, cycles included; tensors held elsewhere (private #fields,
 * closures) must be passed to keep(). An async fn returns a promise: `await scope(async () => ...)`
 * disposes what fn made once it settles, on success or throw, keeping what it resolves to.
 */
export function scope<T>(fn: () => Promise<T>): Promise<T>;
export function scope<T>(fn: () => T): T;
export function scope<T>(fn: () => T | Promise<T>): T | Promise<T> {
  const frame: Frame = { tensors: new Set(), parent: current(), closed: false };
  if (isAsyncFunction(fn)) return runAsync(frame, fn as () => Promise<T>);
  stack.push(frame);
  let result: T | Promise<T>;
  try {
    result = fn();
  } catch (err) {
    stack.pop();
    close(frame, undefined);
    throw err;
  }
  stack.pop();
  // A plain function that returns a promise: its tensors are released when it settles (those
  // that its .then callbacks make belong to the caller's scope; pass an async function instead).
  if (isThenable(result)) return settle(frame, result);
  close(frame, result);
  return result;
}

/** Runs fn with no scope tracking (tensors it makes are owned by the caller alone). */
export function untracked<T>(fn: () => T): T {
  stack.push(null);
  try {
    return fn();
  } finally {
    stack.pop();
  }
}

/**
 * @internal autograd registers what happens to a tensor a scope disposes (its graph node is
 * released when nothing can back-propagate through it any more).
 */
export function onScopeDispose(hook: (t: Tensor) => void): void {
  disposeHook = hook;
}
let disposeHook: ((t: Tensor) => void) | null = null;

function runAsync<T>(frame: Frame, fn: () => Promise<T>): Promise<T> {
  asyncFrames ??= new AsyncLocalStorage<Frame>();
  // The frame is on the stack for fn's synchronous part and in the async context after it.
  stack.push(frame);
  let promise: Promise<T>;
  try {
    promise = asyncFrames.run(frame, fn);
  } finally {
    stack.pop();
  }
  return settle(frame, promise);
}

async function settle<T>(frame: Frame, promise: PromiseLike<T>): Promise<T> {
  let result: T;
  try {
    result = await promise;
  } catch (err) {
    close(frame, undefined);
    throw err;
  }
  close(frame, result);
  return result;
}

// Disposes the frame's tensors that `result` does not reach; the survivors join the parent.
function close(frame: Frame, result: unknown): void {
  frame.closed = true;
  const mine = frame.tensors;
  if (mine.size === 0) return;
  const survivors = new Set<Tensor>();
  if (result !== null && typeof result === 'object') collect(result, mine, survivors);
  let parent = frame.parent;
  while (parent !== null && parent.closed) parent = parent.parent;
  for (const t of mine) {
    if (survivors.has(t)) parent?.tensors.add(t);
    else {
      if (t.node !== null) disposeHook?.(t);
      t.dispose();
    }
  }
  mine.clear();
}

// Tensors of `mine` reachable from value, stopping as soon as all of them are found. Shallow
// levels (where results live) are walked recursively with no bookkeeping; below kShallow the walk
// goes on iteratively with a visited set, so deep, shared and cyclic structures end. Typed
// arrays and buffers hold no tensors and are not walked (they may be large); neither are a
// tensor's own fields (its .grad).
const kShallow = 8;

interface Walk {
  readonly mine: Set<Tensor>;
  readonly out: Set<Tensor>;
  deep: object[] | null;
}

function collect(value: object, mine: Set<Tensor>, out: Set<Tensor>): void {
  const w: Walk = { mine, out, deep: null };
  walk(value, w, 0);
  if (w.deep === null) return;
  const seen = new Set<object>();
  const todo = w.deep;
  while (todo.length > 0 && out.size < mine.size) {
    const v = todo.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    children(v, w, kShallow);
  }
}

function walk(v: unknown, w: Walk, depth: number): void {
  if (v === null || typeof v !== 'object' || w.out.size === w.mine.size) return;
  if (isTensor(v)) {
    if (w.mine.has(v)) w.out.add(v);
  } else if (depth >= kShallow) (w.deep ??= []).push(v);
  else children(v, w, depth + 1);
}

function children(v: object, w: Walk, depth: number): void {
  if (Array.isArray(v)) for (let i = 0; i < v.length; i++) walk(v[i], w, depth);
  else if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return;
  else if (v instanceof Map)
    for (const [k, x] of v) {
      walk(k, w, depth);
      walk(x, w, depth);
    }
  else if (v instanceof Set) for (const x of v) walk(x, w, depth);
  else for (const k of Object.keys(v)) walk((v as Record<string, unknown>)[k], w, depth);
}

function isTensor(v: object): v is Tensor {
  return (v as { [tensorBrand]?: true })[tensorBrand] === true;
}

function isAsyncFunction(fn: () => unknown): boolean {
  return (fn as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === 'AsyncFunction';
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

export const tensorBrand = Symbol.for('patentgpt.tensor');
