// The NCCL engine where this machine allows: asking for NCCL without it (or without a GPU) gives a
// clear E_UNSUPPORTED saying what to install, never a crash or a hang; the torchrun-style id
// exchange (the TCP rendezvous at MASTER_ADDR:MASTER_PORT) carries rank 0's 128 bytes to another
// process; the collectives route CPU tensors to MPI and CUDA tensors to NCCL. The collectives over
// CUDA tensors themselves need a GPU and libnccl: scripts/gpu-check.sh runs them.
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { allReduceTensors, engineFor, GradientBuckets, MpiDataParallel, NcclCommunicator, ncclStatus, shareBytes, type MpiCommunicator } from '../../src/distributed/index.js';
import { Tensor } from '../../src/tensor/index.js';
import { mpiMissing, mpirunScript } from './mpi-helpers.js';

const repo = new URL('../../', import.meta.url).pathname;
const child = path.join(repo, 'test/distributed/nccl-child.ts');

interface Out { rank: number; hex?: string; code?: string; message?: string; ok?: boolean }

function run(mode: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: Out | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, mode], { cwd: repo, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c));
    p.stderr.on('data', (c: Buffer) => (stderr += c));
    p.on('close', (code) => {
      const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      resolve({ code, out: line ? (JSON.parse(line) as Out) : null, stderr });
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const torchrun = (rank: number, world: number, port: number): NodeJS.ProcessEnv => ({
  RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port),
});

const noNccl = ncclStatus().error !== null;

describe('NCCL engine without NCCL', () => {
  it.skipIf(!noNccl)('a rank that asks for NCCL where libnccl is missing gets E_UNSUPPORTED naming what to install, and exits cleanly', async () => {
    const r = await run('init', { ...torchrun(0, 1, 1) });
    expect(r.code, r.stderr).toBe(3);
    expect(r.out?.code).toBe('E_UNSUPPORTED');
    expect(r.out?.message).toMatch(/libnccl\.so\.2/);
    expect(r.out?.message).toMatch(/nvidia-nccl-cu13/);
    expect(r.out?.message).toMatch(/libnccl2/);
  });

  it('PATENTGPT_NCCL naming a missing file: the error names that file, even with 2 ranks (no rendezvous is attempted)', async () => {
    const missing = '/nonexistent/libnccl-test.so.2';
    const r = await run('init', { ...torchrun(1, 2, 1), PATENTGPT_NCCL: missing });
    expect(r.code, r.stderr).toBe(3);
    expect(r.out?.code).toBe('E_UNSUPPORTED');
    expect(r.out?.message).toContain(missing);
    expect(r.out?.message).toMatch(/PATENTGPT_NCCL/);
  });
});

describe('TCP rendezvous (torchrun-style NCCL bootstrap)', () => {
  it("2 processes: rank 1 receives rank 0's 128 bytes over MASTER_ADDR:MASTER_PORT", async () => {
    const port = await freePort();
    // rank 1 first: it must retry until rank 0 listens
    const r1 = run('rendezvous', torchrun(1, 2, port));
    await new Promise((r) => setTimeout(r, 300));
    const r0 = run('rendezvous', torchrun(0, 2, port));
    const [a, b] = await Promise.all([r0, r1]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(a.out?.hex).toMatch(/^[0-9a-f]{256}$/);
    expect(b.out?.hex).toBe(a.out?.hex);
  });

  it('3 ranks in one process: every rank gets the same bytes', async () => {
    const port = await freePort();
    const payload = Uint8Array.from({ length: 128 }, (_, i) => (i * 37 + 11) & 255);
    const got = await Promise.all([0, 1, 2].map((rank) => shareBytes({ rank, worldSize: 3, addr: '127.0.0.1', port, bytes: 128, timeoutMs: 10_000, ...(rank === 0 ? { payload } : {}) })));
    for (const g of got) expect(Array.from(g)).toEqual(Array.from(payload));
  });

  it('a missing peer: E_DIST_TIMEOUT naming the rank, within the timeout', async () => {
    const port = await freePort();
    await expect(shareBytes({ rank: 1, worldSize: 2, addr: '127.0.0.1', port, bytes: 128, timeoutMs: 600 })).rejects.toMatchObject({ code: 'E_DIST_TIMEOUT', message: expect.stringMatching(/^rank 1: no rendezvous from rank 0 at 127\.0\.0\.1:\d+/) });
    await expect(shareBytes({ rank: 0, worldSize: 3, addr: '127.0.0.1', port, bytes: 128, timeoutMs: 600, payload: new Uint8Array(128) })).rejects.toMatchObject({ code: 'E_DIST_TIMEOUT', message: expect.stringContaining('rank(s) 1, 2 did not reach') });
  });
});

describe('NCCL id over MPI (mpirun/srun launches)', () => {
  it.skipIf(mpiMissing !== null)("2 MPI ranks: rank 1 holds rank 0's 128 bytes after the exchange", () => {
    const r = mpirunScript(2, child, ['mpi-id']);
    expect(r.status, r.stderr).toBe(0);
    const outs = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Out).sort((a, b) => a.rank - b.rank);
    expect(outs.map((o) => o.rank)).toEqual([0, 1]);
    expect(outs[0]!.hex).toMatch(/^[0-9a-f]{256}$/);
    expect(outs[1]!.hex).toBe(outs[0]!.hex);
  });
});

describe('routing by device', () => {
  // No CUDA tensor can exist on a machine without a GPU: a CPU tensor reporting device 'cuda'
  // stands in for one, to check where the dispatcher sends it (never reaching a kernel).
  const cudaLike = (values: number[]): Tensor => Object.defineProperty(Tensor.from(values), 'device', { value: 'cuda' });
  const mpi = { rank: 0, size: 1 } as unknown as MpiCommunicator;
  const nccl = Object.create(NcclCommunicator.prototype) as NcclCommunicator;

  it('CPU tensors go to MPI, CUDA tensors to NCCL; a group without the engine a device needs says which', () => {
    expect(engineFor('allReduce', { mpi, nccl }, Tensor.from([1, 2, 3]))).toEqual({ mpi });
    expect(engineFor('allReduce', { mpi, nccl }, cudaLike([1, 2]))).toEqual({ nccl });
    expect(() => engineFor('allReduce', mpi, cudaLike([1]))).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/CUDA tensors go through NCCL, and this process group has no NCCL communicator/) }));
    expect(() => engineFor('allReduce', nccl, Tensor.from([1]))).toThrow(/CPU tensors go through MPI, and this process group has no MPI communicator/);
    expect(() => allReduceTensors({ mpi, nccl }, [Tensor.from([1]), cudaLike([1])])).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
  });

  it('DDP buckets: CUDA gradients ask for an NcclCommunicator; an NCCL engine refuses CPU parameters, takes ZeRO-2 owners', () => {
    expect(() => new GradientBuckets([cudaLike([1, 2])], mpi)).toThrow(/give GradientBuckets an NcclCommunicator/);
    expect(() => new GradientBuckets([Tensor.from([1, 2])], nccl)).toThrow(/NCCL engine reduces f32 CUDA gradients/);
    expect(() => new GradientBuckets([cudaLike([1, 2])], nccl, { owner: () => 0 })).not.toThrow();
    expect(() => new GradientBuckets([cudaLike([1, 2])], nccl)).not.toThrow();
  });

  it.skipIf(!noNccl)('an MPI job whose model is on CUDA takes NCCL for the gradients: here, without libnccl, E_UNSUPPORTED saying what to install', () => {
    const dp = new MpiDataParallel(mpi, { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, source: 'openmpi' });
    expect(() => dp.attach([['w', cudaLike([1, 2])]])).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/nvidia-nccl-cu13/) }));
    // CPU parameters: the MPI buckets, as before (no NCCL asked for)
    expect(() => dp.attach([['w', Tensor.from([1, 2])]])).not.toThrow();
    expect(dp.nccl).toBeNull();
  });
});
