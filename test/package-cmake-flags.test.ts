// The build from source (the fallback of npm install, and the way on other platforms) asks for
// nothing a platform may lack: AVX-512/AVX2 flags only on their own x86 kernel files (runtime
// dispatch), none of those files off x86, and the GNU-only linker flag only where the linker
// takes it. CMake is configured (never built) into temporary folders.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const cmake = spawnSync('cmake', ['--version']).status === 0 && spawnSync('c++', ['--version']).status === 0;
if (!cmake) console.warn('package-cmake-flags.test: skipped (no cmake or c++ on the PATH)');

interface CompileCommand {
  file: string;
  command: string;
}

describe.skipIf(!cmake)('native build flags', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'pg-cmake-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  function configure(src: string, name: string, ...args: string[]): string {
    const dir = join(tmp, name);
    const r = spawnSync('cmake', ['-S', src, '-B', dir, '-DPATENTGPT_CUDA=OFF', '-DPATENTGPT_NATIVE_TESTS=OFF', '-DCMAKE_EXPORT_COMPILE_COMMANDS=ON', ...args], { encoding: 'utf8' });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    return dir;
  }
  const commands = (dir: string): CompileCommand[] => JSON.parse(readFileSync(join(dir, 'compile_commands.json'), 'utf8')) as CompileCommand[];
  const base = (f: string): string => f.split('/').pop()!;

  it.runIf(process.arch === 'x64')('x86-64: ISA flags only on the *_avx512/*_avx2 kernel files, never the whole library', () => {
    const cmds = commands(configure(join(root, 'native'), 'x64'));
    const withAvx512 = cmds.filter((c) => c.command.includes('-mavx512f')).map((c) => base(c.file)).sort();
    expect(withAvx512.length).toBeGreaterThan(0);
    expect(withAvx512.every((f) => f.endsWith('_avx512.cpp')), withAvx512.join(', ')).toBe(true);
    const withAvx2 = cmds.filter((c) => c.command.includes('-mavx2')).map((c) => base(c.file));
    expect(withAvx2.every((f) => /_avx(2|512)\.cpp$/.test(f)), withAvx2.join(', ')).toBe(true);
    expect(cmds.some((c) => /-march=native|-mavx512f/.test(c.command) && !/_avx(2|512)\.cpp$/.test(c.file))).toBe(false);
    expect(cmds.every((c) => c.command.includes('PG_X86_KERNELS=1'))).toBe(true);
  }, 60_000);

  it('another processor (arm64): no x86 kernel files and no x86 flags', () => {
    const cmds = commands(configure(join(root, 'native'), 'arm64', '-DCMAKE_SYSTEM_NAME=Linux', '-DCMAKE_SYSTEM_PROCESSOR=aarch64'));
    expect(cmds.length).toBeGreaterThan(10);
    expect(cmds.map((c) => base(c.file)).filter((f) => /_avx/.test(f))).toEqual([]);
    expect(cmds.filter((c) => /-mavx|-mfma|-mf16c/.test(c.command))).toEqual([]);
    expect(cmds.every((c) => c.command.includes('PG_X86_KERNELS=0'))).toBe(true);
  }, 60_000);

  it('--exclude-libs is passed to a GNU linker and left out for one that refuses it (ld64, link.exe)', () => {
    const gnu = readFileSync(join(configure(root, 'gnu-ld'), 'CMakeFiles', 'patentgpt.dir', 'link.txt'), 'utf8');
    expect(gnu).toContain('-Wl,--exclude-libs,ALL');
    // A compiler driver whose linker refuses the flag, as Apple's ld64 does.
    const driver = join(tmp, 'ld64-like-c++');
    writeFileSync(driver, '#!/bin/sh\nfor a in "$@"; do case "$a" in *--exclude-libs*) echo "ld: unknown option: --exclude-libs" >&2; exit 1;; esac; done\nexec c++ "$@"\n');
    chmodSync(driver, 0o755);
    const other = readFileSync(join(configure(root, 'ld64-like', `-DCMAKE_CXX_COMPILER=${driver}`), 'CMakeFiles', 'patentgpt.dir', 'link.txt'), 'utf8');
    expect(other).not.toContain('--exclude-libs');
  }, 90_000);
});
