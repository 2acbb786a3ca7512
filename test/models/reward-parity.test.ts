// Our reward model (src/models/reward.ts) against transformers' AutoModelForSequenceClassification
// (scripts/reward-parity.py) on the same folder: a tiny LLaMA and a tiny Mixtral reward model,
// saved by saveRewardModel, loaded by transformers (LlamaForSequenceClassification /
// MixtralForSequenceClassification, one label) and scored on right-padded rows of different
// lengths in one batch: the scores agree within 1e-4. Rows whose last real token is the pad id
// show transformers' rule (the rightmost non-pad token) and ours (the true last token) apart, and
// unpadRows({ padId }) reproduces transformers'. Live, transformers also starts a reward model from
// a causal LM folder as TRL's RewardTrainer does (score head newly drawn) and saves it; we load
// that folder and score the same.
//
// Live where transformers is installed (PATENTGPT_REQUIRE_PEERS=1 makes a missing peer a failure),
// else against test/fixtures/reward-parity-golden.json (the folders are made here from seeds, so
// the fixture holds only transformers' scores); PATENTGPT_WRITE_REWARD_FIXTURE=1 rewrites it.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { LlamaForCausalLM, savePretrained, validateConfig } from '../../src/models/index.js';
import { ScoreHeadModel, lastNonPadIndex, loadRewardModel, packSequences, saveRewardModel, unpadRows } from '../../src/models/reward.js';
import { Rng, noGrad } from '../../src/tensor/index.js';

const repo = new URL('../../', import.meta.url).pathname;
const fixtureFile = path.join(repo, 'test/fixtures/reward-parity-golden.json');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-reward-parity-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const PAD = 3;
const V = 96;
const CASES = {
  llama: { vocabSize: V, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, maxSeqLen: 64 },
  mixtral: { vocabSize: V, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 96, maxSeqLen: 64, numExperts: 4, topK: 2 },
} as const;
type CaseName = keyof typeof CASES;
interface Rows { rows: number[][]; attention_mask: number[][] }
interface HfScores { architecture: string; pad_token_id: number; num_labels: number; scores: number[]; last_index: number[]; versions: Record<string, string> }
interface Golden { versions: Record<string, string>; cases: Record<string, { architecture: string; scores: number[]; last_index: number[] }> }

/** 8 right-padded rows of lengths 2..17, no pad id inside; the last two end with the pad id (a real token there). */
function makeRows(): Rows {
  const rng = new Rng(11);
  const lens = [5, 17, 2, 9, 12, 3, 8, 14];
  const T = Math.max(...lens);
  const rows: number[][] = [], attention_mask: number[][] = [];
  lens.forEach((n, i) => {
    const r: number[] = [];
    for (let j = 0; j < n; j++) {
      let id = 4 + (rng.nextUint32() % (V - 4));
      if (i >= 6 && j === n - 1) id = PAD; // an EOS that doubles as the pad id
      r.push(id);
    }
    rows.push([...r, ...new Array<number>(T - n).fill(PAD)]);
    attention_mask.push([...new Array<number>(n).fill(1), ...new Array<number>(T - n).fill(0)]);
  });
  return { rows, attention_mask };
}

const rows = makeRows();
const dirs: Record<CaseName, string> = { llama: path.join(root, 'llama'), mixtral: path.join(root, 'mixtral') };

beforeAll(async () => {
  fs.writeFileSync(path.join(root, 'rows.json'), JSON.stringify(rows));
  for (const name of Object.keys(CASES) as CaseName[]) {
    const m = new ScoreHeadModel(validateConfig(CASES[name]), { seed: 5, initStd: 0.05, scoreInitStd: 0.5, padTokenId: PAD });
    await saveRewardModel(m, dirs[name]);
    m.dispose();
  }
}, 60_000);

const fromFixture = process.env.PATENTGPT_REWARD_FROM_FIXTURE === '1';
const { python, why } = fromFixture ? { python: null, why: 'PATENTGPT_REWARD_FROM_FIXTURE=1' } : findPython(['torch', 'transformers']);
const live = python !== null;
const env = { ...process.env, HF_HUB_OFFLINE: '1' };

