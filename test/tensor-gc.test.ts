// How host storages meet V8's garbage collector (bindings/storage.cpp, CountExternal): a loop
// that allocates and disposes big tensors explicitly (a training step's activations) must not
// make V8 collect, since no collection could free anything; tensors left to the GC must still
// be collected, so a program that forgets dispose() does not grow without bound.
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { Tensor, memoryStats } from '../src/index.js';

/** Runs fn and counts the full (mark-compact) collections V8 made meanwhile. */
async function majorGcsDuring(fn: () => Promise<void>): Promise<number> {
  let majors = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
  });
  obs.observe({ entryTypes: ['gc'] });
  await fn();
  await new Promise((r) => setTimeout(r, 50)); // entries are delivered asynchronously
  obs.disconnect();
  return majors;
}

describe('host storages and the garbage collector', () => {
  it('explicitly freed activations cause no full collection', async () => {
    const step = (): void => {
      // a step's activations: 16 tensors of 8 to 23 MB, all alive at once, then freed
      const live = Array.from({ length: 16 }, (_, i) => Tensor.empty([(2 + i / 4) * 2 ** 20]));
      for (const t of live) t.dispose();
    };
    step(); // the first step sets the high-water mark V8 is told of
    const majors = await majorGcsDuring(async () => {
      for (let i = 0; i < 40; i++) {
        step();
        await new Promise((r) => setImmediate(r)); // between steps V8 may run its tasks (finish a marking), as in a training loop
      }
    });
    expect(majors).toBeLessThanOrEqual(2); // announcing every allocation and free made V8 mark-compact on most steps
  });

  it('tensors left to the GC are still collected', async () => {
    const before = memoryStats().cpu.liveBytes;
    for (let i = 0; i < 60; i++) Tensor.empty([25 * 2 ** 20]); // 100 MB each, never disposed: 6 GB in all
    await new Promise((r) => setTimeout(r, 20));
    expect(memoryStats().cpu.liveBytes - before).toBeLessThan(3 * 2 ** 30);
  });
});
