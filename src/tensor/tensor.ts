// Tensor: a shape, a dtype and a device over natively owned storage.
//
// Tensors are contiguous; views (reshape, narrow along the first dimension) share storage.
// Memory is released deterministically: dispose(), the end of a scope(), or the end of
// backward for what the tape saved. The native Storage's own finalizer only catches leaks.
import { PatentGPTError } from '../errors.js';
import { deviceUnavailableReason } from '../native/devices.js';
import { addon, type NativeStorage } from '../native/loader.js';
import { backward as runBackward, record, type BackwardOptions } from './autograd.js';
import { bytesPerElement, isFloat, rawArray, type DType, type Device, type RawArray } from './dtype.js';
import { Rng } from './random.js';
import { tensorBrand, track } from './scope.js';

/** Reference-counted native storage shared by a tensor and its views. */
class SharedStorage {
  refs = 1;
  constructor(readonly native: NativeStorage) {}
  release(): void {
    if (--this.refs === 0) this.native.free();
  }
}

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
  /** Takes dtype and device from this tensor (an explicit dtype or device wins). */
  like?: Tensor;
}

/** Throws E_DEVICE naming what is missing when `device` cannot hold tensors here (src/native's device registry). */
export function checkDeviceAvailable(device: Device, what = 'Tensor'): void {
  if (device === 'cpu') return;
  if (device !== 'cuda') throw new PatentGPTError('E_DEVICE', `${what}: unknown device '${String(device)}' (expected 'cpu' or 'cuda')`);
  const why = deviceUnavailableReason(device);
  if (why) throw new PatentGPTError('E_DEVICE', `${what}: cannot use device 'cuda': ${why}; use 'cpu' (patentgpt info shows what the binary has)`);
}

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: Shape, what = 'shape'): void {
  for (const d of shape)
    if (!Number.isSafeInteger(d) || d < 0)
      throw new PatentGPTError('E_SHAPE', `${what} [${shape.join(', ')}] must hold non-negative integers`);
}

export class Tensor {
  readonly [tensorBrand] = true as const;
  readonly shape: Shape;
  readonly dtype: DType;
  readonly device: Device;
  /** Number of elements. */
  readonly size: number;
  /** Offset of the first element in the storage, in elements. */
  readonly offset: number;
  /** Set on leaves that gradients should reach (parameters), and on outputs of recorded ops. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf after backward(). */
  grad: Tensor | null = null;
  /** Optional label used in error messages and checkpoints. */
  name?: string;

  /** @internal the tape node that produced this tensor, while the tape holds it. */
  node: object | null = null;
  readonly #shared: SharedStorage;
  #refs = 1;
  #ownerReleased = false;

  /** @internal use the static constructors. */
  constructor(shared: SharedStorage, shape: Shape, dtype: DType, offset = 0) {
    this.#shared = shared;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = shared.native.device;
    this.size = numel(shape);
    this.offset = offset;
    track(this);
  }

  // ---- construction ----

  /** Uninitialised (in practice zeroed on CPU only when asked) storage of the given shape. */
  static empty(shape: Shape, opts: TensorOptions = {}, zero = false): Tensor {
    checkShape(shape);
    const dtype = opts.dtype ?? opts.like?.dtype ?? 'f32';
    const device = opts.device ?? opts.like?.device ?? 'cpu';
    checkDeviceAvailable(device);
    const native = new (addon().Storage)(numel(shape) * bytesPerElement(dtype), device, zero);
    const t = new Tensor(new SharedStorage(native), shape, dtype);
    if (opts.requiresGrad) t.requiresGrad = true;
    return t;
  }

  static zeros(shape: Shape, opts: TensorOptions = {}): Tensor {
    return Tensor.empty(shape, opts, true);
  }

