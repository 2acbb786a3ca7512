// Where this package lives on disk and its version, found the same way from src/ and dist/src/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PatentGPTError } from './errors.js';

let root: string | null = null;

/** The nearest folder above this file whose package.json names patentgpt. */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'patentgpt') return (root = dir);
    const parent = dirname(dir);
    if (parent === dir) throw new PatentGPTError('E_ADDON_LOAD', 'cannot find the patentgpt package root');
    dir = parent;
  }
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
