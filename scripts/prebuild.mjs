#!/usr/bin/env node
// npm run prebuild: builds the addon (CUDA compiled in when nvcc is found) and lays it out as
// prebuilds/<platform>-<arch>/patentgpt.napi.node, the name node-gyp-build looks for first.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const built = spawnSync(process.execPath, [cmakeJs, 'rebuild', '--CDCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
if (built.status !== 0) process.exit(built.status ?? 1);
const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
const target = join(dir, 'patentgpt.napi.node');
copyFileSync(join(root, 'build', 'Release', 'patentgpt.node'), target);
console.log(`patentgpt: prebuild written to ${target}`);
