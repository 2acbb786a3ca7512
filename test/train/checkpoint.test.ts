// Checkpoints: atomic (a save that throws midway leaves no step folder), checksummed (a corrupt or
// truncated file is refused by name, latest() falls back to the newest good one), pruned to the
// last N, rank 0 only, and the optimizer state file is valid safetensors that round-trips.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import {
  CheckpointManager,
  OPTIMIZER_FILE,
  decodeOptimizerState,
  loadCheckpoint,
  optimizerStateContent,
  type TrainState,
} from '../../src/train/checkpoint.js';
import type { OptimizerState } from '../../src/train/optimizer.js';
import { writeFileAtomic } from '../../src/util/atomic.js';

let run: string;
beforeEach(() => {
  run = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ckpt-'));
});
afterEach(() => fs.rmSync(run, { recursive: true, force: true }));

const state = (step: number): TrainState => ({ step, tokensSeen: step * 64, data: { batch: step }, configHash: 'abc', rng: [1, 2], extra: { best: 1.5 } });
const optState = (step: number): OptimizerState => ({
  step,
  entries: [
    { name: 'model.embed_tokens.weight', shape: [2, 3], m: Float32Array.from([1, 2, 3, 4, 5, 6]), v: Float32Array.from([6, 5, 4, 3, 2, 1]) },
    { name: 'model.norm.weight', shape: [3], m: Float32Array.from([0.5, -0.5, 1e-9]), v: Float32Array.from([1, 1, 1]) },
  ],
});
const model = (step: number): Buffer => Buffer.from(`weights of step ${step}`.repeat(100));

async function expectCkptError(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PatentGPTError);
  expect((err as PatentGPTError).code).toBe('E_CHECKPOINT');
  for (const part of parts) expect((err as Error).message).toContain(part);
}