  static full(shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, opts);
    if (t.dtype === 'f32') addon().fill(t.storage, t.offset, value, t.size);
    else t.write(filled(t.dtype, t.size, value));
    return t;
  }

  /** A tensor holding a copy of `data` (a typed array or numbers); f32 unless told. */
  static from(data: ArrayLike<number> | RawArray, shape?: Shape, opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? defaultDType(data);
    const s = shape ?? [data.length];
    if (numel(s) !== data.length)
      throw new PatentGPTError('E_SHAPE', `Tensor.from: ${data.length} values do not fill shape [${s.join(', ')}]`);
    const t = Tensor.empty(s, { ...opts, dtype });
    if (dtype === 'f32') t.write(data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>));
    else t.write(toRaw(data, dtype));
    return t;
  }

  /** Normal(mean, std) values from a seeded generator. */
  static randn(shape: Shape, opts: TensorOptions & { seed?: number; std?: number; mean?: number } = {}): Tensor {
    const rng = new Rng(opts.seed ?? 0);
    const std = opts.std ?? 1;
    const mean = opts.mean ?? 0;
    const values = new Float32Array(numel(shape));
    for (let i = 0; i < values.length; i++) values[i] = mean + std * rng.normal();
    return castFromF32(values, shape, opts);
  }

  /** Uniform values in [low, high) from a seeded generator. */
  static uniform(shape: Shape, opts: TensorOptions & { seed?: number; low?: number; high?: number } = {}): Tensor {
    const rng = new Rng(opts.seed ?? 0);
    const low = opts.low ?? 0;
    const high = opts.high ?? 1;
    const values = new Float32Array(numel(shape));
    for (let i = 0; i < values.length; i++) values[i] = low + (high - low) * rng.uniform();
    return castFromF32(values, shape, opts);
  }

  // ---- storage access (for src/tensor and its ops) ----

  /** @internal the native storage, for op implementations in src/tensor. */
  get storage(): NativeStorage {
    if (this.disposed) throw new PatentGPTError('E_DISPOSED', `tensor ${this.describe()} was used after dispose()`);
    return this.#shared.native;
  }

  get disposed(): boolean {
    return this.#refs === 0;
  }

  get byteOffset(): number {
    return this.offset * bytesPerElement(this.dtype);
  }

  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  /** "f32[2, 3] cpu": how errors name a tensor. */
  describe(): string {
    return `${this.dtype}[${this.shape.join(', ')}]${this.device === 'cpu' ? '' : ' ' + this.device}`;
  }

  /**
   * Copies raw values in (a typed array of this dtype's raw kind): all `size` of them, or, with
   * `at`, data.length values from element `at` on (a partial write of a reused buffer).
   */
  write(data: RawArray, at?: number): this {
    if (at === undefined ? data.length !== this.size : !(Number.isInteger(at) && at >= 0 && at + data.length <= this.size))
      throw new PatentGPTError('E_SHAPE', `write: ${data.length} values${at === undefined ? '' : ` at element ${at}`} into ${this.describe()}`);
    this.#expectRaw('write', data);
    this.storage.write(data, (this.offset + (at ?? 0)) * bytesPerElement(this.dtype));
    return this;
  }

  /**
   * Copies into.length raw values from element `at` (default 0) into an existing typed array of
   * this dtype's raw kind (no allocation: for buffers read every step); returns it.
   */
  read<A extends RawArray>(into: A, at = 0): A {
    if (!(Number.isInteger(at) && at >= 0 && at + into.length <= this.size))
      throw new PatentGPTError('E_SHAPE', `read: ${into.length} values at element ${at} from ${this.describe()}`);
    this.#expectRaw('read', into);
    this.storage.read(into, (this.offset + at) * bytesPerElement(this.dtype));
    return into;
  }

  #expectRaw(op: string, data: RawArray): void {
    const expected = rawArray(this.dtype, 0).constructor;
    if (data.constructor !== expected)
      throw new PatentGPTError('E_DTYPE', `${op}: ${data.constructor.name} for ${this.describe()} (needs ${expected.name})`);
  }

  /** A copy of the raw values (bf16/f16 as their Uint16 bits). */
  toRaw(): RawArray {
    const out = rawArray(this.dtype, this.size);
    this.storage.read(out, this.byteOffset);
    return out;
  }

  /** A copy of the values: Float32Array for float dtypes, Int32Array / BigInt64Array for ints. */
  toArray(): Float32Array | Int32Array | BigInt64Array {
    if (this.dtype === 'bf16' || this.dtype === 'f16') {
      const f = this.to('f32');
      const out = f.toRaw() as Float32Array;
      f.dispose();
      return out;
    }
    return this.toRaw() as Float32Array | Int32Array | BigInt64Array;
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new PatentGPTError('E_SHAPE', `item() needs one element, ${this.describe()} has ${this.size}`);
    const v = this.toArray()[0]!;
    return typeof v === 'bigint' ? Number(v) : v;
  }

  // ---- views and copies ----

  /** Same storage, new shape (one dimension may be -1). Recorded for autograd. */
  reshape(shape: Shape): Tensor {
    const resolved = resolveShape(shape, this.size, this.shape);
    const out = this.view(resolved, this.offset);
    return record('reshape', out, [this], [], (g) => [g.reshape(this.shape)]);
  }

  /** Rows [start, start + length) of the first dimension, sharing storage. Recorded for autograd. */
  narrow(start: number, length: number): Tensor {
    const rows = this.shape[0] ?? 1;
    if (this.shape.length === 0 || !Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > rows)
      throw new PatentGPTError('E_SHAPE', `narrow(${start}, ${length}) outside the first dimension of ${this.describe()}`);
    const rowSize = rows === 0 ? 0 : this.size / rows;
    const out = this.view([length, ...this.shape.slice(1)], this.offset + start * rowSize);
    return record('narrow', out, [this], [], (g) => {
      const full = Tensor.zeros(this.shape, { device: this.device });
      full.storage.copyFrom(g.storage, full.byteOffset + start * rowSize * bytesPerElement(this.dtype), g.byteOffset, g.byteLength);
      return [full];
    });
  }

  /** A new tensor with a copy of the values (not recorded: use ops for differentiable copies). */
  clone(): Tensor {
    const out = Tensor.empty(this.shape, { dtype: this.dtype, device: this.device });
    out.storage.copyFrom(this.storage, out.byteOffset, this.byteOffset, this.byteLength);
    return out;
  }

  /** Same values as a tensor that no gradient flows through (shares storage). */
  detach(): Tensor {
    return this.view(this.shape, this.offset);
  }

  /** Converts to another dtype (f32 <-> bf16/f16, i32 <-> i64) or device; a copy. */
  to(target: DType | Device): Tensor {
    if (target === 'cpu' || target === 'cuda') {
      const out = Tensor.empty(this.shape, { dtype: this.dtype, device: target });
      out.storage.copyFrom(this.storage, out.byteOffset, this.byteOffset, this.byteLength);
      return out;
    }
    if (target === this.dtype) return this.clone();
    const out = Tensor.empty(this.shape, { dtype: target, device: this.device });
    if (isFloat(target) && isFloat(this.dtype)) {
      if (this.dtype !== 'f32' && target !== 'f32') {
        const f = this.to('f32');
        const r = f.to(target);
        f.dispose();
        out.dispose();
        return r;
      }
      addon().cast(out.storage, out.offset, target, this.storage, this.offset, this.dtype, this.size);
      return out;
    }
    if ((this.dtype === 'i32' && target === 'i64') || (this.dtype === 'i64' && target === 'i32')) {
      const src = this.toRaw();
      const dst = rawArray(target, this.size);
      for (let i = 0; i < src.length; i++) {
        const v = src[i]!;
        if (target === 'i64') (dst as BigInt64Array)[i] = BigInt(v);
        else {
          const n = Number(v);
          if (n > 2147483647 || n < -2147483648)
            throw new PatentGPTError('E_ARGUMENT', `to('i32'): value ${n} at ${i} does not fit in i32`);
          (dst as Int32Array)[i] = n;
        }
      }
      out.write(dst);
      return out;
    }
    out.dispose();
    throw new PatentGPTError('E_DTYPE', `to('${target}') from ${this.describe()} is not supported`);
  }

  // ---- autograd ----

  /**
   * Back-propagates from this tensor (a scalar unless `grad` is given) through its own graph into
   * leaf .grad; `{ retainGraph: true }` keeps the graph for another backward.
   */
  backward(grad?: Tensor, opts?: BackwardOptions): void {
    runBackward(this, grad, opts);
  }

  // ---- lifetime ----

  /** Releases this handle's share of the storage; idempotent. */
  dispose(): void {
    if (this.#ownerReleased) return;
    this.#ownerReleased = true;
    this.release();
  }

  /** @internal an extra reference, held by the tape for tensors backward needs. */
  retain(): this {
    if (this.#refs === 0) throw new PatentGPTError('E_DISPOSED', `retain() of disposed ${this.describe()}`);
    this.#refs++;
    return this;
  }

  /** @internal drops a reference taken by retain(). */
  release(): void {
    if (this.#refs === 0) return;
    if (--this.#refs === 0) this.#shared.release();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private view(shape: Shape, offset: number): Tensor {
    const shared = this.#shared;
    if (this.disposed) throw new PatentGPTError('E_DISPOSED', `view of disposed ${this.describe()}`);
    shared.refs++;
    return new Tensor(shared, shape, this.dtype, offset);
  }
}

function resolveShape(shape: Shape, size: number, from: Shape): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free >= 0) {
    const rest = numel(out.filter((_, i) => i !== free));
    out[free] = rest === 0 ? 0 : size / rest;
  }
  checkShape(out);
  if (numel(out) !== size)
    throw new PatentGPTError('E_SHAPE', `reshape: [${from.join(', ')}] (${size} elements) cannot become [${shape.join(', ')}]`);
  return out;
}

function defaultDType(data: ArrayLike<number> | RawArray): DType {
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof BigInt64Array) return 'i64';
  return 'f32';
}

