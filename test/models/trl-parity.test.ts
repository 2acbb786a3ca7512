// `patentgpt sft` against TRL's SFTTrainer (scripts/trl-parity.py): on a tiny LLaMA folder (LLaMA-2's
// tokenizer.model, a ChatML template with {% generation %} blocks in its tokenizer_config.json) and
// the same 20 conversations (multi-turn, some with a system prompt), in file order, f32, one
// conversation a row (packing off), the loss on the assistant tokens only, AdamW at a constant
// learning rate: the per-step losses of 10 steps agree within 1e-4, full fine-tuning (with
// gradient clipping), with gradient accumulation (TRL's token-weighted step loss) and LoRA (both sides starting from the same adapter, saved by us, loaded by
// PEFT). The token ids and labels TRL trained on are compared with our rendered examples first.
//
// Live where trl is installed, else against test/fixtures/trl-sft-golden.json (test/trl-helpers.ts
// has the switch). The folder and data are made here, deterministically, so the fixture holds only
// TRL's output.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSftData } from '../../src/data/sft/index.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import { validateStageConfig, type SftConfig } from '../../src/train/config.js';
import { sft, sftRenderer } from '../../src/train/stages/sft.js';
import { IP_TOPICS, TRL_LORA, TRL_RUN, makeTinyLlamaFolder, maxDiff, runTrlScript, stepRecords, trlGolden, trlMode, trlPeer, trlStageFields, writeTrlGolden, trlWorkspace } from '../trl-helpers.js';

const FIXTURE = 'trl-sft-golden.json';
const { root, modelDir, dataFile, adapterDir } = trlWorkspace('pgpt-trl-', 'conversations.jsonl');

const { steps: STEPS, batchSize: BATCH, seqLen: SEQ } = TRL_RUN;
const LORA = TRL_LORA;
interface Case { lr: number; gradClip: number; batchSize: number; gradAccum: number; lora?: typeof LORA }
const CASES: Record<'full' | 'accum' | 'lora', Case> = {
  full: { lr: 1e-3, gradClip: 1, batchSize: BATCH, gradAccum: 1 },
  // one conversation a micro-batch, two a step: TRL weighs each by its tokens (num_items_in_batch)
  accum: { lr: 3e-3, gradClip: 0, batchSize: 1, gradAccum: BATCH },
  lora: { lr: 1e-2, gradClip: 0, batchSize: BATCH, gradAccum: 1, lora: LORA },
};
interface TrlRun { versions: Record<string, string>; losses: number[]; batches: { input_ids: number[][]; labels: number[][]; attention_mask: number[][] }[] }
interface Golden { versions: Record<string, string>; cases: Record<string, { losses: number[] }>; examples: { ids: number[]; labels: number[] }[] }

/** The conversations: Q&A on IP notions, every third with a system prompt, every second two turns. */
function conversations(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < STEPS * BATCH; i++) {
    const t = IP_TOPICS[i % IP_TOPICS.length]!;
    const messages: { role: string; content: string }[] = [];
    if (i % 3 === 0) messages.push({ role: 'system', content: 'You are PatentGPT, an assistant for intellectual property.' });
    messages.push({ role: 'user', content: `What is ${t}?` }, { role: 'assistant', content: `In short, ${t} is a notion of IP law (case ${i}).` });
    if (i % 2 === 1) messages.push({ role: 'user', content: 'Give an example.' }, { role: 'assistant', content: `Example ${i}: see claim ${i + 1}.` });
    lines.push(JSON.stringify({ messages }));
  }
  return lines;
}

beforeAll(() => makeTinyLlamaFolder(modelDir, dataFile, conversations(), adapterDir), 60_000);

function stageConfig(c: Case, runDir: string): SftConfig {
  const cfg = validateStageConfig({
    kind: 'sft', name: 'trl-parity', ...trlStageFields(modelDir, dataFile, { seqLen: SEQ, batchSize: c.batchSize, steps: STEPS, lr: c.lr, gradClip: c.gradClip }),
    data: { sources: [dataFile], valFraction: 0, shuffle: false, packing: 'pad' }, gradAccum: c.gradAccum,
    ...(c.lora ? { lora: c.lora } : {}),
  }) as SftConfig;
  cfg.runDir = runDir;
  return cfg;
}

async function ourLosses(name: keyof typeof CASES): Promise<number[]> {
  const cfg = stageConfig(CASES[name], path.join(root, `ours-${name}`));
  const r = await sft(cfg, { progress: null });
  expect(r.status).toBe('completed');
  return stepRecords(cfg.runDir).map((x) => x.loss!);
}

