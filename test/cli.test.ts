import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const cli = (...args: string[]): string =>
  execFileSync(process.execPath, ['--import', 'tsx', new URL('../src/cli/main.ts', import.meta.url).pathname, ...args], { encoding: 'utf8' });

describe('patentgpt CLI', () => {
  it('info --json reports version, SIMD, threads and CUDA status', () => {
    const info = JSON.parse(cli('info', '--json')) as Record<string, unknown>;
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(['avx512', 'avx2', 'scalar']).toContain(info.simd);
    expect(info.threads).toBeGreaterThan(0);
    expect(typeof info.cudaCompiled).toBe('boolean');
    expect(Array.isArray(info.gpus)).toBe(true);
  });

  it('info prints a readable summary and --help lists the commands', () => {
    expect(cli('info')).toMatch(/SIMD:\s+\w+\n.*threads:/s);
    expect(cli('--help')).toMatch(/info/);
  });
});
