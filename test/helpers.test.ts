// The typed test helpers that stand between Tensor.toArray() / validateStageConfig() and the
// assertions: they narrow types for tsc (npm run typecheck) and must not loosen what a test checks.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../src/tensor/index.js';
import { validateStageConfig } from '../src/train/config.js';
import { numbers, stageOfKind } from './helpers.js';
import { V1_CONFIG } from './train/fixtures/v1-config.js';

describe('test helpers', () => {
  it('numbers() gives float and i32 values as plain numbers, and refuses i64 (bigints never equal numbers)', () => {
    expect(numbers(Tensor.from(new Float32Array([1.5, -2]), [2]).toArray())).toEqual([1.5, -2]);
    expect(numbers(Tensor.from(new Int32Array([7, -8]), [2]).toArray())).toEqual([7, -8]);
    expect(() => numbers(Tensor.from(new BigInt64Array([3n]), [1]).toArray())).toThrow(/i64 values/);
  });

  it('stageOfKind() passes a config of the kind through unchanged and fails on another kind', () => {
    const cfg = validateStageConfig(V1_CONFIG);
    expect(stageOfKind(cfg, 'pretrain')).toBe(cfg);
    expect(() => stageOfKind(cfg, 'sft')).toThrow(/expected a sft stage config, got kind "pretrain"/);
  });
});
