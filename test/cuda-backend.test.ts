// The CUDA backend as seen from a machine without a GPU (CI has nvcc, no GPU): the binary built
// with CUDA still loads and computes on CPU; every op family with a CUDA kernel is registered
// for 'cuda' (so the op suites, test/ops/*, run it wherever a GPU is present); `patentgpt info`
// says what the binary has, whether cuBLASLt loads, and why device cuda is unusable; a stage
// config asking for cuda is refused with that reason. On a GPU machine the refusal tests skip
// and scripts/gpu-check.sh runs the op suites on the device.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { PatentGPTError } from '../src/errors.js';
import { Engine } from '../src/infer/index.js';
import { cudaReport } from '../src/native/cuda.js';
import { kernelDevices } from '../src/native/devices.js';
import { Tensor, crossEntropy, matmul, rmsnorm, runtimeInfo } from '../src/tensor/index.js';
import { configHash, validateStageConfig } from '../src/train/config.js';
import { numbers } from './helpers.js';

const info = runtimeInfo();
const gpu = info.gpus.length > 0;

/** The native functions native/cuda implements (bindings' cuda slots), by op family. */
const CUDA_KERNELS: Record<string, readonly string[]> = {
  gemm: ['gemm', 'gemmBf16'],
  rmsnorm: ['rmsnormForward', 'rmsnormBackward'],
  rope: ['ropeForward', 'ropeBackward'],
  swiglu: ['swigluForward', 'swigluBackward'],
  embedding: ['embeddingForward', 'embeddingBackward'],
  crossEntropy: ['crossEntropyForward', 'crossEntropyBackward', 'logprobForward', 'logprobBackward'],
  adamw: ['adamwStep'],
  dropout: ['dropoutForward', 'dropoutBackward'],
  elementwise: ['addForward', 'axpy', 'triad', 'scale', 'fill', 'sum', 'sumSquares', 'cast', 'binaryForward', 'binaryBackward',
    'sumBroadcast', 'unaryForward', 'unaryBackward', 'whereForward', 'whereBackward'],
  reduce: ['sumDimForward', 'sumDimBackward', 'maxDimForward', 'gatherForward', 'scatterAdd', 'softmaxForward', 'softmaxBackward',
    'logSoftmaxForward', 'logSoftmaxBackward'],
};

const cli = (...args: string[]): string =>
  execFileSync(process.execPath, ['--import', 'tsx', new URL('../src/cli/main.ts', import.meta.url).pathname, ...args], { encoding: 'utf8' });