function toRaw(data: ArrayLike<number> | RawArray, dtype: DType): RawArray {
  if (data instanceof BigInt64Array) {
    if (dtype === 'i64') return data;
    throw new PatentGPTError('E_DTYPE', `Tensor.from: BigInt64Array can only make an i64 tensor`);
  }
  const values = data as ArrayLike<number>;
  switch (dtype) {
    case 'i32':
      return data instanceof Int32Array ? data : Int32Array.from(values);
    case 'i64':
      return BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
    default:
      throw new PatentGPTError('E_DTYPE', `Tensor.from: ${dtype} values come from f32 (use .to('${dtype}'))`);
  }
}

function filled(dtype: DType, n: number, value: number): RawArray {
  if (dtype === 'i64') return new BigInt64Array(n).fill(BigInt(Math.trunc(value)));
  if (dtype === 'i32') return new Int32Array(n).fill(value);
  throw new PatentGPTError('E_DTYPE', `full: use an f32 tensor and .to('${dtype}')`);
}

function castFromF32(values: Float32Array, shape: Shape, opts: TensorOptions): Tensor {
  const f = Tensor.from(values, shape, { device: opts.device, requiresGrad: false });
  const dtype = opts.dtype ?? 'f32';
  const out = dtype === 'f32' ? f : f.to(dtype);
  if (out !== f) f.dispose();
  if (opts.requiresGrad) out.requiresGrad = true;
  return out;
}
