// The shared data as the tokenizer tests and bench see it: every text document under
// ../shared/data (or $PATENTGPT_DATA), lines split on '\n' only, and the Python peers.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { findPython } from '../../scripts/bench/_peers.js';
import { packageRoot } from '../../src/package.js';

export function dataDir(): string | null {
  const dir = process.env.PATENTGPT_DATA ?? join(packageRoot(), '..', 'shared', 'data');
  return existsSync(join(dir, 'SOURCES.md')) || existsSync(join(dir, 'tokenizers')) ? dir : null;
}

export function llama2ModelPath(): string | null {
  const dir = dataDir();
  const path = dir ? join(dir, 'tokenizers', 'llama2', 'tokenizer.model') : null;
  return path && existsSync(path) ? path : null;
}

export interface Doc {
  path: string; // relative to the data folder
  text: string;
}

const BINARY = /\.(model|gz|zip|bin|safetensors|gguf)$/i;
const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Every file of the data folder that is UTF-8 text, in a stable order. */
export function textDocuments(dir: string): Doc[] {
  const docs: Doc[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !BINARY.test(e.name)) {
        try {
          docs.push({ path: relative(dir, p), text: fatal.decode(readFileSync(p)) });
        } catch {
          /* not UTF-8: not a text document */
        }
      }
    }
  };
  walk(dir);
  return docs;
}

/** A deterministic sample of the lines of a document: every line when it has <= budget bytes. */
export function sampleLines(doc: Doc, budgetBytes: number, seed = 1): string[] {
  const lines = doc.text.split('\n');
  if (Buffer.byteLength(doc.text) <= budgetBytes) return lines;
  let s = seed >>> 0;
  const rand = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const out: string[] = [];
  let bytes = 0;
  for (let tries = 0; bytes < budgetBytes && tries < lines.length * 2; tries++) {
    const line = lines[Math.floor(rand() * lines.length)]!;
    out.push(line);
    bytes += Buffer.byteLength(line) + 1;
  }
  return out;
}

export function sentencepiecePython(): { python: string | null; why: string } {
  return findPython(['sentencepiece']);
}

/**
 * The Python peers (sentencepiece, spm_train, transformers) in one long-lived process per test
 * file (test/tokenizer/peer.py serve): started on the first request, so Python and its imports
 * start once, not once per comparison. close() it in afterAll.
 */
export class PythonPeer {
  readonly #python: string;
  #child: ChildProcessWithoutNullStreams | null = null;
  #pending: { resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];
  #buffer = '';

  constructor(python: string) {
    this.#python = python;
  }

  #start(): ChildProcessWithoutNullStreams {
    const child = spawn(this.#python, [join(import.meta.dirname, 'peer.py'), 'serve'], {
      env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_VERBOSITY: 'error', OMP_NUM_THREADS: '1' },
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      this.#buffer += chunk;
      for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        const reply = JSON.parse(line) as { error?: string };
        const p = this.#pending.shift()!;
        if (reply && typeof reply === 'object' && 'error' in reply) p.reject(new Error(`peer.py: ${reply.error}`));
        else p.resolve(reply);
      }
    });
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    child.on('close', (code) => {
      for (const p of this.#pending.splice(0)) p.reject(new Error(`peer.py exited (${code})`));
      this.#child = null;
    });
    return child;
  }

  #call<T>(req: object): Promise<T> {
    this.#child ??= this.#start();
    const child = this.#child;
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ resolve: resolve as (v: unknown) => void, reject });
      child.stdin.write(JSON.stringify(req) + '\n');
    });
  }

  /** Ids sentencepiece gives each item (a string, or bytes). */
  encode(model: string, items: (string | Uint8Array)[]): Promise<number[][]> {
    return this.#call({ op: 'encode', model, items: items.map((t) => (typeof t === 'string' ? { text: t } : { hex: Buffer.from(t).toString('hex') })) });
  }

  /** sentencepiece's decode of each id sequence. */
  decode(model: string, seqs: ArrayLike<number>[]): Promise<string[]> {
    return this.#call({ op: 'decode', model, seqs: seqs.map((s) => Array.from(s)) });
  }

  /** spm_train on a corpus file; the model is written to `${prefix}.model`. */
  train(input: string, prefix: string, options: Record<string, unknown>): Promise<{ seconds: number }> {
    return this.#call({ op: 'train', input, prefix, options });
  }

  /** transformers beside sentencepiece on the same texts (see peer.py, op "hf"). */
  hf(model: string, texts: string[], peers: string[], auto = false): Promise<Record<string, number[][] | string[]>> {
    return this.#call({ op: 'hf', model, texts, peers, auto });
  }

  async close(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const closed = new Promise((resolve) => child.once('close', resolve));
    child.stdin.end();
    await closed;
  }
}

/** Index of the first difference of two id sequences, or -1 when they are equal. */
export function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** The string TextEncoder encodes: lone surrogates as U+FFFD (String.prototype.toWellFormed, ES2024). */
export function wellFormed(s: string): string {
  return (s as unknown as { toWellFormed(): string }).toWellFormed();
}
