// Shared by the SFT tests: a tiny byte-level model folder and Alpaca records whose answers follow from their prompts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { LlamaForCausalLM, savePretrained, type ModelConfig } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';

export const TINY: Partial<ModelConfig> = { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 160, maxSeqLen: 128 };
const WORDS = ['apple', 'river', 'patent', 'claim', 'stone', 'light', 'green', 'table', 'cloud', 'metal', 'paper', 'glass', 'water', 'sound', 'bread', 'chair'];

/** Alpaca records: reverse a word (the answer is a function of the prompt, so held-out loss can fall). */
export function writeAlpaca(file: string, n = 240): void {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = WORDS[i % WORDS.length]! + WORDS[(i * 7 + 3) % WORDS.length]!.slice(0, 1 + (i % 4));
    lines.push(JSON.stringify({ instruction: 'Reverse the word.', input: w, output: [...w].reverse().join('') }));
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

/** Preference pairs where the chosen answer names the right claim number and the rejected one does not (synthetic, no data needed). */
export function writeClaimPairs(file: string, n: number): void {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = (i % 9) + 1;
    lines.push(JSON.stringify({ prompt: `Which claim is independent? ${i}`, chosen: `Claim ${k} is independent.`, rejected: `Claim ${k} is dependent, see ${k + 1}.` }));
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

/** A random tiny model folder (the `init` of the runs). */
export async function writeInit(dir: string, seed = 5): Promise<void> {
  const m = new LlamaForCausalLM(TINY as ModelConfig, { seed });
  try {
    await savePretrained(m, dir, { tokenizer: new ByteTokenizer() });
  } finally {
    m.dispose();
  }
}


/**
 * A temporary folder for one test file, removed after it, with the Alpaca records (reverse.jsonl)
 * and the init model folder (init/) written before its tests: what every SFT test file sets up.
 */
export function sftWorkspace(prefix: string): { root: string; dataFile: string; initDir: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const dataFile = path.join(root, 'reverse.jsonl');
  const initDir = path.join(root, 'init');
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  beforeAll(async () => {
    writeAlpaca(dataFile);
    await writeInit(initDir);
  });
  return { root, dataFile, initDir };
}