function hfScores(dir: string, tag: string): HfScores {
  const out = path.join(root, `hf-${tag}.json`);
  execFileSync(python!, [path.join(repo, 'scripts/reward-parity.py'), 'scores', dir, path.join(root, 'rows.json'), out], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
  return JSON.parse(fs.readFileSync(out, 'utf8')) as HfScores;
}

/** Our scores of the rows: sequences cut by the attention mask (true lengths) or by transformers' pad rule. */
async function ourScores(dir: string, by: 'mask' | 'pad'): Promise<number[]> {
  const m = await loadRewardModel(dir);
  try {
    const seqs = unpadRows(rows.rows, by === 'mask' ? { mask: rows.attention_mask } : { padId: m.padTokenId! });
    return noGrad(() => {
      const s = m.scores(packSequences(seqs));
      const out = Array.from(s.toArray() as Float32Array);
      s.dispose();
      return out;
    });
  } finally {
    m.dispose();
  }
}

const maxDiff = (a: number[], b: number[]): number => {
  expect(a).toHaveLength(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
};

describe(`reward model against transformers' sequence classification (${live ? 'live' : `committed fixture: ${why}`})`, () => {
  const got: Partial<Record<CaseName, HfScores>> = {};
  const golden = live ? null : (JSON.parse(fs.readFileSync(fixtureFile, 'utf8')) as Golden);
  const report: Record<string, number> = {};
  afterAll(() => {
    if (Object.keys(report).length) console.log(`reward parity (${live ? 'live' : 'fixture'}), max |ours - transformers'|: ${JSON.stringify(report)}`);
    if (live && process.env.PATENTGPT_WRITE_REWARD_FIXTURE === '1' && got.llama && got.mixtral) {
      const g: Golden = {
        versions: got.llama.versions,
        cases: Object.fromEntries((Object.keys(CASES) as CaseName[]).map((n) => [n, { architecture: got[n]!.architecture, scores: got[n]!.scores, last_index: got[n]!.last_index }])),
      };
      fs.writeFileSync(fixtureFile, JSON.stringify(g) + '\n');
    }
  });
  const theirs = (name: CaseName) => (live ? (got[name] ??= hfScores(dirs[name], name)) : golden!.cases[name]!);

  it('the folder is what AutoModelForSequenceClassification loads (architecture, one label, pad id) and we read back', async () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(dirs.llama, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({ architectures: ['LlamaForSequenceClassification'], model_type: 'llama', id2label: { 0: 'LABEL_0' }, pad_token_id: PAD });
    const mcfg = JSON.parse(fs.readFileSync(path.join(dirs.mixtral, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(mcfg).toMatchObject({ architectures: ['MixtralForSequenceClassification'], model_type: 'mixtral' });
    expect(theirs('llama').architecture).toBe('LlamaForSequenceClassification');
    expect(theirs('mixtral').architecture).toBe('MixtralForSequenceClassification');
    if (live) expect(got.llama!.num_labels).toBe(1);
    const m = await loadRewardModel(dirs.llama);
    expect(m.padTokenId).toBe(PAD);
    expect(m.namedParameters().map(([n]) => n)).toContain('score.weight');
    expect(m.score.weight.shape).toEqual([1, 64]);
    m.dispose();
  }, 360_000);

  for (const name of Object.keys(CASES) as CaseName[]) {
    it(`${name}: scores within 1e-4 of transformers' on right-padded rows where the pad rule and the lengths agree`, async () => {
      const t = theirs(name);
      const ours = await ourScores(dirs[name], 'mask');
      const agree = rows.attention_mask.map((m, i) => t.last_index[i] === m.reduce((a, x) => a + x, 0) - 1);
      expect(agree.filter(Boolean).length).toBe(6); // all but the two rows ending with the pad id
      report[name] = maxDiff(ours.filter((_, i) => agree[i]), t.scores.filter((_, i) => agree[i]));
      expect(report[name]).toBeLessThan(1e-4);
      expect(Math.max(...ours) - Math.min(...ours)).toBeGreaterThan(1e-2); // the scores differ: a real comparison
    }, 360_000);
  }

  it('a sequence ending with the pad id: transformers reads one token early, unpadRows({ padId }) does as it does, our lengths read the true end', async () => {
    const t = theirs('llama');
    for (const i of [6, 7]) {
      const n = rows.attention_mask[i]!.reduce((a, x) => a + x, 0);
      expect(t.last_index[i]).toBe(lastNonPadIndex(rows.rows[i]!, PAD));
      expect(t.last_index[i]).toBeLessThan(n - 1);
    }
    const byPad = await ourScores(dirs.llama, 'pad');
    report.padRule = maxDiff(byPad, t.scores);
    expect(report.padRule).toBeLessThan(1e-4);
    const byMask = await ourScores(dirs.llama, 'mask');
    expect(Math.abs(byMask[6]! - t.scores[6]!)).toBeGreaterThan(1e-4); // read at another token
  }, 360_000);

  it.skipIf(!live)('a reward model transformers starts from a causal LM folder (new score head) loads here with the same scores', async () => {
    const causal = path.join(root, 'causal');
    const m = new LlamaForCausalLM(validateConfig(CASES.llama), { seed: 9, initStd: 0.05 });
    await savePretrained(m, causal);
    m.dispose();
    const out = path.join(root, 'hf-reward');
    execFileSync(python!, [path.join(repo, 'scripts/reward-parity.py'), 'from-causal', causal, out, '--seed', '4', '--pad-token-id', String(PAD)], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
    const t = hfScores(out, 'from-causal');
    const ours = await ourScores(out, 'pad');
    report.fromCausal = maxDiff(ours, t.scores);
    expect(report.fromCausal).toBeLessThan(1e-4);
  }, 360_000);
});
