// The demo command's flags: --minutes scales the steps, bad values are refused by name.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MINUTES, demoBudget } from '../../src/demo/index.js';

function cli(args: string[]): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', stdio: 'pipe' }) };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, out: e.stdout + e.stderr };
  }
}

describe('patentgpt demo flags', () => {
  it('--minutes scales every stage\'s steps', () => {
    const base = demoBudget();
    expect(base.minutes).toBe(DEFAULT_MINUTES);
    const double = demoBudget({ minutes: 2 * DEFAULT_MINUTES });
    for (const [k, v] of Object.entries(base.steps)) expect(double.steps[k as keyof typeof base.steps]).toBe(2 * v);
    const short = demoBudget({ minutes: 1 });
    expect(short.steps.stage1).toBeLessThan(base.steps.stage1);
    expect(short.steps.ppo).toBeGreaterThanOrEqual(2);
  });

  it('refuses a bad --minutes or --align before doing anything', () => {
    const m = cli(['demo', '--minutes', '0', '--out', '/nonexistent/x']);
    expect(m.code).not.toBe(0);
    expect(m.out).toMatch(/--minutes.*positive number/);
    const a = cli(['demo', '--align', 'rlhf', '--out', '/nonexistent/x']);
    expect(a.code).not.toBe(0);
    expect(a.out).toMatch(/'ppo' or 'dpo'/);
    expect(cli(['demo', '--help']).out).toMatch(/--minutes <n>[\s\S]*--align <method>/);
  });
});
