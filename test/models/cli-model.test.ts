import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPretrained, preset } from '../../src/index.js';

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8' });

describe('patentgpt model', () => {
  it('info --preset prints the published LLaMA-2 parameter counts', () => {
    for (const [name, total] of [['llama2-7b', 6_738_415_616], ['llama2-13b', 13_015_864_320], ['llama2-70b', 68_976_648_192]] as const) {
      const r = cli('model', 'info', '--preset', name, '--json');
      expect(r.status, r.stderr).toBe(0);
      const info = JSON.parse(r.stdout) as { parameters: { total: number }; flopsPerToken: { training: number; seqLen: number } };
      expect(info.parameters.total).toBe(total);
      expect(info.flopsPerToken.seqLen).toBe(4096);
    }
    const text = cli('model', 'info', '--preset', 'llama2-7b-55k', '--seq-len', '16384').stdout;
    expect(text).toMatch(/parameters\s+6,929,256,448/);
    expect(text).toMatch(/FLOPs per token at T = 16384 \(PaLM: 6N \+ 12 L T d/);
  });

  it('refuses an unknown preset and a bad config with a message and exit code 1', () => {
    const r = cli('model', 'info', '--preset', 'llama3-8b');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown model preset "llama3-8b"; known presets: tiny/);
    expect(cli('model', 'list').stdout).toMatch(/llama2-70b-55k\s+69\.36 G/);
  });

  it('init writes a folder that loads back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgpt-cli-'));
    try {
      execFileSync(process.execPath, ['--import', 'tsx', main, 'model', 'init', '--preset', 'tiny', '--out', join(dir, 'm'), '--seed', '3']);
      const m = await loadPretrained(join(dir, 'm'));
      expect(m.config).toEqual(preset('tiny').config);
      m.dispose();
      const info = JSON.parse(cli('model', 'info', '--config', join(dir, 'm', 'config.json'), '--json').stdout) as { parameters: { total: number } };
      expect(info.parameters.total).toBe(106_816);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
