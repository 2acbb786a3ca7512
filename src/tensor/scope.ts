// Deterministic memory: tensors made inside scope(fn) are disposed when fn returns, except the
// ones it returns (and those passed to keep()). The tape keeps what backward needs alive by
// reference count, so a scope may end before backward runs.
import type { Tensor } from './tensor.js';

// Innermost last; a null frame (untracked) hides the scopes below it.
const stack: (Set<Tensor> | null)[] = [];

/** Called by every new Tensor: registers it with the innermost active scope. */
export function track(t: Tensor): void {
  stack[stack.length - 1]?.add(t);
}

/** Removes t from the scopes that would dispose it; it then lives until dispose(). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of stack) s?.delete(t);
  return t;
}

/** Runs fn and disposes the tensors it made that are not part of its result. */
export function scope<T>(fn: () => T): T {
  const mine = new Set<Tensor>();
  stack.push(mine);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    stack.pop();
    for (const t of mine) t.dispose();
    throw err;
  }
  stack.pop();
  if (result instanceof Promise) {
    throw new TypeError('scope(fn): fn must be synchronous; await inside, then call scope per step');
  }
  const survivors = new Set<Tensor>();
  collect(result, survivors, 0);
  const parent = stack[stack.length - 1];
  for (const t of mine) {
    if (survivors.has(t)) parent?.add(t);
    else t.dispose();
  }
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

// Tensors reachable from a scope's result: the value itself, arrays, Maps and plain objects.
function collect(value: unknown, out: Set<Tensor>, depth: number): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if (isTensor(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype)
    for (const v of Object.values(value)) collect(v, out, depth + 1);
}

function isTensor(v: object): v is Tensor {
  return (v as { [tensorBrand]?: true })[tensorBrand] === true;
}

export const tensorBrand = Symbol.for('patentgpt.tensor');
