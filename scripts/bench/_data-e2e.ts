// Child of the data bench: one end-to-end prep (scan + merge) in a fresh process, as
// `patentgpt data prep` runs it (cold JIT, workers started from nothing). Prints one JSON line.
//   tsx scripts/bench/_data-e2e.ts WORKERS CONFIG_JSON   (a prep config; its output is scratch)
import { prep, validatePrepConfig } from '../../src/data/prep.js';
import { addon } from '../../src/native/loader.js';

const [workers, json] = process.argv.slice(2);
addon().setNumThreads(2);
const cfg = validatePrepConfig(JSON.parse(json!), process.cwd());
const cpu0 = process.cpuUsage(); // all threads of the process: workers, native pools
const t = performance.now();
await prep(cfg, { phase: 'scan', workers: Number(workers) });
const scanSeconds = (performance.now() - t) / 1000;
const report = await prep(cfg, { phase: 'merge' });
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({ seconds: (performance.now() - t) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, scanSeconds, documents: report.documents }));
