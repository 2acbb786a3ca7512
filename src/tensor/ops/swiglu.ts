// SwiGLU gating of the LLaMA feed-forward: silu(gate) * up.
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectSameShape } from '../check.js';
import { Tensor } from '../tensor.js';

/** F.silu(gate) * up, same shapes. Differentiable in both. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  expectDType('swiglu', 'gate', gate, 'f32');
  expectDType('swiglu', 'up', up, 'f32');
  expectSameShape('swiglu', gate, up, ['gate', 'up']);
  expectKernel('swiglu', ['swigluForward', 'swigluBackward'], gate, up);
  const out = Tensor.empty(gate.shape, { device: gate.device });
  addon().swigluForward(out.storage, out.offset, gate.storage, gate.offset, up.storage, up.offset, gate.size);
  return record('swiglu', out, [gate, up], [gate, up], (g) => {
    const dgate = Tensor.empty(gate.shape, { device: gate.device });
    const dup = Tensor.empty(up.shape, { device: gate.device });
    addon().swigluBackward(dgate.storage, dgate.offset, dup.storage, dup.offset, g.storage, g.offset,
      gate.storage, gate.offset, up.storage, up.offset, gate.size);
    return [dgate, dup];
  });
}
