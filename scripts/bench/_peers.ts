// Finding the Python peers (numpy/OpenBLAS, torch) for side-by-side benchmarks and fixtures.
// PATENTGPT_PYTHON names an interpreter; otherwise .venv-ref/bin/python in the package root.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/package.js';

/**
 * True where a missing peer must fail the run instead of skipping its comparison: CI sets
 * PATENTGPT_REQUIRE_PEERS=1 (and scripts/install-peers.sh installs them), so a live comparison
 * cannot go green by skipping.
 */
export function peersRequired(): boolean {
  return process.env.PATENTGPT_REQUIRE_PEERS === '1';
}

/** Returns `why` for a test to skip with, or throws where peers are required. */
export function missingPeer(why: string): string {
  if (peersRequired()) throw new Error(`PATENTGPT_REQUIRE_PEERS=1 and a peer is missing: ${why}`);
  return why;
}

/**
 * A Python interpreter with `modules` importable, or null (with the reason in `why`); throws
 * instead of returning null where peers are required.
 */
export function findPython(modules: string[]): { python: string | null; why: string } {
  const candidates = [process.env.PATENTGPT_PYTHON, join(packageRoot(), '.venv-ref', 'bin', 'python'), 'python3'].filter(
    (p): p is string => !!p && (p === 'python3' || existsSync(p)),
  );
  for (const python of candidates) {
    try {
      execFileSync(python, ['-c', modules.map((m) => `import ${m}`).join('; ')], { stdio: 'ignore' });
      return { python, why: '' };
    } catch {
      /* try the next */
    }
  }
  return { python: null, why: missingPeer(`no Python with ${modules.join(', ')} (set PATENTGPT_PYTHON or run scripts/install-peers.sh, see ../shared/PEERS.md)`) };
}

/** Runs a Python snippet and parses the JSON it prints on its last line. */
export function runPythonJson<T>(python: string, code: string, env: Record<string, string> = {}): T {
  const out = execFileSync(python, ['-c', code], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 28 });
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}
