// The README's TypeScript example runs as written (with the package import pointed at src/).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('its TypeScript example runs', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThan(0);
    const entry = new URL('../src/index.ts', import.meta.url).pathname;
    for (const code of blocks) {
      const file = join(mkdtempSync(join(tmpdir(), 'pg-readme-')), 'example.ts');
      writeFileSync(file, code.replaceAll(`from 'patentgpt'`, `from '${entry}'`));
      const out = execFileSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8' });
      expect(out.length).toBeGreaterThan(0);
    }
  });
});
