// What the native core has and found: SIMD level, threads, CUDA; thread control; memory counters.
import { PatentGPTError } from '../errors.js';
import { addon, type DeviceMemory, type NativeInfo } from '../native/loader.js';

export type RuntimeInfo = NativeInfo;

export function runtimeInfo(): RuntimeInfo {
  return addon().info();
}

/** Threads used by native kernels; n <= 0 picks one per hardware thread. Returns the count. */
export function setNumThreads(n: number): number {
  if (!Number.isInteger(n)) throw new PatentGPTError('E_ARGUMENT', `setNumThreads: n must be an integer, got ${n}`);
  return addon().setNumThreads(n);
}

/** Live and peak bytes of native tensor storage per device. */
export function memoryStats(): { cpu: DeviceMemory; cuda: DeviceMemory } {
  return addon().memoryStats();
}

export function resetPeakMemory(): void {
  addon().resetPeakMemory();
}

/** Gives the freed blocks kept for reuse (memoryStats().cpu.cachedBytes) back to the system. */
export function releaseCachedMemory(): void {
  addon().releaseCachedMemory();
}

/**
 * The CPU's FP32 peak in FLOP/s on `threads` threads (default: the current thread count), measured
 * by a throughput-bound FMA loop of the GEMM microkernel's ISA for about `seconds` (an estimate
 * for MFU when the hardware's figure is not given).
 */
export function measurePeakFlops(threads = addon().info().threads, seconds = 0.2): number {
  if (!Number.isInteger(threads) || threads < 1) throw new PatentGPTError('E_ARGUMENT', `measurePeakFlops: threads must be a positive integer, got ${threads}`);
  return addon().gemmPeakGflops(threads, seconds) * 1e9;
}
