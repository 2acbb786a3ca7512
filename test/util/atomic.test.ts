// Write errors of the atomic writers name the file they were writing and keep the system code
// (ENOSPC, EISDIR, ...): a full disk during a checkpoint must say which file, not just "write".
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { FileWriteError, writeContent, writeFileAtomic, writeFileAtomicSync } from '../../src/util/atomic.js';

const dir = mkdtempSync(join(tmpdir(), 'pg-atomic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The error a call throws (sync or async). */
async function caught(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

function expectNamed(err: unknown, target: string, errno: string): void {
  expect(err).toBeInstanceOf(PatentGPTError);
  expect(err).toBeInstanceOf(FileWriteError);
  const e = err as FileWriteError;
  expect(e.code).toBe('E_IO');
  expect(e.errnoCode).toBe(errno);
  expect(e.path).toBe(target);
  expect(e.message).toContain(target);
  expect(e.message).toContain(errno);
  expect((e.cause as NodeJS.ErrnoException).code).toBe(errno);
}

describe('atomic writes name the file in a system error', () => {
  it('a folder in the way of the target (async and sync)', async () => {
    const target = join(dir, 'occupied');
    mkdirSync(join(target, 'child'), { recursive: true }); // rename(tmp, target) fails: a non-empty folder
    const a = await caught(() => writeFileAtomic(target, 'x'));
    expect(['EISDIR', 'ENOTEMPTY', 'EEXIST']).toContain((a as FileWriteError).errnoCode);
    expectNamed(a, target, (a as FileWriteError).errnoCode!);
    const s = await caught(() => writeFileAtomicSync(target, 'x'));
    expectNamed(s, target, (s as FileWriteError).errnoCode!);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]); // no temp file left
  });

  it('a file in the way of the target folder', async () => {
    writeFileSync(join(dir, 'plain'), 'a file');
    const target = join(dir, 'plain', 'sub', 'f.json');
    expectNamed(await caught(() => writeFileAtomic(target, '{}')), target, 'ENOTDIR');
    expectNamed(await caught(() => writeFileAtomicSync(target, '{}')), target, 'ENOTDIR');
  });

  it.skipIf(!existsSync('/dev/full'))('ENOSPC (writing to /dev/full) names the file', async () => {
    // /dev/full fails every write with ENOSPC: the error a full disk gives.
    const fh = await fsp.open('/dev/full', 'w');
    try {
      expectNamed(await caught(() => writeContent(fh, new Uint8Array(4096), '/dev/full')), '/dev/full', 'ENOSPC');
    } finally {
      await fh.close();
    }
  });

  it('an error of the content itself passes through unchanged', async () => {
    const own = new PatentGPTError('E_DATA', 'bad shard');
    expect(await caught(() => writeFileAtomic(join(dir, 'c.bin'), async () => { throw own; }))).toBe(own);
    expect(existsSync(join(dir, 'c.bin'))).toBe(false);
  });
});
