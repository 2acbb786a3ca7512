// What the TRL parity tests share (test/models/trl-parity.test.ts, test/train/dpo-parity.test.ts,
// test/train/reward-trl-parity.test.ts): the live/fixture switch, the runner of a scripts/trl-*.py
// script, the committed fixture read and rewritten, the tiny folder's chat template, and the
// per-step comparison.
//
// Live where trl is installed (PATENTGPT_REQUIRE_PEERS=1 makes a missing peer a failure), else
// against the test's committed fixture (PATENTGPT_TRL_FROM_FIXTURE=1 takes it even then);
// PATENTGPT_WRITE_TRL_FIXTURE=1 rewrites the fixture from a live run.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { afterAll, expect } from 'vitest';
import { findPython } from '../scripts/bench/_peers.js';
import { LlamaForCausalLM, loadPretrained, saveLora, savePretrained, validateConfig } from '../src/models/index.js';
import { applyLora } from '../src/nn/lora.js';
import { SentencePieceTokenizer } from '../src/tokenizer/sentencepiece.js';
import { readMetrics } from '../src/train/metrics.js';

const repo = new URL('../', import.meta.url).pathname;

/** The Python modules every TRL parity script imports. */
export const TRL_MODULES = ['torch', 'transformers', 'peft', 'trl', 'datasets'];

/** LoRA settings the parity tests give both sides (ours, and PEFT loading our initial adapter). */
export const TRL_LORA = { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'], seed: 3 };

/** The tiny LLaMA the parity folders hold (LLaMA-2's vocabulary, two layers, grouped-query attention). */
export const TRL_TINY_MODEL = { vocabSize: 32000, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, maxSeqLen: 256 };

/** The shape of every parity run: ten steps of batches of 2, sequences up to 128 tokens. */
export const TRL_RUN = { steps: 10, batchSize: 2, seqLen: 128 } as const;

/**
 * A temporary folder for one parity test file, removed after it (afterAll), and the paths the
 * tests put in it: the model folder, the data file (`dataName`), and the initial LoRA adapter.
 */
export function trlWorkspace(prefix: string, dataName: string): { root: string; modelDir: string; dataFile: string; adapterDir: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  return { root, modelDir: path.join(root, 'model'), dataFile: path.join(root, dataName), adapterDir: path.join(root, 'adapter0') };
}

/** The IP notions the parity data talk about. */
export const IP_TOPICS = ['a patent claim', 'prior art', 'novelty', 'an inventive step', 'a utility model', 'a design patent', 'a trademark', 'copyright', 'a license', 'infringement'];

export interface TrlPeer {
  /** True where the script runs here; false where the fixture stands in. */
  live: boolean;
  python: string | null;
  /** Why the fixture is used ('' when live). */
  why: string;
}

/** Which side of the live/fixture switch this run is on. */
export function trlPeer(modules: string[] = TRL_MODULES): TrlPeer {
  if (process.env.PATENTGPT_TRL_FROM_FIXTURE === '1') return { live: false, python: null, why: 'PATENTGPT_TRL_FROM_FIXTURE=1' };
  const { python, why } = findPython(modules);
  return { live: python !== null, python, why };
}

/** The describe title's suffix: live, or the fixture and why. */
export const trlMode = (peer: TrlPeer): string => (peer.live ? 'live' : `committed fixture: ${peer.why}`);

/** Runs `scripts/<script> run <args...> <out>`-style: `args` as given, offline; returns the JSON the script wrote to `out`. */
export function runTrlScript<T>(peer: TrlPeer, script: string, args: string[], out: string): T {
  if (!peer.python) throw new Error(`runTrlScript(${script}): no Python (${peer.why})`);
  execFileSync(peer.python, [path.join(repo, 'scripts', script), ...args], {
    env: { ...process.env, HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1' }, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000,
  });
  return JSON.parse(fs.readFileSync(out, 'utf8')) as T;
}

/** The committed fixture `test/fixtures/<name>`, read when not live (null when live). */
export function trlGolden<G>(peer: TrlPeer, name: string): G | null {
  return peer.live ? null : (JSON.parse(fs.readFileSync(path.join(repo, 'test/fixtures', name), 'utf8')) as G);
}

/** Rewrites `test/fixtures/<name>` when live and PATENTGPT_WRITE_TRL_FIXTURE=1; `make` is called only then. */
export function writeTrlGolden<G>(peer: TrlPeer, name: string, make: () => G | null): void {
  if (!peer.live || process.env.PATENTGPT_WRITE_TRL_FIXTURE !== '1') return;
  const g = make();
  if (g !== null) fs.writeFileSync(path.join(repo, 'test/fixtures', name), JSON.stringify(g) + '\n');
}

/** Gives `modelDir` the ChatML template with {% generation %} blocks (tokenizer_config.json) both sides render with. */
export function copyChatTemplate(modelDir: string): void {
  fs.copyFileSync(path.join(repo, 'test/tokenizer/fixtures/chat-templates/chatml-generation/tokenizer_config.json'), path.join(modelDir, 'tokenizer_config.json'));
}

/**
 * The tiny LLaMA folder of the causal parity tests (sft, dpo): TRL_TINY_MODEL (seed 7, std 0.05)
 * with LLaMA-2's tokenizer.model and the ChatML template, `lines` written to `dataFile`, and the
 * LoRA adapter both sides start from in `adapterDir`: ours, as the stages make it (TRL_LORA's
 * seed, B zeros), which PEFT loads.
 */
export async function makeTinyLlamaFolder(modelDir: string, dataFile: string, lines: string[], adapterDir: string): Promise<void> {
  const m = new LlamaForCausalLM(validateConfig(TRL_TINY_MODEL), { seed: 7, initStd: 0.05 });
  await savePretrained(m, modelDir, { tokenizer: SentencePieceTokenizer.llama2() });
  m.dispose();
  copyChatTemplate(modelDir);
  fs.writeFileSync(dataFile, lines.join('\n') + '\n');
  const base = await loadPretrained(modelDir);
  applyLora(base, TRL_LORA);
  await saveLora(base, adapterDir, { baseModel: modelDir });
  base.dispose();
}

/**
 * The stage config fields every parity run shares: the folder as model, init, tokenizer and chat
 * template; the data file in order with no held-out split; AdamW (betas 0.9/0.999, eps 1e-8, no
 * weight decay) at a constant rate with no warm-up; a metrics line every step, nothing else.
 */
export function trlStageFields(modelDir: string, dataFile: string, o: { seqLen: number; batchSize: number; steps: number; lr: number; gradClip: number }): Record<string, unknown> {
  return {
    model: modelDir, init: modelDir, tokenizer: path.join(modelDir, 'tokenizer.model'), chatTemplate: { path: modelDir },
    data: { sources: [dataFile], valFraction: 0, shuffle: false },
    seqLen: o.seqLen, batchSize: o.batchSize, steps: o.steps,
    optimizer: { lr: o.lr, weightDecay: 0, gradClip: o.gradClip, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
    schedule: { kind: 'constant', warmupSteps: 0 }, evalEvery: 0, checkpointEvery: 0, logEvery: 1, threads: 1, seed: 0,
  };
}

/** The logged training records of a run (those with a loss), in step order. */
export const stepRecords = (runDir: string): ReturnType<typeof readMetrics> => readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.loss !== undefined);

/** Max |a[i] - b[i]|, after checking both have as many steps. */
export function maxDiff(a: number[], b: number[]): number {
  expect(a).toHaveLength(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
}