const peer = trlPeer();
const live = peer.live;

function runTrl(name: keyof typeof CASES): TrlRun {
  const c = CASES[name];
  const out = path.join(root, `trl-${name}.json`);
  return runTrlScript<TrlRun>(peer, 'trl-parity.py', ['run', modelDir, dataFile, out, '--steps', String(STEPS), '--batch-size', String(c.batchSize), '--grad-accum', String(c.gradAccum),
    '--lr', String(c.lr), '--max-length', String(SEQ), '--max-grad-norm', String(c.gradClip), ...(c.lora ? ['--adapter', adapterDir] : [])], out);
}

/** Each trained row of TRL's batches without its padding, in training order. */
function trlExamples(run: TrlRun): { ids: number[]; labels: number[] }[] {
  return run.batches.flatMap((b) => b.input_ids.map((ids, j) => {
    const n = b.attention_mask[j]!.reduce((a, x) => a + x, 0);
    return { ids: ids.slice(0, n), labels: b.labels[j]!.slice(0, n) };
  }));
}

describe(`patentgpt sft against TRL SFTTrainer (${trlMode(peer)})`, () => {
  const trl: Partial<Record<keyof typeof CASES, TrlRun>> = {};
  const golden = trlGolden<Golden>(peer, FIXTURE);
  const report: Record<string, number> = {};
  afterAll(() => {
    if (Object.keys(report).length) console.log(`TRL parity (${live ? 'live' : 'fixture'}), max |our loss - TRL's| over ${STEPS} steps: ${JSON.stringify(report)}`);
    writeTrlGolden<Golden>(peer, FIXTURE, () => (trl.full && trl.accum && trl.lora ? {
      versions: trl.full.versions, cases: { full: { losses: trl.full.losses }, accum: { losses: trl.accum.losses }, lora: { losses: trl.lora.losses } },
      examples: trlExamples(trl.full),
    } : null));
  });

  it('trains on the token ids and labels TRL trains on (chat template, assistant-only mask, order)', async () => {
    if (live) trl.full = runTrl('full');
    const theirs = live ? trlExamples(trl.full!) : golden!.examples;
    const tok = SentencePieceTokenizer.load(fs.readFileSync(path.join(modelDir, 'tokenizer.model')));
    const cfg = stageConfig(CASES.full, path.join(root, 'unused'));
    const data = await loadSftData({ sources: cfg.data.sources, renderer: sftRenderer(cfg, tok), seed: 0, valFraction: 0, shuffle: false, maxLength: SEQ });
    expect(data.train).toHaveLength(STEPS * BATCH);
    expect(theirs).toHaveLength(STEPS * BATCH);
    data.train.forEach((e, i) => {
      expect(Array.from(e.ids), `conversation ${i}: ids`).toEqual(theirs[i]!.ids);
      expect(Array.from(e.labels), `conversation ${i}: labels`).toEqual(theirs[i]!.labels);
    });
    // the assistant turns only: some tokens trained, the prompts not
    const trained = theirs[1]!.labels.filter((l) => l !== -100).length;
    expect(trained).toBeGreaterThan(10);
    expect(trained).toBeLessThan(theirs[1]!.ids.length / 2);
  }, 360_000);

  it('full fine-tuning: the same loss at each of 10 steps within 1e-4', async () => {
    const theirs = live ? (trl.full ??= runTrl('full')).losses : golden!.cases.full!.losses;
    const ours = await ourLosses('full');
    report.full = maxDiff(ours, theirs);
    expect(report.full).toBeLessThan(1e-4);
    expect(ours.at(-1)!).toBeLessThan(ours[0]! - 0.5); // it trained
  }, 360_000);

  it('gradient accumulation (one conversation a micro-batch, two a step): each micro-batch weighs by its tokens, the same losses within 1e-4', async () => {
    const theirs = live ? (trl.accum = runTrl('accum')).losses : golden!.cases.accum!.losses;
    const ours = await ourLosses('accum');
    report.accum = maxDiff(ours, theirs);
    expect(report.accum).toBeLessThan(1e-4);
  }, 360_000);

  it('LoRA (same initial adapter): the same loss at each of 10 steps within 1e-4', async () => {
    const theirs = live ? (trl.lora = runTrl('lora')).losses : golden!.cases.lora!.losses;
    const ours = await ourLosses('lora');
    report.lora = maxDiff(ours, theirs);
    expect(report.lora).toBeLessThan(1e-4);
    expect(ours.at(-1)!).toBeLessThan(ours[0]! - 0.1);
  }, 360_000);
});
