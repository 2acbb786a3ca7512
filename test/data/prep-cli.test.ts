// `patentgpt data prep` from the command line: --workers N scans in N threads (0: the main
// thread) and --merge-memory sets the merge's sort buffers, with the same output bytes; a bad
// value is a clear error.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-prep-cli-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const main = path.resolve(import.meta.dirname, '../../src/cli/main.ts');
const cli = (...args: string[]): string => execFileSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8' });

describe('patentgpt data prep', () => {
  it('--workers 2 and --workers 0 give the same shards; a bad count is refused', () => {
    const docs = Array.from({ length: 40 }, (_, i) => ({ id: `d${i}`, text: `document ${i % 30} about a valve with a housing and an inlet, number ${i % 30}` }));
    fs.writeFileSync(path.join(root, 'docs.jsonl'), docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
    const config = (out: string): string => {
      const file = path.join(root, `${out}.json`);
      fs.writeFileSync(file, JSON.stringify({ output: out, inputs: [{ path: 'docs.jsonl', category: 'general', filters: false }], tokenizer: { type: 'byte' }, stages: { s: { weights: { general: 1 } } } }));
      return file;
    };
    const two = cli('data', 'prep', '--config', config('two'), '--workers', '2');
    expect(two).toMatch(/documents in 40, kept 30, dropped 10/);
    expect(two).toMatch(/duplicates: exact 10/);
    cli('data', 'prep', '--config', config('zero'), '--workers', '0', '--merge-memory', '1');
    const shards = (out: string): string[] => fs.readdirSync(path.join(root, out, 's', 'part-0')).sort();
    expect(shards('zero')).toEqual(shards('two'));
    for (const f of shards('two')) expect(fs.readFileSync(path.join(root, 'zero', 's', 'part-0', f)), f).toEqual(fs.readFileSync(path.join(root, 'two', 's', 'part-0', f)));
    const bad = spawnSync(process.execPath, ['--import', 'tsx', main, 'data', 'prep', '--config', config('bad'), '--workers', 'many'], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--workers must be an integer from 0 to 256, got 'many'/);
    expect(fs.existsSync(path.join(root, 'bad'))).toBe(false);
    const bad2 = spawnSync(process.execPath, ['--import', 'tsx', main, 'data', 'prep', '--config', config('bad'), '--merge-memory', '0'], { encoding: 'utf8' });
    expect(bad2.stderr).toMatch(/--merge-memory must be a number of MiB from 1 to 65536, got '0'/);
  });
});