describe.skipIf(!info.cudaCompiled)('a binary built with CUDA', () => {
  it('registers a cuda kernel for every op family native/cuda implements', () => {
    const missing = Object.entries(CUDA_KERNELS).flatMap(([family, fns]) =>
      fns.filter((fn) => !kernelDevices(fn).includes('cuda')).map((fn) => `${family}: ${fn}`));
    expect(missing).toEqual([]);
    for (const fns of Object.values(CUDA_KERNELS)) for (const fn of fns) expect(kernelDevices(fn)).toContain('cpu');
  });

  it('loads and computes on CPU (the cuda slots are only chosen for device tensors)', () => {
    const a = Tensor.from(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const b = Tensor.from(Float32Array.from([1, 0, 0, 1, 1, 1]), [3, 2]);
    expect(numbers(matmul(a, b).toArray())).toEqual([4, 5, 10, 11]);
    const y = rmsnorm(Tensor.from(Float32Array.from([3, 4]), [1, 2]), Tensor.from(Float32Array.from([1, 1]), [2]), 0);
    const r = Math.sqrt(12.5);
    expect(numbers(y.toArray()).map((v) => Math.round(v * 1e5) / 1e5)).toEqual([3 / r, 4 / r].map((v) => Math.round(v * 1e5) / 1e5));
    const loss = crossEntropy(Tensor.from(Float32Array.from([0, 0]), [1, 2]), Tensor.from(Int32Array.from([1]), [1]));
    expect(numbers(loss.toArray())[0]).toBeCloseTo(Math.log(2), 6);
  });

  it('reports whether cuBLASLt loads and, when not, why and what to do', () => {
    const r = cudaReport();
    expect(r.compiled).toBe(true);
    if (r.cublasLt === null) {
      expect(r.cublasLtStatus).toMatch(/libcublasLt|cublasLtCreate|workspace/);
      if (/could not be opened/.test(r.cublasLtStatus ?? '')) expect(r.cublasLtStatus).toMatch(/libcublasLt\.so\.13.*libcublasLt\.so\.12.*PATENTGPT_CUBLASLT/s);
    } else {
      expect(r.cublasLt).toMatch(/libcublasLt/);
    }
  });
});

describe.skipIf(gpu)('without a usable GPU', () => {
  it('an engine asked for device cuda is refused with the reason; device cpu serves', async () => {
    const dir = new URL('./fixtures/infer-tiny-f32', import.meta.url).pathname;
    await expect(Engine.fromPretrained(dir, { device: 'cuda' })).rejects.toThrow(/^Engine: cannot use device 'cuda': .+; use 'cpu' \(patentgpt info/);
    await expect(Engine.fromPretrained(dir, { device: 'tpu' as never })).rejects.toThrow(/device must be 'cpu' or 'cuda', got "tpu"/);
    const engine = await Engine.fromPretrained(dir, { device: 'cpu', kvCacheBytes: 2 ** 20 });
    try {
      expect(engine.model.device).toBe('cpu');
      const out = await engine.complete([1, 2, 3], { maxTokens: 4, temperature: 0, ignoreEos: true });
      expect(out.tokens).toHaveLength(4);
    } finally {
      engine.close();
    }
  });

  it('patentgpt info says device cuda is not usable, and why', () => {
    const json = JSON.parse(cli('info', '--json')) as Record<string, unknown>;
    expect(json.cudaUsable).toBe(false);
    const why = String(json.cudaUnusable);
    expect(why).toBe(info.cudaCompiled ? `no GPU: ${info.cudaStatus}` : 'this binary was built without CUDA (no nvcc at build time)');
    expect(json).toHaveProperty('cublasLtStatus');
    const text = cli('info');
    expect(text).toContain(`device cuda:   not usable: ${why}`);
    expect(text).toMatch(/cuBLASLt: +(not loaded \(.+\)|libcublasLt)/);
  });

  it('a stage config asking for device cuda is refused, naming the field and the reason', () => {
    const raw = { name: 'r', model: 'tiny', seqLen: 64, batchSize: 2, steps: 10, optimizer: { lr: 1e-3 }, device: 'cuda' };
    let err: unknown;
    try {
      validateStageConfig(raw, { source: 'stage.json' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PatentGPTError);
    expect((err as PatentGPTError).code).toBe('E_CONFIG');
    expect((err as Error).message).toMatch(/^stage\.json: device: "cuda" cannot be used here: .+; use "cpu" \(patentgpt info/);
    expect((err as Error).message).toContain(info.cudaCompiled ? String(info.cudaStatus) : 'built without CUDA');
  });
});

describe('stage config device field', () => {
  const base = { name: 'r', model: 'tiny', seqLen: 64, batchSize: 2, steps: 10, optimizer: { lr: 1e-3 } };

  it('defaults to cpu, refuses other names, and leaves the config hash unchanged', () => {
    const cfg = validateStageConfig(base);
    expect(cfg.device).toBe('cpu');
    expect(validateStageConfig({ ...base, device: 'cpu' }).device).toBe('cpu');
    expect(() => validateStageConfig({ ...base, device: 'gpu' }, { source: 'stage.json' })).toThrow(/stage\.json: device: must be "cpu" or "cuda", got "gpu"/);
    // A run started before the field existed resumes: the device does not change what it computes.
    const { device: _d, ...withoutDevice } = cfg;
    expect(configHash(cfg)).toBe(configHash(withoutDevice as typeof cfg));
  });
});
