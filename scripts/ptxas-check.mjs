#!/usr/bin/env node
// The ptxas resource check of the CUDA kernels (native/cuda/*.cu), run by ctest (native/CMakeLists.txt)
// over the reports the build filed (scripts/ptxas-capture.sh), or on its own, compiling each file:
//
//   node scripts/ptxas-check.mjs --reports build-native/ptxas --sources native/cuda
//   node scripts/ptxas-check.mjs --compile [--arch sm_90] [files.cu ...]   (default: native/cuda/*.cu)
//
// For every kernel (entry function) and architecture in ptxas's -v report it fails when:
//   - the kernel spills to local memory (spill stores or loads > 0): registers are too few for it;
//   - it declares no __launch_bounds__(threads[, minBlocks]) in its source, so nothing says what
//     launch configuration its resources must fit;
//   - registers x threads x minBlocks exceed the 64K registers of an SM (sm_80 .. sm_100);
//   - static shared memory exceeds 48 KiB, or static + the dynamic shared memory the kernel
//     declares (a comment "dynamic smem: <expr> bytes" in the lines just above it) exceeds 227 KiB.
// It prints one line per kernel and exits 1 on any failure.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
export const REGISTERS_PER_SM = 65536;
export const STATIC_SMEM_LIMIT = 48 * 1024;
export const SMEM_LIMIT = 227 * 1024;

/** Kernels of one ptxas -v report: [{ mangled, arch, registers, smem, stack, spillStores, spillLoads }]. */
export function parseReport(text) {
  const props = new Map(); // function -> { stack, spillStores, spillLoads }
  const kernels = [];
  let entry = null;
  let propsFor = null;
  for (const line of text.split('\n')) {
    let m;
    if ((m = /Compiling entry function '([^']+)' for '(\w+)'/.exec(line))) {
      entry = { mangled: m[1], arch: m[2], registers: 0, smem: 0, stack: 0, spillStores: 0, spillLoads: 0 };
      kernels.push(entry);
    } else if ((m = /Function properties for (\S+)/.exec(line))) {
      propsFor = m[1];
    } else if ((m = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line))) {
      const p = { stack: Number(m[1]), spillStores: Number(m[2]), spillLoads: Number(m[3]) };
      if (propsFor) props.set(propsFor, p);
      if (entry && propsFor === entry.mangled) Object.assign(entry, p);
    } else if ((m = /Used (\d+) registers/.exec(line)) && entry) {
      entry.registers = Number(m[1]);
      const s = /(\d+) bytes smem/.exec(line);
      entry.smem = s ? Number(s[1]) : 0;
    }
  }
  return kernels;
}

