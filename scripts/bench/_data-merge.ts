// Child of the data bench: the dedup merge over a synthetic dedup state (N documents in 4 parts;
// random signatures, 10% near duplicates with a tenth of their entries changed, 2% exact copies),
// in bounded memory (dedupParts, external sorts) or in memory (loadPart + findDuplicates), in its
// own process so that its peak RSS is its own. Prints one JSON line.
//   tsx scripts/bench/_data-merge.ts make|external|memory DIR N [budgetMiB]
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PartWriter, findDuplicates, loadPart, resolveDedup } from '../../src/data/dedup.js';
import { dedupParts } from '../../src/data/dedup-merge.js';

const [mode, root, nArg, budgetMiB] = process.argv.slice(2);
const N = Number(nArg);
const PARTS = 4;
const c = resolveDedup({ permutations: 128, threshold: 0.8 });
const P = c.permutations;
const dirs = Array.from({ length: PARTS }, (_, p) => path.join(root!, `p${p}`));
const t = performance.now();
let dups = 0;
let spilledRuns = 0;
if (mode === 'make') {
  let seed = 7;
  const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
  const sources: { sig: Uint32Array; key: string }[] = [];
  for (const dir of dirs) {
    const w = new PartWriter(dir, c);
    for (let done = 0; done < N / PARTS; done += 1000) {
      const sig = new Uint32Array(1000 * P);
      randomFillSync(sig);
      const keys: string[] = [];
      for (let i = 0; i < 1000; i++) {
        const row = sig.subarray(i * P, i * P + P);
        const r = rnd();
        if (sources.length > 0 && r < 0.12) {
          const src = sources[Math.floor(rnd() * sources.length)]!;
          row.set(src.sig);
          if (r < 0.02) {
            keys.push(src.key);
            continue;
          }
          for (let k = 0; k < P / 10; k++) row[Math.floor(rnd() * P)] = Math.floor(rnd() * 2 ** 32);
        }
        const key = createHash('md5').update(row).digest('hex');
        keys.push(key);
        if (rnd() < 0.01) {
          sources.push({ sig: row.slice(), key });
          if (sources.length > 5000) sources.shift();
        }
      }
      await w.add(keys, sig);
    }
    await w.close();
  }
} else if (mode === 'external') {
  const d = dedupParts(dirs, c, path.join(root!, 'scratch'), Number(budgetMiB) * 2 ** 20);
  dups = d.exactDuplicates + d.nearDuplicates;
  spilledRuns = d.spilledRuns;
} else {
  const loaded = dirs.map((d) => loadPart(d, c));
  const sig = new Uint32Array(N * P);
  let at = 0;
  for (const l of loaded) (sig.set(l.sig, at), (at += l.sig.length));
  const r = findDuplicates(N, loaded.flatMap((l) => l.keys), sig, c);
  dups = r.exactDuplicates + r.nearDuplicates;
}
fs.mkdirSync(root!, { recursive: true });
console.log(JSON.stringify({ mode, seconds: (performance.now() - t) / 1000, peakRssMB: process.resourceUsage().maxRSS / 1024, duplicates: dups, spilledRuns }));