describe('checkpoints', () => {
  it('saves and loads every file, state and optimizer state', async () => {
    const mgr = new CheckpointManager(run);
    const streamed = async (sink: { write(c: Uint8Array): Promise<void> }): Promise<void> => {
      for (let i = 0; i < 5; i++) await sink.write(Buffer.from(`chunk ${i};`));
    };
    const dir = await mgr.save(state(10), [
      { name: 'model.safetensors', content: model(10) },
      { name: 'config.json', content: '{"hidden_size": 8}' },
      { name: 'extra.bin', content: streamed },
    ], optState(10));
    expect(dir).toBe(path.join(run, 'checkpoints', 'step-10'));
    expect(fs.readdirSync(path.join(run, 'checkpoints'))).toEqual(['step-10']);
    const ck = await mgr.load(10);
    expect(ck.state).toEqual(state(10));
    expect(ck.files.sort()).toEqual(['config.json', 'extra.bin', 'model.safetensors']);
    expect((await ck.read('model.safetensors')).equals(model(10))).toBe(true);
    expect((await ck.read('extra.bin')).toString()).toBe('chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;');
    expect(await ck.readOptimizer()).toEqual(optState(10));
  });

  it('writes the optimizer state as valid safetensors (8-byte aligned header, F32 data)', async () => {
    const chunks: Uint8Array[] = [];
    await optimizerStateContent(optState(3))({ write: async (c) => void chunks.push(Buffer.from(c)) });
    const bytes = Buffer.concat(chunks);
    const n = Number(bytes.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
    expect(header['m.model.norm.weight']).toEqual({ dtype: 'F32', shape: [3], data_offsets: [48, 60] });
    expect(bytes.byteLength).toBe(8 + n + 4 * 18);
    expect(decodeOptimizerState(bytes, 'x')).toEqual(optState(3));
    expect(() => decodeOptimizerState(bytes.subarray(0, bytes.byteLength - 4), 'opt.safetensors')).toThrow(/opt.safetensors: v.model.norm.weight.data_offsets/);
  });

  it('a save that fails midway leaves no step folder and the previous checkpoint intact', async () => {
    const mgr = new CheckpointManager(run);
    await mgr.save(state(1), [{ name: 'model.safetensors', content: model(1) }]);
    const failing = async (sink: { write(c: Uint8Array): Promise<void> }): Promise<void> => {
      await sink.write(Buffer.alloc(1000, 7));
      throw new Error('killed mid-write');
    };
    await expect(mgr.save(state(2), [{ name: 'model.safetensors', content: failing }])).rejects.toThrow('killed mid-write');
    expect(fs.readdirSync(mgr.dir)).toEqual(['step-1']);
    expect((await mgr.latest())!.step).toBe(1);
  });

  it('a half-written step-N.tmp left by a killed process is ignored and cleaned up', async () => {
    const mgr = new CheckpointManager(run);
    await mgr.save(state(5), [{ name: 'model.safetensors', content: model(5) }]);
    fs.mkdirSync(path.join(mgr.dir, 'step-6.tmp'));
    fs.writeFileSync(path.join(mgr.dir, 'step-6.tmp', 'model.safetensors'), 'half');
    expect(mgr.steps()).toEqual([5]);
    expect((await mgr.latest())!.step).toBe(5);
    await mgr.save(state(7), [{ name: 'model.safetensors', content: model(7) }]);
    expect(fs.readdirSync(mgr.dir).sort()).toEqual(['step-5', 'step-7']);
  });

  it('refuses corrupt, truncated and incomplete checkpoints by file, and latest() falls back', async () => {
    const skipped: string[] = [];
    const mgr = new CheckpointManager(run, { keep: 0, onSkip: (d) => skipped.push(path.basename(d)) });
    for (const s of [1, 2, 3, 4]) await mgr.save(state(s), [{ name: 'model.safetensors', content: model(s) }], optState(s));
    // 4: a flipped byte in the weights
    const w4 = path.join(mgr.stepDir(4), 'model.safetensors');
    const b = fs.readFileSync(w4);
    b[10] = b[10]! ^ 1;
    fs.writeFileSync(w4, b);
    await expectCkptError(mgr.load(4), 'step-4/model.safetensors', 'sha256');
    // 3: a truncated optimizer file
    const o3 = path.join(mgr.stepDir(3), OPTIMIZER_FILE);
    fs.truncateSync(o3, 20);
    await expectCkptError(mgr.load(3), `step-3/${OPTIMIZER_FILE}`, 'size');
    // 2: no checksums.json
    fs.rmSync(path.join(mgr.stepDir(2), 'checksums.json'));
    await expectCkptError(mgr.load(2), 'step-2/checksums.json');
    const ck = await mgr.latest();
    expect(ck!.step).toBe(1);
    expect(skipped).toEqual(['step-4', 'step-3', 'step-2']);
    // a missing file
    fs.rmSync(path.join(mgr.stepDir(1), 'state.json'));
    await expectCkptError(loadCheckpoint(mgr.stepDir(1)), 'step-1/state.json', 'missing');
    expect(await mgr.latest()).toBeNull();
  });

  it('keeps the last N checkpoints', async () => {
    const mgr = new CheckpointManager(run, { keep: 2 });
    for (const s of [10, 20, 30, 40]) await mgr.save(state(s), [{ name: 'model.safetensors', content: model(s) }]);
    expect(mgr.steps()).toEqual([30, 40]);
  });

  it('re-saving a step replaces it only once the new one is complete', async () => {
    const mgr = new CheckpointManager(run);
    await mgr.save(state(3), [{ name: 'model.safetensors', content: model(3) }]);
    await mgr.save({ ...state(3), tokensSeen: 999 }, [{ name: 'model.safetensors', content: Buffer.from('new') }]);
    const ck = await mgr.load(3);
    expect(ck.state.tokensSeen).toBe(999);
    expect((await ck.read('model.safetensors')).toString()).toBe('new');
    expect(fs.readdirSync(mgr.dir)).toEqual(['step-3']);
  });

  it('only rank 0 writes, and reserved or odd file names are refused', async () => {
    expect(await new CheckpointManager(run, { rank: 1 }).save(state(1), [])).toBeNull();
    expect(fs.existsSync(path.join(run, 'checkpoints'))).toBe(false);
    const mgr = new CheckpointManager(run);
    await expect(mgr.save(state(1), [{ name: 'state.json', content: '{}' }])).rejects.toThrow(/written by the checkpoint/);
    await expect(mgr.save(state(1), [{ name: '../x', content: '{}' }])).rejects.toThrow(/plain name/);
  });

  it('refuses a state.json whose step does not match its folder', async () => {
    const mgr = new CheckpointManager(run);
    await mgr.save(state(8), []);
    fs.renameSync(mgr.stepDir(8), mgr.stepDir(9));
    await expectCkptError(mgr.load(9), 'state.json', 'step');
  });
});

describe('writeFileAtomic', () => {
  it('replaces the target whole, and a failing writer leaves the old file and no temp file', async () => {
    const f = path.join(run, 'sub', 'a.json');
    await writeFileAtomic(f, 'old');
    const r = await writeFileAtomic(f, 'new content');
    expect(r.size).toBe(11);
    expect(fs.readFileSync(f, 'utf8')).toBe('new content');
    await expect(
      writeFileAtomic(f, async (sink) => {
        await sink.write(Buffer.from('partial'));
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(fs.readFileSync(f, 'utf8')).toBe('new content');
    expect(fs.readdirSync(path.dirname(f))).toEqual(['a.json']);
  });
});
