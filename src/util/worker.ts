// Starts a worker thread on one of this package's modules, from dist/ or from a source checkout.
// dist/: the compiled .js beside the caller. Source checkout (run through tsx): the .ts entry
// and everything it imports from this package, bundled once per process by esbuild (tsx's own
// compiler) into one file under the temp folder, so a worker loads plain JavaScript instead of
// registering tsx and compiling every module again (that took 0.3-1 s per worker here). The
// bundle keeps each module's own import.meta.url and imports packages from node_modules by path,
// so the addon, the package root and package files resolve as they do unbundled. Without
// esbuild, the worker registers tsx as before.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

const bundles = new Map<string, Promise<string>>();

type ResolveArgs = { path: string; kind: string; resolveDir: string; pluginData?: { inner?: boolean } };
type EsbuildPlugin = {
  name: string;
  setup(b: {
    onResolve(o: { filter: RegExp }, f: (a: ResolveArgs) => Promise<object | undefined>): void;
    onLoad(o: { filter: RegExp }, f: (a: { path: string }) => object): void;
    resolve(path: string, o: { kind: string; resolveDir: string; pluginData: object }): Promise<{ path: string; errors: object[] }>;
  }): void;
};
type Esbuild = { build(o: Record<string, unknown>): Promise<{ outputFiles: { text: string }[] }> };

/** esbuild comes with tsx, which a source checkout runs under; dist/ never needs it. */
function loadEsbuild(): Esbuild | null {
  try {
    return createRequire(import.meta.url)('esbuild') as Esbuild;
  } catch {
    return null;
  }
}

/** The bundle of a .ts entry (a file path), built on first use in this process. */
function bundle(esbuild: Esbuild, entry: string): Promise<string> {
  let done = bundles.get(entry);
  if (!done) bundles.set(entry, (done = build(esbuild, entry)));
  return done;
}

async function build(esbuild: Esbuild, entry: string): Promise<string> {
  const keepModuleUrls: EsbuildPlugin = {
    name: 'patentgpt-worker',
    setup(b) {
      // packages and built-ins stay imports, packages by absolute URL (the bundle lives elsewhere)
      b.onResolve({ filter: /^[^./]/ }, async (a) => {
        if (a.pluginData?.inner) return undefined;
        if (isBuiltin(a.path)) return { path: a.path, external: true };
        const r = await b.resolve(a.path, { kind: a.kind, resolveDir: a.resolveDir, pluginData: { inner: true } });
        return r.errors.length > 0 ? { errors: r.errors } : { path: pathToFileURL(r.path).href, external: true };
      });
      b.onLoad({ filter: /\.ts$/ }, (a: { path: string }) => ({
        contents: readFileSync(a.path, 'utf8').replace(/\bimport\.meta\.url\b/g, JSON.stringify(pathToFileURL(a.path).href)),
        loader: 'ts',
      }));
    },
  };
  const out = await esbuild.build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'node', target: 'node20', write: false, plugins: [keepModuleUrls], logLevel: 'silent' });
  const text = out.outputFiles[0]!.text;
  const dir = join(os.tmpdir(), `patentgpt-workers-${os.userInfo().uid}`);
  const file = join(dir, `${createHash('sha256').update(text).digest('hex').slice(0, 24)}.mjs`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file); // atomic: a concurrent process writes the same bytes
  }
  return file;
}

/** Code for an eval worker that registers tsx, then imports the .ts entry (no esbuild). */
function tsxBootstrap(ts: URL): string {
  // tsx's ESM API entry (its CommonJS twin cannot register the ESM loader from here)
  const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
  const exp = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!;
  const api = pathToFileURL(join(dirname(pkg), exp.import.default)).href;
  return `import(${JSON.stringify(api)}).then((m) => { (m.register ?? m.default.register)(); return import(${JSON.stringify(ts.href)}); });`;
}

/**
 * A worker on `js` (a URL of a compiled module beside the caller, e.g.
 * new URL('./scan-worker.js', import.meta.url)); in a source checkout, its .ts twin.
 */
export async function startWorker(js: URL, options: WorkerOptions = {}): Promise<Worker> {
  if (existsSync(fileURLToPath(js))) return new Worker(js, options);
  const ts = new URL(js.href.replace(/\.js$/, '.ts'));
  const esbuild = loadEsbuild();
  if (esbuild) return new Worker(pathToFileURL(await bundle(esbuild, fileURLToPath(ts))), options);
  return new Worker(tsxBootstrap(ts), { ...options, eval: true });
}