/** Numeric constants (constexpr ints and #defines) of the sources' headers, for launch-bound expressions. */
export function constantsOf(texts) {
  const out = new Map();
  for (const text of texts) {
    for (const m of text.matchAll(/constexpr\s+(?:int|int64_t|int32_t|unsigned|size_t|uint32_t)\s+([A-Za-z_]\w*)\s*=\s*([^;,]+)[;,]/g))
      out.set(m[1], m[2]);
    for (const m of text.matchAll(/#define\s+([A-Za-z_]\w*)\s+\(?\s*([\d\s*+()]+)\)?\s*$/gm)) out.set(m[1], m[2]);
  }
  return out;
}

/** The value of a launch-bound expression: numbers, known constants, + - * / and parentheses. */
export function evaluate(expr, constants, depth = 0) {
  if (depth > 8) return NaN;
  const replaced = expr.replace(/[A-Za-z_][\w:]*/g, (id) => {
    const name = id.split('::').pop();
    if (!constants.has(name)) return 'NaN';
    return `(${evaluate(constants.get(name), constants, depth + 1)})`;
  });
  if (!/^[\d\s()*+\-/.NaN]+$/.test(replaced)) return NaN;
  try {
    return Number(Function(`"use strict"; return (${replaced});`)());
  } catch {
    return NaN;
  }
}

/** __global__ kernels of one source: name -> { threads, minBlocks, dynamicSmem } (threads NaN: none declared). */
export function launchBoundsOf(source, constants) {
  const out = new Map();
  const re = /__global__\s+(?:static\s+)?void\s+(?:__launch_bounds__\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s+)?([A-Za-z_]\w*)\s*\(/g;
  for (const m of source.matchAll(re)) {
    const name = m[2];
    let threads = NaN;
    let minBlocks = 1;
    if (m[1] !== undefined) {
      const parts = m[1].split(',');
      threads = evaluate(parts[0], constants);
      if (parts[1]) minBlocks = evaluate(parts[1], constants);
    }
    const before = source.slice(0, m.index).split('\n').slice(-4).join('\n');
    const dyn = /dynamic smem:\s*([^\n]*?)\s*bytes/.exec(before);
    out.set(name, { threads, minBlocks, dynamicSmem: dyn ? evaluate(dyn[1], constants) : 0 });
  }
  return out;
}

/** The kernel a mangled name belongs to: the longest source kernel name it carries as <length><name>. */
export function kernelName(mangled, names) {
  let best = null;
  for (const name of names) if (mangled.includes(`${name.length}${name}`) && (!best || name.length > best.length)) best = name;
  return best;
}

/** Failures (strings) of the kernels of one source file, and one row per kernel for the table. */
export function checkKernels(file, kernels, bounds) {
  const failures = [];
  const rows = [];
  for (const k of kernels) {
    const name = kernelName(k.mangled, [...bounds.keys()]) ?? k.mangled;
    const b = bounds.get(name);
    const why = [];
    if (k.spillStores > 0 || k.spillLoads > 0) why.push(`spills ${k.spillStores} bytes stored / ${k.spillLoads} loaded to local memory`);
    if (!b || !Number.isFinite(b.threads)) why.push('declares no __launch_bounds__ (or one this check cannot evaluate)');
    else {
      const regs = k.registers * b.threads * (Number.isFinite(b.minBlocks) ? b.minBlocks : 1);
      if (regs > REGISTERS_PER_SM)
        why.push(`${k.registers} registers x ${b.threads} threads x ${b.minBlocks} blocks = ${regs} > ${REGISTERS_PER_SM} per SM`);
      if (k.smem > STATIC_SMEM_LIMIT) why.push(`${k.smem} bytes of static shared memory > ${STATIC_SMEM_LIMIT}`);
      const dyn = Number.isFinite(b.dynamicSmem) ? b.dynamicSmem : 0;
      if (k.smem + dyn > SMEM_LIMIT) why.push(`${k.smem} + ${dyn} bytes of shared memory > ${SMEM_LIMIT}`);
    }
    rows.push({ file, kernel: name, arch: k.arch, registers: k.registers, threads: b?.threads ?? NaN, smem: k.smem, spills: k.spillStores + k.spillLoads, ok: why.length === 0 });
    for (const w of why) failures.push(`${file}: ${name} (${k.arch}): ${w}`);
  }
  return { failures, rows };
}

function headerTexts(sourcesDir) {
  const dirs = [sourcesDir, path.join(root, 'native', 'include', 'patentgpt')];
  const texts = [];
  for (const d of dirs) {
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)) if (/\.(h|cuh|cu)$/.test(f)) texts.push(readFileSync(path.join(d, f), 'utf8'));
  }
  return texts;
}

/** Checks reports: [{ source (path of the .cu), report (ptxas -v text) }]. */
export function checkAll(items, sourcesDir) {
  const constants = constantsOf(headerTexts(sourcesDir));
  const failures = [];
  const rows = [];
  for (const { source, report } of items) {
    const text = readFileSync(source, 'utf8');
    for (const c of constantsOf([text])) constants.set(c[0], c[1]);
    const kernels = parseReport(report);
    const r = checkKernels(path.basename(source), kernels, launchBoundsOf(text, constants));
    failures.push(...r.failures);
    rows.push(...r.rows);
  }
  return { failures, rows };
}

function compileReports(files, arch) {
  const nvcc = process.env.NVCC ?? 'nvcc';
  const dir = mkdtempSync(path.join(tmpdir(), 'ptxas-'));
  try {
    return files.map((source) => {
      const args = ['-std=c++17', `-arch=${arch}`, '-Xptxas', '-v', '-I', path.join(root, 'native', 'include'), '-c', source, '-o', path.join(dir, `${path.basename(source)}.o`)];
      // ptxas writes its report to stderr.
      const r = spawnSync(nvcc, args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`nvcc failed on ${source}:\n${r.stderr || r.error?.message || ''}`);
      const report = `${r.stdout}\n${r.stderr}`;
      return { source, report };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function main(argv) {
  const opt = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const sourcesDir = path.resolve(opt('--sources') ?? path.join(root, 'native', 'cuda'));
  let items;
  if (argv.includes('--compile')) {
    const files = argv.filter((a, i) => a.endsWith('.cu') && argv[i - 1] !== '--sources');
    const list = files.length ? files.map((f) => path.resolve(f)) : readdirSync(sourcesDir).filter((f) => f.endsWith('.cu')).map((f) => path.join(sourcesDir, f));
    items = compileReports(list, opt('--arch') ?? 'sm_90');
  } else {
    const reports = opt('--reports');
    if (!reports || !existsSync(reports)) {
      console.error(`ptxas-check: no report folder ${reports ?? '(give --reports DIR or --compile)'}; build with CUDA first`);
      return 1;
    }
    items = [];
    for (const f of readdirSync(reports).filter((f) => f.endsWith('.ptxas.txt'))) {
      const cu = /^(.*\.cu)\.(o|obj)\.ptxas\.txt$/.exec(f);
      if (!cu) continue;
      const source = path.join(sourcesDir, cu[1]);
      if (existsSync(source)) items.push({ source, report: readFileSync(path.join(reports, f), 'utf8') });
    }
    const expected = readdirSync(sourcesDir).filter((f) => f.endsWith('.cu'));
    const missing = expected.filter((f) => !items.some((i) => path.basename(i.source) === f));
    if (missing.length) {
      console.error(`ptxas-check: no report for ${missing.join(', ')} under ${reports}; rebuild so every .cu file is compiled`);
      return 1;
    }
  }
  const { failures, rows } = checkAll(items, sourcesDir);
  for (const r of rows)
    console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.file.padEnd(20)} ${r.kernel.padEnd(34)} ${r.arch.padEnd(7)} regs ${String(r.registers).padStart(3)} x ${String(r.threads).padStart(4)} threads, smem ${r.smem}, spills ${r.spills}`);
  if (rows.length === 0) failures.push('no kernels found in the ptxas reports');
  for (const f of failures) console.error(`ptxas-check: ${f}`);
  console.log(`ptxas-check: ${rows.length} kernel builds, ${failures.length} failures`);
  return failures.length ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) process.exitCode = main(process.argv.slice(2));
