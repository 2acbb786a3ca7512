// Watching a CLI run in a child process (kill -9 / SIGINT resume tests): its metrics, its files'
// hashes, and waiting for what it writes.
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readMetrics } from '../../src/train/metrics.js';

export const trainLosses = (runDir: string): number[] =>
  readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => r.loss !== undefined).map((r) => r.loss!);

export const sha = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

export const exited = (child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));

/** Resolves once cond() holds; rejects when the child exits first or after timeoutMs. */
export function waitFor(cond: () => boolean, child: ChildProcess, what: string, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const iv = setInterval(() => {
      if (cond()) {
        clearInterval(iv);
        resolve();
      } else if (child.exitCode !== null || Date.now() - t0 > timeoutMs) {
        clearInterval(iv);
        reject(new Error(`${what}: ${child.exitCode !== null ? `the child exited (${child.exitCode}) first` : 'timed out'}`));
      }
    }, 10);
  });
}
