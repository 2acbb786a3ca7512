// Element types and devices a tensor can have.
import { PatentGPTError } from '../errors.js';

export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'i64';
export type Device = 'cpu' | 'cuda';

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32', 'i64'];

export function bytesPerElement(dtype: DType): number {
  switch (dtype) {
    case 'f32':
    case 'i32':
      return 4;
    case 'bf16':
    case 'f16':
      return 2;
    case 'i64':
      return 8;
  }
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'f32' || dtype === 'bf16' || dtype === 'f16';
}

/** The typed array that holds a dtype's raw bits (bf16 and f16 as Uint16Array). */
export type RawArray = Float32Array | Uint16Array | Int32Array | BigInt64Array;

export function rawArray(dtype: DType, length: number): RawArray {
  switch (dtype) {
    case 'f32':
      return new Float32Array(length);
    case 'bf16':
    case 'f16':
      return new Uint16Array(length);
    case 'i32':
      return new Int32Array(length);
    case 'i64':
      return new BigInt64Array(length);
  }
}

export function checkDType(value: unknown, what = 'dtype'): DType {
  if (typeof value === 'string' && (DTYPES as readonly string[]).includes(value)) return value as DType;
  throw new PatentGPTError('E_DTYPE', `${what} must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(value)}`);
}
