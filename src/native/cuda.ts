// What the binary's CUDA backend has and what it found on this machine, in one report: whether
// CUDA was compiled in, the GPUs, whether cuBLASLt (opened at run time for GEMM) loads, and why
// not. `patentgpt info` prints it; the device checks of configs quote its reasons.
import { addon } from './loader.js';

export interface CudaGpu {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
}

export interface CudaReport {
  /** The binary carries CUDA kernels (nvcc was found when it was built). */
  compiled: boolean;
  gpus: CudaGpu[];
  /** Why no GPU is usable (no driver, no device, built without CUDA), or null when one is. */
  deviceStatus: string | null;
  /** The libcublasLt that opened, with its version, or null. */
  cublasLt: string | null;
  /** Why cuBLASLt is unusable (library missing, no device), or null when GEMM on CUDA can run. */
  cublasLtStatus: string | null;
}

export function cudaReport(): CudaReport {
  const info = addon().info();
  const lt = addon().cublasLtStatus();
  return {
    compiled: info.cudaCompiled,
    gpus: info.gpus,
    deviceStatus: info.cudaStatus,
    cublasLt: lt.library,
    cublasLtStatus: lt.error,
  };
}
