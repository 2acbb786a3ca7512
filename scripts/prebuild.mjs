#!/usr/bin/env node
// npm run build:prebuilds: the addon as prebuilds/<platform>-<arch>/patentgpt.node, made by
// prebuildify (its naming, --strip and layout are what node-gyp-build looks for) over our cmake-js
// build; `npm pack` then carries it, and `npm install` of the tarball needs no compiler.
//
// prebuildify drives node-gyp; this script is handed to it as its node-gyp (--node-gyp), so its
// `rebuild` means the cmake-js build (CUDA compiled in when nvcc is found, as npm install does).
// One Node-API binary serves every Node version, so prebuildify's --target is ignored. A local
// build/Release/patentgpt.node newer than native/, bindings/ and CMakeLists.txt is reused instead
// of compiling twice (PATENTGPT_PREBUILD_REUSE=1 reuses whatever is there).
//
//   node scripts/prebuild.mjs [--cuda]     --cuda: refuse a binary without CUDA kernels
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const require = createRequire(import.meta.url);
const localBuild = join(root, 'build', 'Release', 'patentgpt.node');

/** Newest modification time under a path (a file or a folder of sources). */
function newest(path) {
  if (!existsSync(path)) return 0;
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((n) => newest(join(path, n))));
}

function fail(message) {
  console.error(`patentgpt prebuild: ${message}`);
  process.exit(1);
}

if (process.argv[2] === 'rebuild') {
  // As prebuildify's node-gyp: leave the addon in build/Release, where prebuildify picks it up.
  const fresh = existsSync(localBuild) && statSync(localBuild).mtimeMs >= Math.max(...['native', 'bindings', 'CMakeLists.txt'].map((p) => newest(join(root, p))));
  if (existsSync(localBuild) && (fresh || process.env.PATENTGPT_PREBUILD_REUSE === '1')) {
    console.log(`patentgpt prebuild: reusing ${localBuild}${fresh ? ' (newer than the sources)' : ' (PATENTGPT_PREBUILD_REUSE=1)'}`);
    process.exit(0);
  }
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const built = spawnSync(process.execPath, [cmakeJs, 'rebuild', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
  process.exit(built.status ?? 1);
}

const requireCuda = process.argv.includes('--cuda');
const hadLocalBuild = existsSync(localBuild);
const outDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
rmSync(outDir, { recursive: true, force: true }); // no stale binary of an older name beside the new one
chmodSync(self, 0o755); // prebuildify runs its node-gyp without a shell
const prebuildify = require.resolve('prebuildify/bin.js');
const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--node-gyp', self], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) fail(`prebuildify failed (exit ${r.status}); see the build output above`);

const made = existsSync(outDir) ? readdirSync(outDir).filter((f) => f.endsWith('.node')) : [];
if (made.length !== 1) fail(`expected one .node file from prebuildify in ${outDir}, found ${made.join(', ') || 'none'}`);
const target = join(outDir, made[0]);
// prebuildify moved the local build into prebuilds/: put it back so this checkout keeps loading it.
if (hadLocalBuild && !existsSync(localBuild)) copyFileSync(target, localBuild);

// Load the binary in a child process (a broken one cannot take this script down) and say what it has.
const probe = spawnSync(process.execPath, ['-p', `JSON.stringify(require(${JSON.stringify(target)}).info())`], { encoding: 'utf8' });
if (probe.status !== 0) fail(`${target} does not load: ${probe.stderr.trim().split('\n').slice(-3).join(' ')}`);
const info = JSON.parse(probe.stdout);
console.log(`patentgpt prebuild: ${target} (${(statSync(target).size / 2 ** 20).toFixed(1)} MiB, CUDA ${info.cudaCompiled ? 'compiled in' : 'not compiled in'}, SIMD here ${info.simd})`);
if (requireCuda && !info.cudaCompiled) fail('--cuda: the binary has no CUDA kernels; build on a machine with nvcc on the PATH (PATENTGPT_CUDA=ON makes a missing nvcc an error)');
