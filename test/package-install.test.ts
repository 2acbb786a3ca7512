// The published package as a user gets it: a clean copy of the work tree is prebuilt (prebuildify
// over the cmake-js build, reusing this checkout's build/Release instead of compiling again) and
// packed; the tarball is installed into a new project with compilers, cmake and nvcc shadowed by
// failing stand-ins, and the README's commands run from the installed package.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const localBuild = join(root, 'build', 'Release', 'patentgpt.node');
const skip =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? 'the prebuild this test packs is linux-x64'
    : !existsSync(localBuild)
      ? `no ${localBuild} to prebuild from: run npm run build:native (npm ci does) first`
      : null;
if (skip) console.warn(`package-install.test: skipped (${skip})`);

const NO_TOOLS = ['cc', 'gcc', 'g++', 'c++', 'clang', 'clang++', 'cmake', 'make', 'ninja', 'nvcc'];

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status}:\n${r.stdout?.slice(-3000)}\n${r.stderr?.slice(-3000)}`);
  return r;
}

describe.skipIf(skip !== null)('npm pack + npm install of the tarball', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'pg-package-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('installs with no compiler on the PATH, loads the prebuilt binary, and runs the README commands', () => {
    // A clean copy of the work tree (tracked and new files, as a release checkout), timestamps kept
    // so the copied build/Release counts as newer than the sources it was built from.
    const stage = join(tmp, 'stage');
    const listed = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' }).split('\0');
    for (const f of listed) {
      if (!f || f.startsWith('test/') || !existsSync(join(root, f))) continue;
      cpSync(join(root, f), join(stage, f), { preserveTimestamps: true });
    }
    symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'));
    cpSync(localBuild, join(stage, 'build', 'Release', 'patentgpt.node'), { preserveTimestamps: true });

    // npm pack runs prepack (the prebuild) and prepare (tsc); PATENTGPT_PREBUILD_REUSE: this
    // checkout's binary even when some source is newer (the test checks packaging, not the build).
    const packed = run('npm', ['pack', '--json', '--pack-destination', tmp], stage, { ...process.env, PATENTGPT_PREBUILD_REUSE: '1' });
    const manifest = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const paths = manifest[0]!.files.map((f) => f.path);
    for (const want of ['prebuilds/linux-x64/patentgpt.node', 'dist/src/cli/main.js', 'scripts/install.mjs', 'examples/tiny-stage1.json', 'examples/README.md', 'CMakeLists.txt', 'native/CMakeLists.txt'])
      expect(paths, want).toContain(want);
    expect(paths.filter((p) => p.startsWith('build/') || p.startsWith('test/') || p.startsWith('src/'))).toEqual([]);
    const tarball = join(tmp, manifest[0]!.filename);

    // A user's project on a machine with no toolchain: every compiler, cmake and nvcc fail.
    const shims = join(tmp, 'no-toolchain');
    mkdirSync(shims);
    for (const t of NO_TOOLS) {
      writeFileSync(join(shims, t), `#!/bin/sh\necho "${t}: not installed on this machine" >&2\nexit 127\n`);
      chmodSync(join(shims, t), 0o755);
    }
    const env = { ...process.env, PATH: `${shims}${delimiter}${process.env.PATH}` };
    const project = join(tmp, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'pg-user', version: '1.0.0', private: true, type: 'module' }));
    expect(spawnSync('g++', ['--version'], { env }).status).toBe(127);
    run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], project, env);
    const installed = join(project, 'node_modules', 'patentgpt');
    expect(existsSync(join(installed, 'build')), 'no build from source').toBe(false);

    const info = JSON.parse(run('npx', ['patentgpt', 'info', '--json'], project, env).stdout) as { version: string; cudaCompiled: boolean; simd: string };
    expect(info.version).toBe((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version);
    expect(info.cudaCompiled).toBe((JSON.parse(execFileSync(process.execPath, ['-p', `JSON.stringify(require(${JSON.stringify(localBuild)}).info())`], { encoding: 'utf8' })) as { cudaCompiled: boolean }).cudaCompiled);

    // README: copy the examples out of the installed package, then its commands run as written.
    cpSync(join(installed, 'examples'), join(project, 'examples'), { recursive: true });
    run('npx', ['patentgpt', 'pretrain', '--config', 'examples/tiny-stage1.json', '--steps', '2', '--quiet'], project, env);
    const ckpt = join(project, 'runs', 'tiny-stage1', 'checkpoints', 'step-2');
    const out = run('npx', ['patentgpt', 'generate', '--model', ckpt, '--prompt', 'Claim 1.', '--max-tokens', '8', '--ignore-eos'], project, env);
    expect(out.stderr).toMatch(/8 new .* finish: length/);
  }, 300_000);
});
