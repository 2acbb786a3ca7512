// Throws random argument combinations at every native function and checks that each call
// either succeeds or throws a JS Error, and that the process survives. The signatures are read
// from src/tensor/addon.ts, so a new binding is fuzzed as soon as it is declared there.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addon, type NativeStorage } from '../src/tensor/addon.js';
import { Rng } from '../src/tensor/index.js';

type Kind = 'storage' | 'offset' | 'number' | 'boolean' | 'string';

function signatures(): Map<string, Kind[]> {
  const src = readFileSync(new URL('../src/tensor/addon.ts', import.meta.url), 'utf8');
  const body = src.slice(src.indexOf('export interface Addon'));
  const out = new Map<string, Kind[]>();
  for (const m of body.matchAll(/^\s+(\w+)\(([^)]*)\):/gms)) {
    const params = m[2]!.split(',').map((p) => p.trim()).filter(Boolean);
    out.set(m[1]!, params.map((p) => {
      const type = p.split(':')[1]!.trim();
      if (type === 'S') return 'storage';
      if (type === 'O') return 'offset';
      if (type === 'boolean') return 'boolean';
      if (type === 'string' || type.startsWith("'")) return 'string';
      return 'number';
    }));
  }
  return out;
}

// gemmPeakGflops is a timing loop: valid random arguments (up to 1024 threads for 10 s) run for minutes.
const SKIP = new Set(['info', 'memoryStats', 'resetPeakMemory', 'setNumThreads', 'setSimdLevel', 'gemmPeakGflops']);

describe('fuzz', () => {
  const addonObj = addon() as unknown as Record<string, (...args: unknown[]) => unknown>;
  const sigs = signatures();

  it('finds the native functions to fuzz', () => {
    expect(sigs.size).toBeGreaterThan(10);
    for (const name of sigs.keys()) if (!SKIP.has(name) && name in addonObj) expect(typeof addonObj[name]).toBe('function');
  });

  it('every native function survives random arguments', () => {
    const rng = new Rng(1234);
    const { Storage } = addon();
    const disposed = new Storage(64);
    disposed.free();
    const weird = [undefined, null, NaN, Infinity, -1, 1.5, 2 ** 53, -(2 ** 40), 'x', {}, [], () => 0, disposed, true];
    const storages: NativeStorage[] = [];
    const storage = (): NativeStorage => {
      const s = new Storage(4 * rng.int(96), 'cpu', true);
      storages.push(s);
      return s;
    };
    const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;
    const value = (kind: Kind): unknown => {
      if (rng.uniform() < 0.08) return pick(weird);
      switch (kind) {
        case 'storage':
          return storage();
        case 'offset':
          return rng.uniform() < 0.8 ? 0 : rng.int(40);
        case 'boolean':
          return rng.uniform() < 0.5;
        case 'string':
          return pick(['f32', 'bf16', 'f16', 'i32', 'nope']);
        case 'number':
          return rng.uniform() < 0.85 ? rng.int(9) : pick([0, -3, 1e9, 0.5, -100, 2 ** 31]);
      }
    };
    let calls = 0;
    let threw = 0;
    for (const [name, kinds] of sigs) {
      const fn = addonObj[name];
      if (SKIP.has(name) || typeof fn !== 'function') continue;
      for (let i = 0; i < 400; i++) {
        const args = kinds.map(value);
        if (rng.uniform() < 0.03) args.pop(); // wrong arity
        calls++;
        try {
          fn(...args);
        } catch (err) {
          threw++;
          expect(err, `${name} threw a non-Error`).toBeInstanceOf(Error);
          expect((err as Error).message.length).toBeGreaterThan(0);
        }
      }
      for (const s of storages.splice(0)) s.free();
    }
    expect(calls).toBeGreaterThan(1000);
    expect(threw).toBeGreaterThan(0);
  });
});
