// The layers of ../shared/DESIGN.md: a module under src/<layer> imports only from layers below its
// own (dependencies point down), so e.g. data never reaches into infer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const src = new URL('../src/', import.meta.url).pathname;

// Higher ranks may import lower ones; equal ranks (siblings) may not import each other.
const RANK: Record<string, number> = {
  cli: 10, serve: 9, demo: 9, distributed: 9, train: 8, eval: 7, export: 7, infer: 6, data: 5, tokenizer: 4, models: 4, nn: 3,
  tensor: 2, text: 2, native: 1, util: 0,
};

// Narrower than rank for some layers: the HTTP server stands on the engine only (DESIGN: serve is
// the HTTP server over the engine), never on training or evaluation.
const MAY_IMPORT: Record<string, readonly string[]> = {
  serve: ['infer', 'tokenizer', 'models', 'util'],
};

function filesOf(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesOf(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []);
}

function layerOf(file: string): string | null {
  const rel = path.relative(src, file).split(path.sep);
  return rel.length > 1 ? rel[0]! : null; // src/*.ts (index, errors, package) stand outside the layers
}

describe('layers', () => {
  it('every layer is ranked', () => {
    const dirs = fs.readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(dirs.filter((d) => !(d in RANK))).toEqual([]);
  });

  it('imports point down only', () => {
    const bad: string[] = [];
    for (const file of filesOf(src)) {
      const from = layerOf(file);
      if (!from) continue;
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
        const target = layerOf(path.resolve(path.dirname(file), m[1]!));
        if (!target || target === from) continue;
        const allowed = MAY_IMPORT[from] ? MAY_IMPORT[from]!.includes(target) : RANK[target]! < RANK[from]!;
        if (!allowed) bad.push(`${path.relative(src, file)} imports ${m[1]} (${from} -> ${target})`);
      }
    }
    expect(bad).toEqual([]);
  });
});
