// The only place that loads the native addon. Its shape (src/native/addon-types.ts) is generated
// from the addon's own declarations; src/tensor and src/text call it through here, nothing else does.
import { createRequire } from 'node:module';
import { PatentGPTError } from '../errors.js';
import { packageRoot } from '../package.js';
import { argLayout, type Addon, type AddonArgs, type NativeDeviceMemory } from './addon-types.js';

export type { Addon, AddonArgs, NativeBpeEncoder, NativeBpeTrainer, NativeSignature, NativeStorage, TensorArg } from './addon-types.js';

export type NativeInfo = ReturnType<Addon['info']>;
/** One device's memory counters; CUDA adds its caching allocator's. */
export type DeviceMemory = NativeDeviceMemory & Partial<Omit<ReturnType<Addon['memoryStats']>['cuda'], keyof NativeDeviceMemory>>;

let loaded: Addon | null = null;

/**
 * Loads the addon once: PATENTGPT_ADDON (a .node path) if set, else a prebuild matching this
 * platform under prebuilds/, else the local build/Release. Install scripts need not have run.
 */
export function addon(): Addon {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const root = packageRoot();
  const explicit = process.env.PATENTGPT_ADDON;
  try {
    loaded = (explicit ? require(explicit) : require('node-gyp-build')(root)) as Addon;
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new PatentGPTError(
      'E_ADDON_LOAD',
      `patentgpt: no native addon for ${process.platform}-${process.arch} (node ${process.versions.node}) ` +
        `could be loaded (${why}). Build it from source with 'npm run build:native' in ${root} ` +
        `(needs cmake and a C++17 compiler; nvcc on the PATH adds CUDA).`,
    );
  }
  return loaded;
}

type Layout = Readonly<Record<string, readonly [number, boolean]>>;

/**
 * A native function's positional arguments from named ones, placed by its declared layout (a
 * tensor becomes storage, offset). For calls prepared once and replayed (decode steps): the array
 * is built here once; a step writes its sizes in place at argIndex(fn, name).
 */
export function packArgs<F extends keyof AddonArgs>(fn: F, named: AddonArgs[F]): Parameters<Addon[F]> {
  const layout = argLayout[fn] as Layout;
  const out: unknown[] = [];
  for (const name in layout) {
    const [i, tensor] = layout[name]!;
    const v = (named as Record<string, unknown>)[name];
    if (tensor) {
      const t = v as { storage: unknown; offset: number } | null;
      out[i] = t ? t.storage : null;
      out[i + 1] = t ? t.offset : 0;
    } else out[i] = v;
  }
  return out as Parameters<Addon[F]>;
}

/** Where the named argument sits in fn's positional arguments (a tensor: its storage). */
export function argIndex<F extends keyof AddonArgs>(fn: F, name: keyof AddonArgs[F] & string): number {
  return (argLayout[fn] as Layout)[name]![0];
}
