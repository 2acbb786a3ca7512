// What the native core has and found: SIMD level, threads, CUDA; thread control; memory counters.
import { PatentGPTError } from '../errors.js';
import { addon, type DeviceMemory, type NativeInfo } from './addon.js';

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
