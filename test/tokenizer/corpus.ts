// The shared data as the tokenizer tests and bench see it: every text document under
// ../shared/data (or $PATENTGPT_DATA), lines split on '\n' only, and the sentencepiece peer.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

const script = (): string => join(packageRoot(), 'scripts', 'tokenizer-reference.py');

/** Ids sentencepiece gives each item (a string, or bytes), through scripts/tokenizer-reference.py. */
export function sentencepieceEncode(python: string, model: string, items: (string | Uint8Array)[]): number[][] {
  const dir = mkdtempSync(join(tmpdir(), 'spm-'));
  try {
    const input = items.map((t) => (typeof t === 'string' ? { text: t } : { hex: Buffer.from(t).toString('hex') }));
    writeFileSync(join(dir, 'in.json'), JSON.stringify(input));
    execFileSync(python, [script(), 'encode', model, join(dir, 'in.json'), join(dir, 'out.json')], { stdio: 'inherit' });
    return JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as number[][];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** sentencepiece's decode of each id sequence. */
export function sentencepieceDecode(python: string, model: string, seqs: ArrayLike<number>[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'spm-'));
  try {
    writeFileSync(join(dir, 'in.json'), JSON.stringify(seqs.map((s) => Array.from(s))));
    execFileSync(python, [script(), 'decode', model, join(dir, 'in.json'), join(dir, 'out.json')], { stdio: 'inherit' });
    return JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as string[];
  } finally {
    rmSync(dir, { recursive: true, force: true });
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
