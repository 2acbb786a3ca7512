// The data position and checkpoint plumbing of the small in-memory tasks the trainer tests drive:
// one weight vector saved as raw f32 bytes, and a step counter as the data position.
import { noGrad, type Tensor } from '../../src/tensor/index.js';
import type { TrainTask } from '../../src/train/trainer.js';

type Plumbing = Pick<TrainTask, 'dataPosition' | 'restoreDataPosition' | 'checkpointFiles' | 'restoreCheckpoint'>;

export function vectorTaskState(w: Tensor, pos: { value: number }): Plumbing {
  return {
    dataPosition: () => ({ pos: pos.value }),
    restoreDataPosition: (p) => {
      pos.value = (p as { pos: number }).pos;
    },
    checkpointFiles: () => [{ name: 'w.bin', content: Buffer.from((w.toArray() as Float32Array).buffer) }],
    restoreCheckpoint: async (ck) => {
      const buf = await ck.read('w.bin');
      noGrad(() => w.write(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength))));
    },
  };
}
