// LoRA's dropout runs on the native dropout op: the adapter's term equals
// scale * dropout(x, p, seed', offset) A^T B^T with the op's own mask, each forward takes the next
// x.size draws of the adapter's stream, the stream position can be read and set (a resumed
// trainer gets the same masks), and the gradient reaching x goes through the same mask.
import { expect, it } from 'vitest';
import { LoraAdapter } from '../../src/nn/lora.js';
import { dropout, linear, noGrad, scale, Tensor } from '../../src/tensor/index.js';
import { expectClose, f32, randomArray } from '../helpers.js';

const IN = 24, OUT = 10, R = 4, N = 37, P = 0.3, SEED = 5;
const DROP_SEED = SEED + 0x5deece66d; // the adapter's mask stream, apart from its init seed

function adapter(): LoraAdapter {
  const a = new LoraAdapter(IN, OUT, { r: R, alpha: 8, dropout: P, seed: SEED });
  a.lora_B.setParameter('weight', f32(randomArray(OUT * R, 3, 0.2), [OUT, R], true));
  return a;
}

/** The adapter's term computed from the op directly. */
function expected(a: LoraAdapter, xs: Float64Array, offset: number): Float32Array {
  return noGrad(() => {
    const x = f32(xs, [N, IN]);
    const d = dropout(x, P, { seed: DROP_SEED, offset });
    const t = scale(linear(linear(d, a.lora_A.weight), a.lora_B.weight), a.scaling);
    const v = t.toArray() as Float32Array;
    [x, d, t].forEach((u) => u.dispose());
    return v;
  });
}

it('LoRA dropout is the native op on the adapter\'s stream: fresh masks per forward, a settable position, the gradient through the mask', () => {
  const a = adapter();
  const xs = randomArray(N * IN, 1);
  const zero = Tensor.zeros([N, OUT]);
  const run = (): { y: Float32Array; dx: Float32Array } => {
    const x = f32(xs, [N, IN], true);
    const y = a.apply(x, zero);
    const g = f32(randomArray(N * OUT, 4), [N, OUT]);
    y.backward(g);
    const out = { y: y.toArray() as Float32Array, dx: x.grad!.toArray() as Float32Array };
    [x, y, g].forEach((t) => t.dispose());
    return out;
  };
  expect(a.dropoutOffset).toBe(0);
  const first = run();
  expectClose(first.y, expected(a, xs, 0), 1e-6, 1e-5, 'first forward');
  expect(a.dropoutOffset).toBe(N * IN);
  const second = run();
  expectClose(second.y, expected(a, xs, N * IN), 1e-6, 1e-5, 'second forward');
  expect(Array.from(second.y)).not.toEqual(Array.from(first.y));

  // dx = dropout(g B A * scale) on the forward's mask: zero exactly where the input was dropped.
  const dropped = noGrad(() => {
    const ones = Tensor.from(new Float32Array(N * IN).fill(1), [N, IN]);
    const m = dropout(ones, P, { seed: DROP_SEED, offset: N * IN });
    const v = m.toArray() as Float32Array;
    [ones, m].forEach((t) => t.dispose());
    return v;
  });
  let zeros = 0;
  for (let i = 0; i < dropped.length; i++)
    if (dropped[i] === 0) {
      zeros++;
      expect(second.dx[i]).toBe(0);
    }
  expect(zeros).toBeGreaterThan(0);

  a.dropoutOffset = 0; // a resumed trainer restores the position: the first masks again
  const replay = run();
  expect(Array.from(replay.y)).toEqual(Array.from(first.y));
  expect(() => (a.dropoutOffset = -1)).toThrow(/dropoutOffset must be an integer >= 0/);

  // No mask while gradients are not recorded.
  const x = f32(xs, [N, IN]);
  const y = noGrad(() => a.apply(x, zero));
  const plain = noGrad(() => scale(linear(linear(x, a.lora_A.weight), a.lora_B.weight), a.scaling));
  expect(Array.from(y.toArray() as Float32Array)).toEqual(Array.from(plain.toArray() as Float32Array));
  expect(a.dropoutOffset).toBe(N * IN); // the replayed forward only: noGrad draws nothing
  [x, y, plain, zero].forEach((t) => t.dispose());
  a.dispose();
});
