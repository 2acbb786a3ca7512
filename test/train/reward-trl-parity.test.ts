// `patentgpt reward` against TRL's RewardTrainer (scripts/trl-reward-parity.py): on a tiny LLaMA
// reward folder (LLaMA-2's tokenizer.model, a ChatML template in its tokenizer_config.json, one
// score head both sides start from) and the same 20 conversational pairs in file order, f32, AdamW
// at a constant learning rate with clipping: the per-step losses of 10 steps agree within 1e-4,
// plain Bradley-Terry, with a margin and TRL's reward centering, and LoRA (adapters on q/v/down
// from the same initial adapter, saved by us and loaded by PEFT as SEQ_CLS, the score head trained
// whole on both sides). The token ids TRL scored
// (prompt + response through apply_chat_template, right-padded, chosen rows then rejected) are
// compared with our rendered pairs first, and TRL's score positions (the rightmost non-pad token)
// with our sequences' last tokens.
//
// Live where trl is installed, else against test/fixtures/trl-reward-golden.json (test/trl-helpers.ts
// has the switch). The folder and data are made here from seeds, so the fixture holds only TRL's output.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPreferenceData } from '../../src/data/preference/index.js';
import { validateConfig } from '../../src/models/index.js';
import { ScoreHeadModel, lastNonPadIndex, loadRewardModel, saveRewardModel } from '../../src/models/reward.js';
import { applyLora } from '../../src/nn/lora.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import { validateStageConfig, type RewardConfig } from '../../src/train/config.js';
import { reward, saveRewardAdapter } from '../../src/train/stages/reward.js';
import { sftRenderer } from '../../src/train/stages/sft.js';
import { IP_TOPICS, TRL_LORA, TRL_RUN, TRL_TINY_MODEL, copyChatTemplate, maxDiff, runTrlScript, stepRecords, trlGolden, trlMode, trlPeer, trlStageFields, writeTrlGolden, trlWorkspace } from '../trl-helpers.js';

const FIXTURE = 'trl-reward-golden.json';
const { root, modelDir, dataFile, adapterDir } = trlWorkspace('pgpt-trl-reward-', 'pairs.jsonl');

const { steps: STEPS, batchSize: BATCH, seqLen: SEQ } = TRL_RUN;
const LORA = TRL_LORA;
interface Case { lr: number; gradClip: number; margin?: number; center?: number; lora?: typeof LORA }
const CASES = {
  plain: { lr: 1e-3, gradClip: 1 },
  'margin+center': { lr: 1e-3, gradClip: 1, margin: 0.5, center: 0.01 },
  lora: { lr: 1e-2, gradClip: 1, lora: LORA },
} satisfies Record<string, Case>;
type CaseName = keyof typeof CASES;
interface TrlRun { versions: Record<string, string>; pad_token_id: number; losses: number[]; batches: { input_ids: number[][]; attention_mask: number[][] }[] }
interface Golden { versions: Record<string, string>; pad_token_id: number; cases: Record<string, { losses: number[] }>; sequences: number[][] }

/** Pairs on IP notions: a precise answer (chosen) and a vague or wrong one (rejected), every third with a system prompt. */
function pairs(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < STEPS * BATCH; i++) {
    const t = IP_TOPICS[i % IP_TOPICS.length]!;
    const prompt: { role: string; content: string }[] = [];
    if (i % 3 === 0) prompt.push({ role: 'system', content: 'You are PatentGPT, an assistant for intellectual property.' });
    prompt.push({ role: 'user', content: `What is ${t}? (question ${i})` });
    const chosen = [{ role: 'assistant', content: `${t[0]!.toUpperCase()}${t.slice(1)} is a notion of IP law, defined by statute (case ${i}).` }];
    const rejected = [{ role: 'assistant', content: i % 2 ? 'No idea.' : `Something about ${t}, maybe.` }];
    lines.push(JSON.stringify({ prompt, chosen, rejected }));
  }
  return lines;
}

beforeAll(async () => {
  const cfg = validateConfig(TRL_TINY_MODEL);
  const m = new ScoreHeadModel(cfg, { seed: 7, initStd: 0.05, scoreInitStd: 0.05 });
  await saveRewardModel(m, modelDir, { tokenizer: SentencePieceTokenizer.llama2() });
  m.dispose();
  copyChatTemplate(modelDir);
  fs.writeFileSync(dataFile, pairs().join('\n') + '\n');
  // the adapter both sides start from: ours, as the reward stage makes it (same seed, B zeros), for
  // PEFT's sequence classification (the score head trained whole, modules_to_save)
  const base = await loadRewardModel(modelDir);
  applyLora(base, LORA);
  await saveRewardAdapter(base, adapterDir, { baseModel: modelDir });
  base.dispose();
}, 60_000);

