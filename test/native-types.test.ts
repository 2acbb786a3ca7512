// src/native/addon-types.ts is generated from the built addon's signatures(); this fails while
// the committed file is stale (a binding's declaration changed without `npm run gen:addon-types`).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without declarations
import { outputPath, render } from '../scripts/gen-addon-types.mjs';
import { addon } from '../src/native/loader.js';

describe('generated addon types', () => {
  it('src/native/addon-types.ts is what the built addon declares', () => {
    const expected = (render as (s: unknown) => string)(addon().signatures());
    const committed = readFileSync(outputPath as string, 'utf8');
    expect(committed === expected, 'src/native/addon-types.ts is stale: rebuild the addon and run npm run gen:addon-types').toBe(true);
  });

  it('a tensor parameter becomes a storage and an offset; sizes, typed arrays and enums keep their types', () => {
    const text = (render as (s: unknown) => string)([
      { name: 'demo', label: 'demo', what: 'function', result: 'void', devices: ['cpu'], params: [
        { name: 'x', type: 'f32', optional: false }, { name: 'g', type: 'f32 | null', optional: false },
        { name: 'n', type: 'size', optional: false }, { name: 'ids', type: 'Int32Array', optional: false },
        { name: 'mode', type: "'a' | 'b'", optional: false }] },
    ]);
    expect(text).toContain("demo(x: NativeStorage /* f32 */, xOffset: number, g: NativeStorage | null /* f32 */, gOffset: number, n: number /* size */, ids: Int32Array, mode: 'a' | 'b'): void;");
    expect(text).toContain('demo: { x: [0, true], g: [2, true], n: [4, false], ids: [5, false], mode: [6, false] },');
  });
});
