// Kernel workspaces are reserved when the pool is sized, not inside kernels: a setNumThreads that
// cannot reserve them throws E_NATIVE_OOM and leaves the pool as it was, instead of a kernel
// aborting the process later. Memory is limited for real (ulimit -v in a child process).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const addonPath = fileURLToPath(new URL('../build/Release/patentgpt.node', import.meta.url));
const runnable = process.platform === 'linux' && existsSync(addonPath);
if (!runnable) console.warn('native-workspace.test.ts: skipped (needs Linux and build/Release/patentgpt.node)');

const child = `
const addon = require(${JSON.stringify(addonPath)});
const before = addon.setNumThreads(2);
let code = null, message = '';
try { addon.setNumThreads(1024); } catch (e) { code = e.code; message = e.message; }
const after = addon.info().threads;
const again = addon.setNumThreads(3);
console.log(JSON.stringify({ before, code, message, after, again }));
`;

describe('kernel workspace reservation', () => {
  it.skipIf(!runnable)('setNumThreads without memory for the workers\' workspaces: E_NATIVE_OOM, pool unchanged', () => {
    // 4 GB of address space: Node starts, 1023 workers' workspaces (several MB each) do not fit.
    const r = spawnSync('bash', ['-c', 'ulimit -v 4000000 && exec "$0" -e "$1"', process.execPath, child], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { before: number; code: string | null; message: string; after: number; again: number };
    expect(out.before).toBe(2);
    expect(out.code).toBe('E_NATIVE_OOM');
    expect(out.message).toMatch(/^setNumThreads: out of memory: .*kernel workspace.*setNumThreads/);
    expect(out.after).toBe(2);
    expect(out.again).toBe(3);
  });
});
