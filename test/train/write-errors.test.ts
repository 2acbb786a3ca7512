// Write errors (issue 13, hardening): a full disk or a file size limit while the trainer writes a
// checkpoint or appends to metrics.jsonl is an E_IO error that names the file, not a bare
// "EFBIG: file too large, write". The limit is real: the child runs under `ulimit -f`, so the
// kernel refuses the write (EFBIG, the same path as ENOSPC).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = new URL('../../', import.meta.url).pathname;
const tsx = pathToFileURL(createRequire(path.join(repo, 'package.json')).resolve('tsx')).href;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-wfail-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Runs a TypeScript snippet in a child limited to files of `kib` KiB; returns what it printed. */
function underFileLimit(kib: number, code: string): { out: string; status: number | null } {
  const script = path.join(root, `s${Math.random().toString(36).slice(2)}.mts`);
  fs.writeFileSync(script, code);
  const r = spawnSync('bash', ['-c', `ulimit -f ${kib} && exec "${process.execPath}" --import ${tsx} "${script}"`], { encoding: 'utf8', cwd: root });
  return { out: r.stdout + r.stderr, status: r.status };
}

const report = `const show = (e: any) => console.log(JSON.stringify({ code: e.code, message: e.message }));`;

describe('write errors name the file', () => {
  it('a checkpoint that cannot be written: E_IO naming the file and the checkpoint; the previous one stays', () => {
    const run = path.join(root, 'ck');
    const r = underFileLimit(4, `
      import { CheckpointManager } from ${JSON.stringify(path.join(repo, 'src/train/checkpoint.ts'))};
      ${report}
      const mgr = new CheckpointManager(${JSON.stringify(run)});
      const st = (step: number) => ({ step, tokensSeen: 0, data: null, configHash: 'h' });
      await mgr.save(st(1), [{ name: 'model.safetensors', content: Buffer.alloc(1000, 1) }]);
      try { await mgr.save(st(2), [{ name: 'model.safetensors', content: Buffer.alloc(64 * 1024, 2) }]); console.log('saved'); } catch (e) { show(e); }
    `);
    const err = JSON.parse(r.out.trim().split('\n').at(-1)!) as { code: string; message: string };
    expect(err.code, r.out).toBe('E_IO');
    expect(err.message).toContain(path.join(run, 'checkpoints', 'step-2.tmp', 'model.safetensors'));
    expect(err.message).toMatch(/cannot write the checkpoint .*step-2 \(EFBIG: file size limit exceeded\)/);
    expect(fs.readdirSync(path.join(run, 'checkpoints'))).toEqual(['step-1']);
  });

  it('metrics.jsonl that cannot be appended to: E_IO naming the file and the step', () => {
    const run = path.join(root, 'metrics');
    fs.mkdirSync(run);
    const r = underFileLimit(1, `
      import { MetricsLog } from ${JSON.stringify(path.join(repo, 'src/train/metrics.ts'))};
      ${report}
      const log = MetricsLog.open(${JSON.stringify(run)});
      try { for (let step = 1; step < 1000; step++) log.append({ step, loss: 1.5, note: 'x'.repeat(40) }); console.log('appended'); } catch (e) { show(e); }
    `);
    const err = JSON.parse(r.out.trim().split('\n').at(-1)!) as { code: string; message: string };
    expect(err.code, r.out).toBe('E_IO');
    expect(err.message).toMatch(new RegExp(`^${path.join(run, 'metrics.jsonl').replace(/[.]/g, '\\.')}: cannot append the record of step \\d+ \\(EFBIG`));
  });
});
