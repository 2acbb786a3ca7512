// Throws random argument combinations at every native function, constructor and method, with
// the arity and argument kinds the addon declares for it (signatures(), from the declarations in
// bindings/*.cpp), and checks that each call either succeeds or throws an Error carrying an
// E_NATIVE_* code, and that the process survives. An Error without a code is a binding bug (a
// body reading an argument under another name or kind than declared). Functions declared in the
// generated TypeScript types but missing natively, or exported natively but undeclared, fail.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addon, type NativeSignature, type NativeStorage } from '../src/native/loader.js';
import { availableDevices } from '../src/native/devices.js';
import { Rng } from '../src/tensor/index.js';

// A timing loop, not an argument check: gemmPeakGflops runs for up to 10 s per call. The global
// switches (setNumThreads, setSimdLevel) are fuzzed and restored afterwards.
const SKIP = new Set(['gemmPeakGflops']);

const A = addon() as unknown as Record<string, unknown>;
const sigs = addon().signatures();

/** The Addon interface's members in the committed generated types. */
function typedMembers(): string[] {
  const src = readFileSync(new URL('../src/native/addon-types.ts', import.meta.url), 'utf8');
  const body = src.slice(src.indexOf('export interface Addon {'), src.indexOf('\n}\n', src.indexOf('export interface Addon {')));
  return [...body.matchAll(/^ {2}(\w+)[(:]/gm)].map((m) => m[1]!);
}

const TENSOR = /^(f32|i32|bf16|f16|tensor)( \| null)?$/;
const ARRAYS: Record<string, new (n: number) => ArrayBufferView> = {
  Uint8Array, Uint32Array, Int32Array, Float32Array, Float64Array, BigInt64Array, ArrayBufferView: Float32Array,
};

describe('fuzz', () => {
  it('the native exports, the declarations and the generated TypeScript types name the same functions', () => {
    const declared = sigs.filter((s) => s.what === 'function' || s.what === 'constructor').map((s) => s.name).sort();
    const exported = Object.keys(A).filter((k) => typeof A[k] === 'function').sort();
    expect(exported, 'native exports without a declaration (bindings/*.cpp kDecls)').toEqual(declared);
    expect(typedMembers().sort(), 'src/native/addon-types.ts vs the addon (npm run gen:addon-types)').toEqual(exported);
    for (const s of sigs.filter((x) => x.what === 'method' || x.what === 'getter'))
      expect(declared, `${s.name}: its class is declared`).toContain(s.name.split('.')[0]);
    expect(declared.length).toBeGreaterThan(60);
  });

  it('every native function, constructor and method survives random arguments of its declared kinds', async () => {
    const rng = new Rng(1234);
    const { threads, simd } = addon().info();
    const { Storage } = addon();
    const disposed = new Storage(64);
    disposed.free();
    const cuda = availableDevices().includes('cuda');
    const weird = [undefined, null, NaN, Infinity, -1, 1.5, 2 ** 53, -(2 ** 40), 'x', {}, [], () => 0, disposed, true, 1n];
    const storages: NativeStorage[] = [];
    const storage = (): NativeStorage => {
      const s = new Storage(4 * rng.int(96), cuda && rng.uniform() < 0.1 ? 'cuda' : 'cpu', true);
      storages.push(s);
      return s;
    };
    const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;
    const number = (name: string): number => {
      if (name === 'bytes' || name === 'threads' || name === 'maxPieces') return rng.int(64); // sizes that allocate or spawn
      return rng.uniform() < 0.85 ? rng.int(9) : pick([0, -3, 1e9, 0.5, -100, 2 ** 31]);
    };
    // One parameter's JS values (a tensor gives two); zeros: every size 0 and every tensor valid,
    // so the body reads all of its arguments (a name or kind read unlike its declaration throws).
    const values = (p: NativeSignature['params'][number], zeros: boolean): unknown[] => {
      if (!zeros && rng.uniform() < 0.08) return TENSOR.test(p.type) ? [pick(weird), 0] : [pick(weird)];
      if (TENSOR.test(p.type)) {
        if (!zeros && p.type.endsWith('null') && rng.uniform() < 0.3) return [null, 0];
        return [storage(), zeros || rng.uniform() < 0.8 ? 0 : rng.int(40)];
      }
      if (p.type === 'f32[]') {
        // A list of tensors ({ storage, offset } each); zeros: an empty list (every size is 0).
        if (zeros) return [[]];
        const entry = (): unknown => (rng.uniform() < 0.9 ? { storage: storage(), offset: rng.uniform() < 0.8 ? 0 : pick([3, -1, 1.5, NaN]) } : pick(weird));
        return [Array.from({ length: rng.int(7) }, entry)];
      }
      if (p.type in ARRAYS) {
        const Ctor = zeros || rng.uniform() < 0.9 ? ARRAYS[p.type]! : pick(Object.values(ARRAYS));
        return [new Ctor(zeros ? 1 : rng.int(24))];
      }
      if (p.type.startsWith("'")) {
        const options = [...p.type.matchAll(/'([^']*)'/g)].map((m) => m[1]!);
        return [zeros || rng.uniform() < 0.8 ? pick(options) : 'nope'];
      }
      switch (p.type) {
        case 'boolean':
          return [rng.uniform() < 0.5];
        case 'string':
          return [pick(['f32', 'bf16', 'f16', 'i32', 'nope'])];
        case 'string[]':
          return [rng.uniform() < 0.8 ? ['a', 'b'] : [1, 'x']];
        case 'Storage':
          return [storage()];
        default: // int, size, number
          return [zeros && p.type !== 'number' ? 0 : number(p.name)];
      }
    };
    const argsOf = (s: NativeSignature, zeros: boolean): unknown[] => {
      const args = s.params.flatMap((p) => values(p, zeros));
      if (!zeros && rng.uniform() < 0.03) args.pop(); // wrong arity
      if (!zeros && rng.uniform() < 0.02) args.push(0);
      return args;
    };
    let calls = 0;
    let threw = 0;
    const pending: Promise<unknown>[] = [];
    const attempt = (what: string, fn: () => unknown): unknown => {
      calls++;
      try {
        const r = fn();
        if (r instanceof Promise) pending.push(r.catch((err: unknown) => expect(String((err as { code?: string }).code), `${what} rejected`).toMatch(/^E_NATIVE_/)));
        return r;
      } catch (err) {
        threw++;
        expect(err, `${what} threw a non-Error`).toBeInstanceOf(Error);
        expect(String((err as { code?: unknown }).code), `${what}: ${(err as Error).message}`).toMatch(/^E_NATIVE_/);
        return undefined;
      }
    };
    // Instances for the methods: a fresh one per call of a class's constructor that succeeds.
    const instances: Record<string, () => object | undefined> = {
      Storage: () => storage() as unknown as object,
      BpeTrainer: () => new (addon().BpeTrainer)(rng.uniform() < 0.5, false),
      BpeEncoder: () => {
        const pieces = new TextEncoder().encode('<unk>ab');
        return new (addon().BpeEncoder)(pieces, BigInt64Array.from([0n, 5n, 6n, 7n]), Float32Array.from([0, -1, -2]),
          Int32Array.from([2, 1, 1]), 0, false, true, true, true);
      },
    };
    for (const s of sigs) {
      if (SKIP.has(s.name)) continue;
      for (let i = 0; i < 300; i++) {
        const zeros = i === 0;
        if (s.what === 'function') {
          const fn = A[s.name] as (...a: unknown[]) => unknown;
          attempt(s.name, () => fn(...argsOf(s, zeros)));
        } else if (s.what === 'constructor') {
          const Ctor = A[s.name] as new (...a: unknown[]) => { free?: () => void };
          const made = attempt(s.name, () => new Ctor(...argsOf(s, zeros))) as { free?: () => void } | undefined;
          made?.free?.();
        } else {
          const [cls, member] = s.name.split('.') as [string, string];
          const self = instances[cls]!() as Record<string, unknown>;
          if (s.what === 'getter') attempt(s.name, () => self[member]);
          else attempt(s.name, () => (self[member] as (...a: unknown[]) => unknown).call(self, ...argsOf(s, zeros)));
        }
      }
      for (const st of storages.splice(0)) if (!st.disposed) st.free();
    }
    await Promise.all(pending);
    addon().setNumThreads(threads);
    addon().setSimdLevel(simd);
    expect(calls).toBeGreaterThan(10000);
    expect(threw).toBeGreaterThan(0);
  });
});
