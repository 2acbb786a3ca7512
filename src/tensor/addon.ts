// The addon moved to src/native (loader.ts, generated addon-types.ts). These re-exports keep the
// bench scripts and tests that import this path working.
// TODO(lead): point scripts/bench/* and test/infer/gemv.test.ts at src/native/loader.js, then remove.
export { addon, type Addon, type DeviceMemory, type NativeBpeEncoder, type NativeBpeTrainer, type NativeInfo, type NativeStorage } from '../native/loader.js';
