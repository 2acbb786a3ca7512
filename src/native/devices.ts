// The device registry: which devices this process can use (from the addon's runtime info) and
// which devices each native function has a kernel for (from its declaration's kernel table).
import { addon, type NativeSignature } from './loader.js';

export type DeviceName = 'cpu' | 'cuda';

let present: DeviceName[] | null = null;
let kernels: Map<string, readonly DeviceName[]> | null = null;

/** Devices tensors can live on here: 'cpu', and 'cuda' when the binary has CUDA and a GPU was found. */
export function availableDevices(): readonly DeviceName[] {
  if (!present) {
    const info = addon().info();
    present = info.cudaCompiled && info.gpus.length > 0 ? ['cpu', 'cuda'] : ['cpu'];
  }
  return present;
}

/** Why `device` is not available here, or null when it is. */
export function deviceUnavailableReason(device: DeviceName): string | null {
  if (availableDevices().includes(device)) return null;
  const info = addon().info();
  return !info.cudaCompiled ? 'the native binary was built without CUDA' : `no CUDA GPU was found (${info.cudaStatus ?? 'no device'})`;
}

/** Every declared native function, class and method with its kernels' devices. */
export function nativeSignatures(): readonly NativeSignature[] {
  return addon().signatures();
}

/** The devices a native function has kernels for (its binding's kernel table). */
export function kernelDevices(fn: string): readonly DeviceName[] {
  if (!kernels) kernels = new Map(nativeSignatures().map((s) => [s.name, s.devices]));
  return kernels.get(fn) ?? [];
}

export function hasKernel(fn: string, device: DeviceName): boolean {
  return kernelDevices(fn).includes(device);
}
