// The ptxas resource check of the CUDA kernels (scripts/ptxas-check.mjs; ctest runs it over the
// build's reports): its verdicts on reports it is given, and, where nvcc is installed (CI has
// it, without a GPU), on real compiles: a kernel made to spill and one without launch bounds are
// refused, the project's kernels pass.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without declarations
import * as check from '../scripts/ptxas-check.mjs';

interface Kernel { mangled: string; arch: string; registers: number; smem: number; spillStores: number; spillLoads: number }
interface Bounds { threads: number; minBlocks: number; dynamicSmem: number }
const parseReport = check.parseReport as (text: string) => Kernel[];
const launchBoundsOf = check.launchBoundsOf as (source: string, constants: Map<string, string>) => Map<string, Bounds>;
const constantsOf = check.constantsOf as (texts: string[]) => Map<string, string>;
const checkKernels = check.checkKernels as (file: string, k: Kernel[], b: Map<string, Bounds>) => { failures: string[] };

const root = path.resolve(__dirname, '..');
const hasNvcc = spawnSync(process.env.NVCC ?? 'nvcc', ['--version']).status === 0;

const report = (name: string, regs: number, spills: number, smem = 0): string =>
  [
    `ptxas info    : Compiling entry function '_ZN2pg4cuda${name.length}${name}EPfl' for 'sm_90'`,
    `ptxas info    : Function properties for _ZN2pg4cuda${name.length}${name}EPfl`,
    `    0 bytes stack frame, ${spills} bytes spill stores, ${spills} bytes spill loads`,
    `ptxas info    : Used ${regs} registers, used 1 barriers, ${smem} bytes smem`,
  ].join('\n');

const source = `
constexpr int kThreads = 256;
__global__ void __launch_bounds__(kThreads) row_kernel(float* out, long n) {}
// dynamic smem: 200 * 1024 bytes
__global__ void __launch_bounds__(2 * kThreads, 2) big_kernel(float* out, long n) {}
__global__ void loose_kernel(float* out, long n) {}
`;

describe('ptxas check: verdicts', () => {
  const bounds = launchBoundsOf(source, constantsOf([source]));

  it('reads launch bounds through constants, the minimum blocks and declared dynamic shared memory', () => {
    expect(bounds.get('row_kernel')).toEqual({ threads: 256, minBlocks: 1, dynamicSmem: 0 });
    expect(bounds.get('big_kernel')).toEqual({ threads: 512, minBlocks: 2, dynamicSmem: 204800 });
    expect(Number.isNaN(bounds.get('loose_kernel')!.threads)).toBe(true);
  });

  it('passes a kernel within its launch configuration', () => {
    expect(checkKernels('a.cu', parseReport(report('row_kernel', 64, 0, 1024)), bounds).failures).toEqual([]);
  });

  it('refuses spills, registers beyond an SM for the declared blocks, shared memory and missing bounds', () => {
    const fail = (r: string) => checkKernels('a.cu', parseReport(r), bounds).failures.join('\n');
    expect(fail(report('row_kernel', 64, 8))).toMatch(/row_kernel \(sm_90\): spills 8 bytes/);
    // 72 registers x 512 threads x 2 blocks > 65536
    expect(fail(report('big_kernel', 72, 0))).toMatch(/big_kernel.*72 registers x 512 threads x 2 blocks = 73728 > 65536/);
    expect(fail(report('row_kernel', 32, 0, 50_000))).toMatch(/static shared memory > 49152/);
    expect(fail(report('big_kernel', 32, 0, 40_000))).toMatch(/40000 \+ 204800 bytes of shared memory > 232448/);
    expect(fail(report('loose_kernel', 16, 0))).toMatch(/loose_kernel.*declares no __launch_bounds__/);
  });
});

describe.skipIf(!hasNvcc)('ptxas check: compiled kernels (nvcc present)', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(root, 'scripts/ptxas-check.mjs'), '--compile', ...args], { encoding: 'utf8', cwd: root });

  it('refuses a kernel that spills and one without launch bounds', () => {
    const r = run(path.join(root, 'test/fixtures/cuda/spill.cu'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/spilling_kernel \(sm_90\): spills \d+ bytes stored/);
    expect(r.stderr).toMatch(/unbounded_kernel \(sm_90\): declares no __launch_bounds__/);
  }, 120_000);

  it('passes the GEMM epilogue and cross-entropy kernels', () => {
    const r = run(path.join(root, 'native/cuda/gemm.cu'), path.join(root, 'native/cuda/cross_entropy.cu'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/ok {3}gemm\.cu +scale_c_kernel/);
    expect(r.stdout).toMatch(/ok {3}cross_entropy\.cu +ce_forward_kernel/);
  }, 240_000);

  it('passes the attention kernels in f32, bf16 and fp16, AdamW over 16-bit parameters and the loss-scale check', () => {
    const r = run(...['attention.cu', 'adamw.cu', 'loss_scale.cu'].map((f) => path.join(root, 'native/cuda', f)));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const builds = (file: string, kernel: string) => r.stdout.split('\n').filter((l) => new RegExp(`^ok {3}${file} +${kernel} `).test(l)).length;
    // Each of the three element types at each of the three head-dim buckets, without spills.
    for (const k of ['attention_forward_kernel', 'attention_dq_kernel', 'attention_dkdv_kernel']) expect(builds('attention\\.cu', k)).toBe(9);
    expect(builds('attention\\.cu', 'attention_delta_kernel')).toBe(3);
    expect(builds('adamw\\.cu', 'adamw_master_kernel')).toBe(2); // bf16, fp16
    expect(builds('loss_scale\\.cu', 'unscale_check_kernel')).toBe(3); // f32, bf16, fp16 gradients
  }, 240_000);
});
