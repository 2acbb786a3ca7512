// Errors the package throws on purpose: a stable `code` to branch on, a message that says what to do.

export type ErrorCode =
  | 'E_ADDON_LOAD' // the native addon could not be found or loaded
  | 'E_SHAPE' // tensor shapes do not fit the op
  | 'E_DTYPE' // a dtype the op does not take
  | 'E_DEVICE' // tensors on different devices, or a device that is absent
  | 'E_DISPOSED' // a tensor used after dispose()
  | 'E_ARGUMENT' // any other invalid argument
  | 'E_FORMAT' // a file that is not what it should be (a corrupt tokenizer.model, ...)
  | 'E_UNSUPPORTED' // a valid input this version cannot handle (a UNIGRAM model's encode, ...)
  | 'E_AUTOGRAD'; // misuse of the tape (backward on a non-scalar without a gradient, ...)

export class PatentGPTError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'PatentGPTError';
    this.code = code;
  }
}
