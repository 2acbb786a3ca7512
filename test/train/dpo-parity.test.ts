// `patentgpt dpo` against TRL's DPOTrainer (scripts/trl-dpo-parity.py): on a tiny LLaMA folder
// (LLaMA-2's tokenizer.model, a ChatML template in its tokenizer_config.json) and the same 20
// conversational pairs about IP notions, in file order, f32, AdamW at a constant learning rate:
// the token ids and completion masks TRL trains on equal ours (TRL renders the prompt with the
// generation prompt and takes everything after it as the completion, EOS and template tail
// included), and the per-step losses of 10 steps agree within 1e-4 for the sigmoid loss (reference
// precomputed from the initial model), IPO (token-averaged log-ratios) and LoRA (both sides from
// the same adapter; the reference is the base with the adapter off, PEFT's disable_adapter).
//
// Live where trl is installed, else against test/fixtures/trl-dpo-golden.json (test/trl-helpers.ts
// has the switch). The folder and data are made here, deterministically, so the fixture holds only
// TRL's output.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPreferenceData } from '../../src/data/preference/index.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import { validateStageConfig, type DpoConfig } from '../../src/train/config.js';
import { dpo, dpoRenderer } from '../../src/train/stages/dpo.js';
import { IP_TOPICS, TRL_LORA, TRL_RUN, makeTinyLlamaFolder, maxDiff, runTrlScript, stepRecords, trlGolden, trlMode, trlPeer, trlStageFields, writeTrlGolden, trlWorkspace } from '../trl-helpers.js';

const FIXTURE = 'trl-dpo-golden.json';
const { root, modelDir, dataFile, adapterDir } = trlWorkspace('pgpt-trl-dpo-', 'pairs.jsonl');

const { steps: STEPS, batchSize: BATCH, seqLen: SEQ } = TRL_RUN;
const LORA = TRL_LORA;
interface Case { lr: number; beta: number; loss: 'sigmoid' | 'ipo'; lora?: typeof LORA }
const CASES: Record<'sigmoid' | 'ipo' | 'lora', Case> = {
  sigmoid: { lr: 1e-3, beta: 0.1, loss: 'sigmoid' },
  ipo: { lr: 1e-3, beta: 0.5, loss: 'ipo' },
  lora: { lr: 1e-2, beta: 0.2, loss: 'sigmoid', lora: LORA },
};
interface TrlRun { versions: Record<string, string>; losses: number[]; logged: Record<string, number>[]; batches: { input_ids: number[][]; completion_mask: number[][]; attention_mask: number[][] }[] }
interface Side { ids: number[]; mask: number[] }
interface Golden { versions: Record<string, string>; cases: Record<string, { losses: number[]; logged: Record<string, number>[] }>; examples: { chosen: Side; rejected: Side }[] }

/** 20 pairs: a question on an IP notion, a precise answer (chosen) and a wrong one (rejected); every third with a system prompt. */
function pairs(): string[] {
  return Array.from({ length: STEPS * BATCH }, (_, i) => {
    const t = IP_TOPICS[i % IP_TOPICS.length]!;
    const prompt = [
      ...(i % 3 === 0 ? [{ role: 'system', content: 'You are PatentGPT, an assistant for intellectual property.' }] : []),
      { role: 'user', content: `What is ${t}?` },
    ];
    return JSON.stringify({
      prompt,
      chosen: [{ role: 'assistant', content: `In short, ${t} is a notion of IP law (case ${i}).` }],
      rejected: [{ role: 'assistant', content: i % 2 ? 'No idea.' : `Something about ${t}, maybe.` }],
    });
  });
}

beforeAll(() => makeTinyLlamaFolder(modelDir, dataFile, pairs(), adapterDir), 60_000);

function stageConfig(c: Case, runDir: string): DpoConfig {
  const cfg = validateStageConfig({
    kind: 'dpo', name: 'trl-dpo-parity', ...trlStageFields(modelDir, dataFile, { seqLen: SEQ, batchSize: BATCH, steps: STEPS, lr: c.lr, gradClip: 0 }),
    dpo: { beta: c.beta, loss: c.loss }, ...(c.lora ? { lora: c.lora } : {}),
  }) as DpoConfig;
  cfg.runDir = runDir;
  return cfg;
}

