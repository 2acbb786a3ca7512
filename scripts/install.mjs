#!/usr/bin/env node
// npm install hook: keep a loadable addon (a matching prebuild, or an earlier local build);
// otherwise build it from source with cmake-js (the fallback, and the way on other platforms).
// Loading never depends on this having run: src/native/loader.ts finds the same binaries and
// says how to build when there are none.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/**
 * Whether node-gyp-build finds a binary that loads here (a matching prebuild, or a local build),
 * as node-gyp-build-test checks it; in a child process, so a broken binary cannot crash npm.
 */
function loadable() {
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(require.resolve('node-gyp-build'))})(${JSON.stringify(root)})`], {
    stdio: 'ignore',
  });
  return probe.status === 0;
}

/** Newest modification time of the native sources (a checkout updated since the last build). */
function newestSource(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

// A local build older than the sources (a checkout updated since) lacks what they added, and
// node-gyp-build would still prefer it to a prebuild: rebuild. A published package has no build/.
const localBuild = join(root, 'build', 'Release', 'patentgpt.node');
const staleLocalBuild =
  existsSync(localBuild) &&
  Math.max(...['native', 'bindings'].map((d) => (existsSync(join(root, d)) ? newestSource(join(root, d)) : 0))) >
    statSync(localBuild).mtimeMs;

if (process.env.PATENTGPT_FORCE_BUILD !== '1' && !staleLocalBuild && loadable()) {
  console.log('patentgpt: using the existing native addon');
  process.exit(0);
}

console.log('patentgpt: building the native addon from source (cmake-js)...');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_BUILD_TYPE=Release'], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status !== 0) {
  console.error(
    'patentgpt: building the native addon failed. It needs cmake (>= 3.18) and a C++17 compiler ' +
      '(g++ or clang++); nvcc on the PATH adds CUDA kernels. Fix the toolchain, then run ' +
      "'npm run build:native'.",
  );
  process.exit(result.status ?? 1);
}
