// npm run bench -- NAME [args]: runs scripts/bench/NAME.ts. Benchmarks print a table and one
// JSON line, and report ratios against a peer measured in the same run.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'bench');
const available = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.startsWith('_')).map((f) => f.slice(0, -3));
const name = process.argv[2];
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name> [args]\navailable: ${available.join(', ')}`);
  process.exit(name ? 1 : 0);
}
const file = join(dir, `${name}.ts`);
if (!existsSync(file)) process.exit(1);
process.argv.splice(2, 1);
await import(pathToFileURL(file).href);
