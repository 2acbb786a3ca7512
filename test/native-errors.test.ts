// Every error the native addon throws carries a stable err.code (bindings/errors.h), so callers
// branch on the code, never on the message.
import { describe, expect, it } from 'vitest';
import { addon, type NativeSignature } from '../src/native/loader.js';
import { availableDevices } from '../src/native/devices.js';
import { Tensor } from '../src/tensor/index.js';

function codeOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  throw new Error('expected a throw');
}

describe('native error codes', () => {
  const A = addon();

  it('a bad argument to an op binding: E_NATIVE_ARG, whatever the check that refused it', () => {
    const x = Tensor.zeros([4]);
    expect(codeOf(() => A.addForward(x.storage, 0, x.storage, 0, x.storage, 0, 5))).toBe('E_NATIVE_ARG'); // out of bounds
    expect(codeOf(() => (A.scale as (...a: unknown[]) => void)(x.storage, 0, 'two', 4))).toBe('E_NATIVE_ARG'); // type
    expect(codeOf(() => (A.fill as (...a: unknown[]) => void)(x.storage, 0, 1))).toBe('E_NATIVE_ARG'); // arity
    const ids = Tensor.from(Int32Array.from([0, 9]));
    expect(codeOf(() => A.gatherForward(x.storage, 0, x.storage, 0, ids.storage, 0, 1, 4, 2, 1))).toBe('E_NATIVE_ARG'); // index range
    const err = (() => { try { A.addForward(x.storage, 0, x.storage, 0, x.storage, 0, 5); } catch (e) { return e as Error; } })()!;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/^add: (out|a|b) needs 5 elements/); // names the op and the tensor
  });

  it('a freed storage: E_NATIVE_DISPOSED, from an op and from the storage itself', () => {
    const s = new A.Storage(16, 'cpu', true);
    s.free();
    const x = Tensor.zeros([4]);
    expect(codeOf(() => A.scale(s, 0, 2, 4))).toBe('E_NATIVE_DISPOSED');
    expect(codeOf(() => s.read(new Float32Array(4), 0))).toBe('E_NATIVE_DISPOSED');
    expect(codeOf(() => x.storage.copyFrom(s, 0, 0, 16))).toBe('E_NATIVE_DISPOSED');
  });

  it('Storage: bad sizes, devices and ranges are E_NATIVE_ARG; an impossible allocation is E_NATIVE_OOM', () => {
    expect(codeOf(() => new A.Storage(-1))).toBe('E_NATIVE_ARG');
    expect(codeOf(() => new A.Storage(8, 'tpu' as 'cpu'))).toBe('E_NATIVE_ARG');
    const s = new A.Storage(16, 'cpu', true);
    expect(codeOf(() => s.write(new Float32Array(8), 0))).toBe('E_NATIVE_ARG');
    expect(codeOf(() => new A.Storage(9e14, 'cpu', false))).toBe('E_NATIVE_OOM'); // 900 TB: beyond any address space
    s.free();
  });

  // Well-typed arguments for a declared signature, every tensor on `device`.
  const argsOn = (sig: NativeSignature, storage: () => unknown): unknown[] =>
    sig.params.flatMap((p) => {
      if (/^(f32|i32|bf16|f16|tensor)\b/.test(p.type)) return [storage(), 0];
      if (p.type === 'boolean') return [false];
      if (p.type.startsWith("'")) return [/'([^']*)'/.exec(p.type)![1]];
      if (p.type === 'string') return ['f32'];
      return [0];
    });
  const ops = A.signatures().filter((s) => s.what === 'function' && s.params.some((p) => /^(f32|i32|bf16|f16|tensor)\b/.test(p.type)));

  it('every op has a CPU kernel in its table; the kernel devices are what signatures() lists', () => {
    expect(ops.length).toBeGreaterThan(40);
    for (const s of ops) expect(s.devices, s.name).toContain('cpu');
    // CPU storages reach the CPU kernel through the table (all sizes 0: nothing to do).
    const x = Tensor.zeros([4]);
    expect(() => A.rmsnormForward(...(argsOn(ops.find((s) => s.name === 'rmsnormForward')!, () => x.storage) as Parameters<typeof A.rmsnormForward>))).not.toThrow();
  });

  it.skipIf(!availableDevices().includes('cuda'))('a CUDA storage reaching an op with no CUDA kernel: E_NATIVE_DEVICE "no cuda kernel for <op>", from the binding', () => {
    const storages: { free(): void }[] = [];
    const cuda = () => {
      const s = new A.Storage(64, 'cuda', true);
      storages.push(s);
      return s;
    };
    for (const s of ops.filter((o) => !o.devices.includes('cuda'))) {
      const fn = (A as unknown as Record<string, (...a: unknown[]) => unknown>)[s.name]!;
      type NativeError = { code?: unknown; message?: string };
      let err: NativeError | null = null;
      try {
        fn(...argsOn(s, cuda));
      } catch (e) {
        err = e as NativeError; // not `typeof err`: here that is the narrowed `null`
      }
      expect(err?.code, s.name).toBe('E_NATIVE_DEVICE');
      expect(err?.message, s.name).toContain(`no cuda kernel for ${s.name}`);
    }
    storages.forEach((s) => s.free());
  });
});
