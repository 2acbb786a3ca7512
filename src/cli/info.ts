// patentgpt info: what the native binary has and what it found on this machine.
import { Command } from 'commander';
import { cudaReport } from '../native/cuda.js';
import { runtimeInfo } from '../tensor/index.js';

export function infoCommand(version: string): Command {
  return new Command('info')
    .description('print version, SIMD level, threads, CUDA support, GPUs and cuBLASLt found, and why CUDA is unusable')
    .option('--json', 'print one JSON object')
    .action((opts: { json?: boolean }) => {
      const info = runtimeInfo();
      const cuda = cudaReport();
      // Why device "cuda" cannot be used here, or null: no GPU (and why), or no cuBLASLt for GEMM.
      const cudaUnusable = !cuda.compiled
        ? 'this binary was built without CUDA (no nvcc at build time)'
        : cuda.gpus.length === 0
          ? `no GPU: ${cuda.deviceStatus ?? 'none found'}`
          : cuda.cublasLtStatus
            ? `GEMM needs cuBLASLt: ${cuda.cublasLtStatus}`
            : null;
      const report = {
        version,
        node: process.versions.node,
        platform: `${process.platform}-${process.arch}`,
        simd: info.simd,
        threads: info.threads,
        cudaCompiled: info.cudaCompiled,
        gpus: info.gpus,
        cudaStatus: info.cudaStatus,
        cublasLt: cuda.cublasLt,
        cublasLtStatus: cuda.cublasLtStatus,
        cudaUsable: cudaUnusable === null,
        cudaUnusable,
      };
      if (opts.json) {
        console.log(JSON.stringify(report));
        return;
      }
      const gpus = info.gpus.length
        ? info.gpus.map((g) => `#${g.index} ${g.name} (sm ${g.computeCapability}, ${(g.totalMemory / 2 ** 30).toFixed(1)} GiB)`).join('; ')
        : `none (${info.cudaStatus})`;
      console.log(
        [
          `patentgpt ${version} on node ${process.versions.node} (${report.platform})`,
          `SIMD:          ${info.simd}`,
          `threads:       ${info.threads}`,
          `CUDA compiled: ${info.cudaCompiled ? 'yes' : 'no'}`,
          `GPUs:          ${gpus}`,
          `cuBLASLt:      ${cuda.cublasLt ?? `not loaded (${cuda.cublasLtStatus ?? 'unknown'})`}`,
          `device cuda:   ${cudaUnusable === null ? 'usable' : `not usable: ${cudaUnusable}`}`,
        ].join('\n'),
      );
    });
}
