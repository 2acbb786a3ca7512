// Loss scaling's two native pieces (bindings/loss_scale.cpp): unscaling a step's gradients in place
// with one inf/NaN flag for all of them (native/cpu/loss_scale.cpp, its CUDA twin in
// native/cuda/loss_scale.cu), and the dynamic scale's update rule (torch's GradScaler,
// native/cuda/host/loss_scale.cpp). The trainer's LossScaler (src/train/loss-scale.ts) drives them.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { expectDType, expectKernel } from '../check.js';
import { Tensor } from '../tensor.js';

const OP = 'unscaleGradients';

/**
 * Multiplies every gradient by invScale in place (f32, exact for a power-of-two scale) and returns
 * whether any of them held an inf or NaN before. The gradients share one flag on their device,
 * read back once: one host sync for the whole step.
 */
export function unscaleGradients(grads: readonly Tensor[], invScale: number): boolean {
  if (!(invScale > 0) || !Number.isFinite(Math.fround(invScale)))
    throw new PatentGPTError('E_ARGUMENT', `${OP}: invScale must be a positive number finite in f32, got ${invScale}`);
  if (grads.length === 0) return false;
  const device = grads[0]!.device;
  grads.forEach((g, i) => {
    expectDType(OP, `grads[${i}]`, g, 'f32');
    expectKernel(OP, 'unscaleCheck', grads[0]!, g);
  });
  const flag = Tensor.zeros([1], { dtype: 'i32', device });
  try {
    for (const g of grads) addon().unscaleCheck(g.storage, g.offset, g.storage, g.offset, flag.storage, flag.offset, g.size, invScale);
    return (flag.toArray() as Int32Array)[0] !== 0;
  } finally {
    flag.dispose();
  }
}

/** A dynamic loss scale's settings and counters (what lossScaleUpdate reads and returns). */
export interface DynamicScaleRule {
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  minScale: number;
}

/**
 * One step of the dynamic rule: on overflow the scale is multiplied by backoffFactor (not below
 * minScale), the count restarts and stepped is false (skip the optimizer step); otherwise the step
 * counts, and after growthInterval of them in a row the scale grows by growthFactor unless that
 * would overflow f32. Scales are f32 values. Bad settings throw E_ARGUMENT naming them.
 */
export function lossScaleUpdate(scale: number, goodSteps: number, foundInf: boolean, rule: DynamicScaleRule): { scale: number; goodSteps: number; stepped: boolean } {
  try {
    return addon().lossScaleUpdate(scale, goodSteps, foundInf, rule.growthFactor, rule.backoffFactor, rule.growthInterval, rule.minScale);
  } catch (err) {
    if (err instanceof PatentGPTError) throw err;
    throw new PatentGPTError('E_ARGUMENT', `lossScaleUpdate: ${(err as Error).message}`);
  }
}
