// Greedy generation against transformers' generate() on the same f32 safetensors folder, 64 new
// tokens per prompt, token for token: a golden file made by scripts/infer-reference.py (always),
// and transformers itself on the fixture and on a folder our code saved (skips without Python).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findPython } from '../../scripts/bench/_peers.js';
import { Engine } from '../../src/infer/index.js';
import { LlamaForCausalLM, loadPretrained, savePretrained, validateConfig } from '../../src/models/index.js';
import { packageRoot } from '../../src/package.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const modelDir = join(fixtures, 'infer-tiny-f32');
const golden = JSON.parse(readFileSync(join(fixtures, 'infer-tiny-golden.json'), 'utf8')) as { prompts: number[][]; outputs: number[][]; minGap: number };

async function ours(model: LlamaForCausalLM, prompts: number[][]): Promise<number[][]> {
  const engine = new Engine(model, { kvCacheBytes: 2 ** 22, maxNumBatchedTokens: 48 });
  try {
    // All prompts at once: batched decode and chunked prefill must not change a greedy output.
    return await Promise.all(prompts.map(async (p) => (await engine.complete(p, { maxTokens: 64, ignoreEos: true })).tokens));
  } finally {
    engine.close();
  }
}

describe('greedy generation equals transformers generate()', () => {
  it('golden continuations (64 tokens, f32 folder written by transformers)', async () => {
    expect(golden.minGap).toBeGreaterThan(1e-4); // the reference never chose between near-ties
    for (const o of golden.outputs) expect(new Set(o).size).toBeGreaterThan(8); // varied, not one token repeated
    const model = await loadPretrained(modelDir);
    expect(await ours(model, golden.prompts)).toEqual(golden.outputs);
    model.dispose();
  });

  const py = findPython(['torch', 'transformers']);
  it.skipIf(!py.python)(`live transformers on the fixture and on a folder saved by us${py.python ? '' : ` (skipped: ${py.why})`}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-infer-'));
    try {
      const cfg = validateConfig({ vocabSize: 300, dim: 48, nLayers: 3, nHeads: 6, nKvHeads: 2, ffnDim: 96, ropeTheta: 10000, ropeScaling: null,
        maxSeqLen: 256, normEps: 1e-5, tieEmbeddings: true, numExperts: 1, topK: 1 });
      const mine = new LlamaForCausalLM(cfg, { seed: 4, initStd: 0.3 });
      await savePretrained(mine, join(dir, 'model'), { dtype: 'f32' });
      const prompts = [[1, 2, 3], Array.from({ length: 70 }, (_, i) => (i * 41 + 7) % 300)];
      writeFileSync(join(dir, 'prompts.json'), JSON.stringify(prompts));
      writeFileSync(join(dir, 'golden-prompts.json'), JSON.stringify(golden.prompts));
      const out = execFileSync(py.python!, [join(packageRoot(), 'scripts', 'infer-reference.py'), 'generate',
        join(dir, 'model'), join(dir, 'prompts.json'), modelDir, join(dir, 'golden-prompts.json')],
      { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'ignore'] });
      const [ref, onFixture] = (JSON.parse(out.trim().split('\n').pop()!) as { results: { outputs: number[][]; minGap: number }[] }).results;
      expect(ref!.minGap).toBeGreaterThan(1e-4);
      expect(await ours(mine, prompts)).toEqual(ref!.outputs);
      mine.dispose();
      expect(onFixture!.outputs).toEqual(golden.outputs);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
