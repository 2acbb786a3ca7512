// Errors the package throws on purpose: a stable `code` to branch on, a message that says what to do.

export type ErrorCode =
  | 'E_ADDON_LOAD' // the native addon could not be found or loaded
  | 'E_SHAPE' // tensor shapes do not fit the op
  | 'E_DTYPE' // a dtype the op does not take
  | 'E_DEVICE' // tensors on different devices, or a device that is absent
  | 'E_DISPOSED' // a tensor used after dispose()
  | 'E_ARGUMENT' // any other invalid argument
  | 'E_AUTOGRAD' // misuse of the tape (backward on a non-scalar without a gradient, ...)
  | 'E_CONFIG' // a config (file, preset, object) with a wrong, missing or unknown field
  | 'E_CHECKPOINT' // a checkpoint that is missing, incomplete, corrupt or does not fit
  | 'E_DATA' // token shards or a manifest that are corrupt or do not fit the vocabulary
  | 'E_FORMAT' // a file that is not what it should be (a corrupt tokenizer.model, safetensors, ...)
  | 'E_NONFINITE' // weights or scores that are NaN or infinite (a diverged run, a corrupt folder)
  | 'E_UNSUPPORTED' // a valid input this version cannot handle yet
  | 'E_IO' // a file system operation that failed
  | 'E_KV_CACHE_FULL' // a request that cannot fit in the whole KV cache budget
  | 'E_ABORTED' // a generation request cancelled by its AbortSignal
  | 'E_INTERNAL'; // a broken invariant inside the package (a bug: please report it)

/**
 * Codes on errors the native addon throws (bindings/errors.h); such errors are plain Errors with
 * `code` set. They mean a check at the native boundary caught what the TypeScript checks did not.
 */
export type NativeErrorCode =
  | 'E_NATIVE_ARG' // an argument of the wrong type, size, range or bounds
  | 'E_NATIVE_DISPOSED' // a storage used after free()
  | 'E_NATIVE_OOM' // host or device memory exhausted
  | 'E_NATIVE_DEVICE' // a device (CUDA) call failed
  | 'E_NATIVE_WORKER'; // a background native job failed

export class PatentGPTError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'PatentGPTError';
    this.code = code;
  }
}
