// Argument checks shared by the ops: each failure names the op and the tensors involved.
import { PatentGPTError } from '../errors.js';
import { hasKernel, kernelDevices } from '../native/devices.js';
import type { Addon } from '../native/loader.js';
import type { DType } from './dtype.js';
import type { Tensor } from './tensor.js';

export function expectDType(op: string, name: string, t: Tensor, ...dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype))
    throw new PatentGPTError('E_DTYPE', `${op}: ${name} is ${t.describe()}, expected dtype ${dtypes.join(' or ')}`);
}

export function expectRank(op: string, name: string, t: Tensor, ...ranks: number[]): void {
  if (!ranks.includes(t.shape.length))
    throw new PatentGPTError('E_SHAPE', `${op}: ${name} is ${t.describe()}, expected ${ranks.join(' or ')} dimensions`);
}

/** Exact shape match; -1 in `shape` matches any size. */
export function expectShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d === -1 || d === t.shape[i]);
  if (!ok) throw new PatentGPTError('E_SHAPE', `${op}: ${name} is ${t.describe()}, expected shape [${shape.map((d) => (d === -1 ? '*' : d)).join(', ')}]`);
}

export function expectSameShape(op: string, a: Tensor, b: Tensor, names = ['a', 'b']): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    throw new PatentGPTError('E_SHAPE', `${op}: ${names[0]} ${a.describe()} and ${names[1]} ${b.describe()} differ in shape`);
}

/**
 * All named tensors on one device; otherwise E_DEVICE naming the op, the first tensor and one on
 * another device, with both devices. Nullish entries (optional inputs) are skipped.
 */
export function expectSameDevice(op: string, tensors: Readonly<Record<string, Tensor | null | undefined>>): void {
  let first: [string, Tensor] | null = null;
  for (const name in tensors) {
    const t = tensors[name];
    if (!t) continue;
    if (!first) first = [name, t];
    else if (t.device !== first[1].device)
      throw new PatentGPTError('E_DEVICE', `${op}: ${first[0]} is on ${first[1].device} and ${name} on ${t.device} (${first[0]} ${first[1].describe()}, ${name} ${t.describe()}); move them to one device with .to('${first[1].device}') or Module.to()`);
  }
}

/** A native function (its binding's kernel table names the devices it runs on). */
export type NativeOp = Exclude<keyof Addon, 'Storage' | 'BpeTrainer' | 'BpeEncoder'>;

/**
 * The device seam of every op: the tensors share one device, and each native function the op
 * calls has a kernel there (the binding's kernel table, from signatures()); otherwise E_DEVICE
 * naming the op and the tensor, before anything is allocated. Mixed devices are named first.
 */
export function expectKernel(op: string, kernels: NativeOp | readonly NativeOp[], ...ts: Tensor[]): void {
  if (ts.some((t) => t.device !== ts[0]!.device)) expectSameDevice(op, Object.fromEntries(ts.map((t, i) => [`input ${i}`, t])));
  const t = ts[0];
  if (!t) return;
  for (const fn of typeof kernels === 'string' ? [kernels] : kernels)
    if (!hasKernel(fn, t.device))
      throw new PatentGPTError('E_DEVICE', `${op}: no ${t.device} kernel yet for ${t.describe()} (${fn} runs on ${kernelDevices(fn).join(', ') || 'no device'}); move it with .to('cpu')`);
}

export function expectPositiveFinite(op: string, name: string, v: number): void {
  if (!Number.isFinite(v) || v <= 0) throw new PatentGPTError('E_ARGUMENT', `${op}: ${name} must be a positive finite number, got ${v}`);
}
