// Prep memory stays flat as the corpus grows: the scan and the emit (mixing, writing shards) of a
// corpus four times larger must not raise the peak live JavaScript heap by 0.8 MB, where holding a
// row per document (as emit once did: +4.7 MB here) would. Measured in a child process, the same
// settings for both sizes. (merge still holds a signature and a key per document; see README.)
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-prep-mem-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const src = path.resolve(import.meta.dirname, '../../src/data/prep.ts');

function corpus(dir: string, docs: number): void {
  let seed = 99;
  const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  fs.mkdirSync(dir, { recursive: true });
  const words = Array.from({ length: 2000 }, (_, i) => `w${i.toString(36)}`);
  const out = fs.openSync(path.join(dir, 'docs.jsonl'), 'w');
  let buf = '';
  for (let i = 0; i < docs; i++) {
    const text = Array.from({ length: 10 }, () => words[Math.floor(rand() * words.length)]).join(' ');
    buf += `{"id":"d${i}","text":"${text}"}\n`;
    if (buf.length > 1 << 16) (fs.writeSync(out, buf), (buf = ''));
  }
  fs.writeSync(out, buf);
  fs.closeSync(out);
}

// Runs one phase of prep in a child and returns its peak live heap (bytes): every 50 ms a full
// collection, then heapUsed (without the collection, heapUsed counts garbage not yet collected).
const child = `
import { prep, validatePrepConfig } from ${JSON.stringify(src)};
const [data, out, phase] = process.argv.slice(2);
const cfg = validatePrepConfig({ output: out, inputs: [{ path: data, category: 'general', filters: false }], dedup: { permutations: 16, shingle: 3 },
  tokenizer: { type: 'byte' }, stages: { a: { weights: { general: 1.5 } } } }, out);
globalThis.gc();
let peak = process.memoryUsage().heapUsed;
const timer = setInterval(() => { globalThis.gc(); peak = Math.max(peak, process.memoryUsage().heapUsed); }, 50);
const report = await prep(cfg, { phase, workers: 0 });
clearInterval(timer);
console.log(JSON.stringify({ peak, docs: report.documents.kept }));
`;

function peakHeap(data: string, out: string, phase: string): { peak: number; docs: number } {
  const script = path.join(root, 'child.mts');
  fs.writeFileSync(script, child);
  const res = execFileSync(process.execPath, ['--expose-gc', '--max-semi-space-size=1', '--import', 'tsx', script, data, out, phase], { encoding: 'utf8' });
  return JSON.parse(res.trim().split('\n').pop()!);
}

describe('prep memory', () => {
  it('scan and emit peak heap does not grow with the corpus', () => {
    const small = 6_000;
    const large = 4 * small;
    const growth: Record<string, number> = {};
    const peaks: Record<string, number[]> = { scan: [], emit: [] };
    for (const n of [small, large]) {
      const data = path.join(root, `data-${n}`);
      const out = path.join(root, `out-${n}`);
      corpus(data, n);
      peaks.scan!.push(peakHeap(data, out, 'scan').peak);
      peakHeap(data, out, 'merge');
      const e = peakHeap(data, out, 'emit');
      peaks.emit!.push(e.peak);
      expect(e.docs).toBeGreaterThan(0.99 * n); // random 10-word texts: (almost) no duplicates
    }
    for (const k of ['scan', 'emit']) growth[k] = (peaks[k]![1]! - peaks[k]![0]!) / 1e6;
    console.log(`prep peak heap: scan ${peaks.scan!.map((p) => (p / 1e6).toFixed(1)).join(' -> ')} MB, emit ${peaks.emit!.map((p) => (p / 1e6).toFixed(1)).join(' -> ')} MB for ${small} -> ${large} documents`);
    // a row object per document would add >= 100 B x 18,000 = 1.8 MB
    expect(growth.scan).toBeLessThan(0.8);
    expect(growth.emit).toBeLessThan(0.8);
  });
});