function stageConfig(c: Case, runDir: string): RewardConfig {
  const cfg = validateStageConfig({
    kind: 'reward', name: 'trl-reward-parity', ...trlStageFields(modelDir, dataFile, { seqLen: SEQ, batchSize: BATCH, steps: STEPS, lr: c.lr, gradClip: c.gradClip }), gradAccum: 1,
    reward: { ...(c.margin !== undefined ? { margin: c.margin } : {}), ...(c.center !== undefined ? { centerRewardsCoefficient: c.center } : {}) },
    ...(c.lora ? { lora: c.lora } : {}),
  }) as RewardConfig;
  cfg.runDir = runDir;
  return cfg;
}

async function ourLosses(name: CaseName): Promise<number[]> {
  const cfg = stageConfig(CASES[name], path.join(root, `ours-${name}`));
  const r = await reward(cfg, { progress: null });
  expect(r.status).toBe('completed');
  expect(r.initFrom).toBe('reward');
  return stepRecords(cfg.runDir).map((x) => x.loss!);
}

const peer = trlPeer();
const live = peer.live;

function runTrl(name: CaseName): TrlRun {
  const c: Case = CASES[name];
  const out = path.join(root, `trl-${name}.json`);
  return runTrlScript<TrlRun>(peer, 'trl-reward-parity.py', ['run', modelDir, dataFile, out, '--steps', String(STEPS), '--batch-size', String(BATCH),
    '--lr', String(c.lr), '--max-grad-norm', String(c.gradClip), ...(c.margin !== undefined ? ['--margin', String(c.margin)] : []),
    ...(c.center !== undefined ? ['--center', String(c.center)] : []), ...(c.lora ? ['--adapter', adapterDir] : [])], out);
}

/** The sequences TRL scored, in pair order (chosen 0, rejected 0, chosen 1, ...), cut where TRL read the score. */
function trlSequences(run: TrlRun): number[][] {
  return run.batches.flatMap((b) => {
    const cut = b.input_ids.map((ids) => ids.slice(0, lastNonPadIndex(ids, run.pad_token_id) + 1));
    const B = cut.length / 2;
    return Array.from({ length: B }, (_, j) => [cut[j]!, cut[B + j]!]).flat();
  });
}

describe(`patentgpt reward against TRL RewardTrainer (${trlMode(peer)})`, () => {
  const trl: Partial<Record<CaseName, TrlRun>> = {};
  const golden = trlGolden<Golden>(peer, FIXTURE);
  const report: Record<string, number> = {};
  afterAll(() => {
    if (Object.keys(report).length) console.log(`TRL reward parity (${live ? 'live' : 'fixture'}), max |our loss - TRL's| over ${STEPS} steps: ${JSON.stringify(report)}`);
    writeTrlGolden<Golden>(peer, FIXTURE, () => (trl.plain && trl['margin+center'] && trl.lora ? {
      versions: trl.plain.versions, pad_token_id: trl.plain.pad_token_id,
      cases: { plain: { losses: trl.plain.losses }, 'margin+center': { losses: trl['margin+center'].losses }, lora: { losses: trl.lora.losses } },
      sequences: trlSequences(trl.plain),
    } : null));
  });

  it('scores the token ids TRL scores (chat template over prompt + response, pair order, the score at each sequence\'s last token)', async () => {
    if (live) trl.plain = runTrl('plain');
    const theirs = live ? trlSequences(trl.plain!) : golden!.sequences;
    const tok = SentencePieceTokenizer.load(fs.readFileSync(path.join(modelDir, 'tokenizer.model')));
    const cfg = stageConfig(CASES.plain, path.join(root, 'unused'));
    const data = await loadPreferenceData({ sources: cfg.data.sources, renderer: sftRenderer(cfg, tok), valFraction: 0, maxLength: SEQ });
    expect(data.train).toHaveLength(STEPS * BATCH);
    expect(theirs).toHaveLength(2 * STEPS * BATCH);
    data.train.forEach((e, i) => {
      expect(Array.from(e.chosen.ids), `pair ${i}: chosen`).toEqual(theirs[2 * i]);
      expect(Array.from(e.rejected.ids), `pair ${i}: rejected`).toEqual(theirs[2 * i + 1]);
    });
  }, 360_000);

  for (const name of Object.keys(CASES) as CaseName[]) {
    it(`${name}: the same loss at each of 10 steps within 1e-4`, async () => {
      const theirs = live ? (trl[name] ??= runTrl(name)).losses : golden!.cases[name]!.losses;
      const ours = await ourLosses(name);
      report[name] = maxDiff(ours, theirs);
      expect(report[name]).toBeLessThan(1e-4);
      expect(ours.at(-1)!).toBeLessThan(ours[0]! - 0.05); // it trained
    }, 360_000);
  }
});
