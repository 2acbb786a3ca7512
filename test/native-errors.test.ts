// Every error the native addon throws carries a stable err.code (bindings/errors.h), so callers
// branch on the code, never on the message.
import { describe, expect, it } from 'vitest';
import { addon } from '../src/tensor/addon.js';
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
});