async function ourRun(name: keyof typeof CASES): Promise<{ losses: number[]; margins: number[] }> {
  const cfg = stageConfig(CASES[name], path.join(root, `ours-${name}`));
  const r = await dpo(cfg, { progress: null });
  expect(r.status).toBe('completed');
  const recs = stepRecords(cfg.runDir);
  return { losses: recs.map((x) => x.loss!), margins: recs.map((x) => (x as Record<string, unknown>)['rewards/margins'] as number) };
}

const peer = trlPeer();
const live = peer.live;

function runTrl(name: keyof typeof CASES): TrlRun {
  const c = CASES[name];
  const out = path.join(root, `trl-${name}.json`);
  return runTrlScript<TrlRun>(peer, 'trl-dpo-parity.py', ['run', modelDir, dataFile, out, '--steps', String(STEPS), '--batch-size', String(BATCH),
    '--lr', String(c.lr), '--beta', String(c.beta), '--loss', c.loss, '--max-length', String(SEQ), ...(c.lora ? ['--adapter', adapterDir] : [])], out);
}

/** Each pair TRL trained on, both sides without padding, in training order. */
function trlExamples(run: TrlRun): { chosen: Side; rejected: Side }[] {
  return run.batches.flatMap((b) => {
    const B = b.input_ids.length / 2;
    const side = (j: number): Side => {
      const n = b.attention_mask[j]!.reduce((a, x) => a + x, 0);
      return { ids: b.input_ids[j]!.slice(0, n), mask: b.completion_mask[j]!.slice(0, n) };
    };
    return Array.from({ length: B }, (_, i) => ({ chosen: side(i), rejected: side(B + i) }));
  });
}

describe(`patentgpt dpo against TRL DPOTrainer (${trlMode(peer)})`, () => {
  const trl: Partial<Record<keyof typeof CASES, TrlRun>> = {};
  const golden = trlGolden<Golden>(peer, FIXTURE);
  const report: Record<string, number> = {};
  afterAll(() => {
    if (Object.keys(report).length) console.log(`TRL DPO parity (${live ? 'live' : 'fixture'}), max |our loss - TRL's| over ${STEPS} steps: ${JSON.stringify(report)}`);
    writeTrlGolden<Golden>(peer, FIXTURE, () => (trl.sigmoid && trl.ipo && trl.lora ? {
      versions: trl.sigmoid.versions,
      cases: Object.fromEntries((['sigmoid', 'ipo', 'lora'] as const).map((k) => [k, { losses: trl[k]!.losses, logged: trl[k]!.logged }])),
      examples: trlExamples(trl.sigmoid),
    } : null));
  });

  it('trains on the token ids and completion masks TRL trains on (prompt with generation prompt, completion after it)', async () => {
    if (live) trl.sigmoid = runTrl('sigmoid');
    const theirs = live ? trlExamples(trl.sigmoid!) : golden!.examples;
    const tok = SentencePieceTokenizer.load(fs.readFileSync(path.join(modelDir, 'tokenizer.model')));
    const cfg = stageConfig(CASES.sigmoid, path.join(root, 'unused'));
    const data = await loadPreferenceData({ sources: cfg.data.sources, renderer: dpoRenderer(cfg, tok), maxLength: SEQ });
    expect(data.train).toHaveLength(STEPS * BATCH);
    expect(theirs).toHaveLength(STEPS * BATCH);
    data.train.forEach((e, i) => {
      for (const s of ['chosen', 'rejected'] as const) {
        expect(Array.from(e[s].ids), `pair ${i} ${s}: ids`).toEqual(theirs[i]![s].ids);
        expect(Array.from(e[s].responseMask), `pair ${i} ${s}: completion mask`).toEqual(theirs[i]![s].mask);
      }
    });
  }, 360_000);

  for (const name of ['sigmoid', 'ipo', 'lora'] as const) {
    it(`${name}: the same loss at each of 10 steps within 1e-4, and rewards/margins as TRL logs it`, async () => {
      const t = live ? (trl[name] ??= runTrl(name)) : golden!.cases[name]!;
      const ours = await ourRun(name);
      report[name] = maxDiff(ours.losses, t.losses);
      expect(report[name]).toBeLessThan(1e-4);
      // TRL logs its metrics rounded; margins agree to that precision
      const theirMargins = t.logged.map((r) => r['rewards/margins']!);
      expect(maxDiff(ours.margins, theirMargins)).toBeLessThan(1e-3);
      expect(ours.losses.at(-1)!).toBeLessThan(ours.losses[0]!); // it trained
    }, 360_000);
  }
});
