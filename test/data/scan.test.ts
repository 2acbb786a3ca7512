// The prep scan's per-batch work gives the same outcomes, tokens and signatures in a worker
// (ScanPool) as in this thread (ScanContext); the pool routes each batch to its least loaded
// worker and says when every worker has one in hand (prep then scans a batch itself).
import { describe, expect, it } from 'vitest';
import { emptyDocument } from '../../src/data/document.js';
import { ScanContext, ScanPool, type ScanItem, type ScanSetup } from '../../src/data/scan.js';

const WORDS = 'the valve housing comprises an inlet port and a sensor circuit which reports the measured pressure to a processor'.split(' ');

function items(n: number, seed: number): ScanItem[] {
  let s = seed;
  const rand = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  return Array.from({ length: n }, (_, i) => {
    const doc = emptyDocument(`d${seed}-${i}`, 'mem', 'patent');
    doc.text = i % 7 === 3 ? 'too short' : Array.from({ length: 80 }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(i % 2 ? ' ' : '\n');
    return { input: 0, source: 'mem', item: { ok: true as const, doc } };
  });
}

describe('scan', () => {
  it('a worker and this thread give the same results; batches go to the least loaded worker', async () => {
    const setup: ScanSetup = { filters: [{ minWords: 20, maxDupLineFraction: 0.9, maxTopNgramCharFraction: { 2: 0.5 } }], overrides: [{}], tokenizer: { type: 'llama2' }, dedup: { permutations: 32 } };
    const batches = [items(12, 1), items(9, 2), items(15, 3)];
    const local = new ScanContext(setup);
    const expected = [];
    for (const b of batches) expected.push(await local.process(structuredClone(b)));
    const pool = new ScanPool(setup, 2);
    try {
      await pool.ready;
      expect(pool.busy).toBe(false);
      const first = pool.submit(structuredClone(batches[0]!));
      expect(pool.busy).toBe(false); // the second worker is free
      const rest = batches.slice(1).map((b) => pool.submit(structuredClone(b)));
      expect(pool.busy).toBe(true);
      const got = await Promise.all([first, ...rest]);
      expect(pool.busy).toBe(false);
      expect(got).toEqual(expected);
      expect(got[0]!.outcomes.filter((o) => 'reason' in o).length).toBeGreaterThan(0);
      expect(got[0]!.outcomes.some((o) => 'ids' in o && o.ids.length > 80)).toBe(true);
    } finally {
      await pool.close();
    }
  });
});
