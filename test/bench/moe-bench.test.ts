// `npm run bench -- moe` without running it (no timings in tests): its scripts type-check under
// the package's strict settings, and its shapes are what the bench says they are: the dense
// models of the cost claim match the MoE's total and active parameters, the command line gives
// the contexts and refuses what it cannot run.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { headDim, parameterCount } from '../../src/models/index.js';
import { kvBytesPerToken } from '../../src/infer/index.js';
import { packageRoot } from '../../src/package.js';
import {
  claimFindings, claimModels, denseActiveConfig, denseTotalConfig, markdownTable, moeConfig, parseMoeBenchArgs, type ClaimModelRow, type MoeShape,
} from '../../scripts/bench/_moe-configs.js';

const shape: MoeShape = { dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, expertHidden: 256, numExperts: 8, topK: 2, vocabSize: 259, maxSeqLen: 16384 };
const kv = (c: { nLayers: number; nKvHeads: number; dim: number; nHeads: number }): number =>
  kvBytesPerToken({ nLayers: c.nLayers, nKvHeads: c.nKvHeads, headDim: c.dim / c.nHeads });

describe('moe bench: the models of the cost claim', () => {
  it('the dense model of equal active parameters has the MoE attention and a SwiGLU of topK x the expert hidden size', () => {
    const moe = moeConfig(shape);
    const dense = denseActiveConfig(moe);
    expect(dense).toMatchObject({ dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, ffnDim: 512, numExperts: 1, topK: 1, vocabSize: 259, maxSeqLen: 16384 });
    // active parameters equal but for the router's C x E per layer
    expect(parameterCount(moe).active - parameterCount(dense).total).toBe(shape.nLayers * shape.dim * shape.numExperts);
    expect(kv(dense)).toBe(kv(moe));
    // shared experts count as active
    const shared = moeConfig(shape);
    shared.numSharedExperts = 1;
    expect(denseActiveConfig(shared).ffnDim).toBe(3 * 256);
  });

  it('the dense model of equal total parameters is within 1% of the MoE total, grown wider with the same head size and GQA ratio', () => {
    for (const s of [shape, { ...shape, dim: 64, nLayers: 2, expertHidden: 128, numExperts: 4 }, { ...shape, numExperts: 16, topK: 4 }]) {
      const moe = moeConfig(s);
      const dense = denseTotalConfig(moe);
      const target = parameterCount(moe).total;
      expect(Math.abs(parameterCount(dense).total - target) / target).toBeLessThanOrEqual(0.01);
      expect(dense.numExperts).toBe(1);
      expect(dense.nLayers).toBe(moe.nLayers);
      expect(headDim(dense)).toBe(headDim(moe));
      expect(dense.nHeads / dense.nKvHeads).toBe(moe.nHeads / moe.nKvHeads);
      expect(dense.dim).toBeGreaterThan(moe.dim);
      expect(dense.ffnDim % 16).toBe(0);
      expect(dense.ffnDim / dense.dim).toBeGreaterThan(1.5); // a LLaMA-like feed-forward, not a sliver
      expect(dense.ffnDim / dense.dim).toBeLessThan(4.5);
    }
    // the default shape: dim 256, 8/4 heads (so twice the KV cache per token of the MoE)
    const models = claimModels(shape);
    expect(models.map((m) => m.name)).toEqual(['moe', 'dense-total', 'dense-active']);
    expect(models[1]!.cfg).toMatchObject({ dim: 256, nHeads: 8, nKvHeads: 4 });
    expect(kv(models[1]!.cfg)).toBe(2 * kv(models[0]!.cfg));
  });

  it('refuses a MoE shape with fewer than two experts or topK above them', () => {
    expect(() => moeConfig({ ...shape, numExperts: 1, topK: 1 })).toThrow(/--experts must be >= 2/);
    expect(() => moeConfig({ ...shape, topK: 9 })).toThrow(PatentGPTError);
  });
});

describe('moe bench: the command line', () => {
  it('full defaults run the four parts at 2K, 8K and 16K context; --quick shrinks the shapes and budget', () => {
    const full = parseMoeBenchArgs([]);
    expect(full.parts).toEqual([1, 2, 3, 4]);
    expect(full.claim.contexts).toEqual([2048, 8192, 16384]);
    expect(full.claim.shape.maxSeqLen).toBeGreaterThanOrEqual(16384 + full.claim.decodeTokens);
    expect(full.claim.shape.vocabSize).toBe(259); // the byte tokenizer
    expect(full.gguf.shape.vocabSize).toBe(32000); // LLaMA-2's tokenizer in the GGUF
    const quick = parseMoeBenchArgs(['--quick']);
    expect(quick.quick).toBe(true);
    expect(Math.max(...quick.claim.contexts)).toBeLessThan(16384);
    expect(quick.claim.trainSteps * quick.claim.trainBatch).toBeLessThan(full.claim.trainSteps * full.claim.trainBatch);
    expect(quick.layers[0]!.tokens).toBeLessThan(full.layers[0]!.tokens);
  });

  it('flags override the defaults, quick or not', () => {
    const o = parseMoeBenchArgs(['--quick', '--parts', '3', '--contexts', '1024,4096', '--experts', '16', '--topk', '4', '--claim-steps', '7',
      '--layer-shapes', '512x64x128x4x1', '--torch-attn', 'eager', '--data', '/x']);
    expect(o.parts).toEqual([3]);
    expect(o.claim.contexts).toEqual([1024, 4096]);
    expect(o.claim.shape).toMatchObject({ numExperts: 16, topK: 4 });
    expect(o.train.shape).toMatchObject({ numExperts: 16, topK: 4 });
    expect(o.claim.trainSteps).toBe(7);
    expect(o.layers).toEqual([{ tokens: 512, dim: 64, expertHidden: 128, numExperts: 4, topK: 1 }]);
    expect(o.torchAttn).toBe('eager');
    expect(o.data).toBe('/x');
  });

  it('refuses unknown flags, bad values and impossible shapes, naming them', () => {
    expect(() => parseMoeBenchArgs(['--bogus'])).toThrow(/unknown flag --bogus/);
    expect(() => parseMoeBenchArgs(['--parts', '5'])).toThrow(/--parts takes 1, 2, 3 and 4/);
    expect(() => parseMoeBenchArgs(['--contexts', '2048,x'])).toThrow(/--contexts must be a positive number/);
    expect(() => parseMoeBenchArgs(['--layer-shapes', '512x64x128'])).toThrow(/NxCxFxExK/);
    expect(() => parseMoeBenchArgs(['--layer-shapes', '512x64x128x2x3'])).toThrow(/top-k <= experts/);
    expect(() => parseMoeBenchArgs(['--topk', '9'])).toThrow(/topK/);
    expect(() => parseMoeBenchArgs(['--torch-attn', 'flash'])).toThrow(/sdpa or eager/);
    expect(() => parseMoeBenchArgs(['--steps'])).toThrow(/--steps needs a value/);
    expect(() => parseMoeBenchArgs(['--claim-steps', '2.5'])).toThrow(/integers/);
  });
});

/** Part 3 rows with the given speeds at 2K and 16K (prefill, decode) and validation losses. */
function claimRows(speeds: Record<string, [number, number][]>, losses: Record<string, number> | null): ClaimModelRow[] {
  return claimModels(shape).map(({ name, cfg }) => ({
    name, config: cfg, params: { total: parameterCount(cfg).total, active: parameterCount(cfg).active }, kvBytesPerToken: kv(cfg),
    train: losses ? { tokens: 1000, tokPerSec: 1, valLoss: losses[name]!, status: 'completed' } : null,
    contexts: [2048, 16384].map((context, i) => ({ context, prefillTokPerSec: speeds[name]![i]![0], decodeTokPerSec: speeds[name]![i]![1], peakBytes: 1e6 * (i + 1) })),
  }));
}

describe('moe bench: what part 3 shows', () => {
  const fastMoe = { moe: [[100, 10], [40, 6]], 'dense-total': [[120, 12], [20, 3]], 'dense-active': [[110, 11], [41, 7]] } as Record<string, [number, number][]>;

  it('states each comparison the way it goes, context by context', () => {
    const [vsTotal, vsActive] = claimFindings(claimRows(fastMoe, { moe: 2.0, 'dense-total': 1.9, 'dense-active': 2.1 }));
    expect(vsTotal).toContain('MoE vs the dense model of equal total parameters: a KV cache 2.00x smaller per token');
    expect(vsTotal).toContain('at context 2048: prefill 1.20x slower, decode 1.20x slower');
    expect(vsTotal).toContain('at 16384: prefill 2.00x faster, decode 2.00x faster');
    expect(vsTotal).toContain('validation loss after the same 1000 tokens 2.0000 vs 1.9000 (0.1000 higher: worse)');
    expect(vsActive).toContain('the same KV cache per token');
    expect(vsActive).toContain('(0.1000 lower: better)');
  });

  it('the verdict: holds, holds in part, or does not hold, at the longest context', () => {
    const verdict = (speeds: Record<string, [number, number][]>, losses: Record<string, number> | null): string => claimFindings(claimRows(speeds, losses)).at(-1)!;
    expect(verdict(fastMoe, { moe: 2.0, 'dense-total': 1.9, 'dense-active': 2.1 })).toMatch(/^Verdict: the claim holds on these scaled models: at 16384 tokens of context the MoE is cheaper/);
    expect(verdict(fastMoe, { moe: 2.2, 'dense-total': 1.9, 'dense-active': 2.1 })).toMatch(/^Verdict: the claim holds only in part.*its validation loss is not lower/);
    const slowMoe = { ...fastMoe, 'dense-total': [[120, 12], [50, 3]] } as Record<string, [number, number][]>; // prefill slower at 16K
    expect(verdict(slowMoe, { moe: 2.2, 'dense-total': 1.9, 'dense-active': 2.1 })).toMatch(/^Verdict: the claim does not hold.*MoE is not cheaper/);
    expect(verdict(fastMoe, null)).toMatch(/^Verdict: at 16384 .* cheaper .*quality half of the claim was not measured/);
  });
});

describe('moe bench: output', () => {
  it('markdownTable right-aligns numeric columns', () => {
    expect(markdownTable(['model', 'tok/s', 'ratio'], [['moe', 12.5, '1.20x'], ['dense', 10, '1.00x']])).toBe(
      '| model | tok/s | ratio |\n|---|---:|---:|\n| moe | 12.5 | 1.20x |\n| dense | 10 | 1.00x |',
    );
  });

  it('the bench scripts type-check under the package tsconfig (strict)', () => {
    const root = packageRoot();
    const dir = mkdtempSync(join(tmpdir(), 'pg-moe-bench-tsc-'));
    try {
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
        extends: join(root, 'tsconfig.json'),
        compilerOptions: { noEmit: true, rootDir: root, typeRoots: [join(root, 'node_modules', '@types')] },
        include: [join(root, 'scripts', 'bench', '*.ts')], // every bench, not only this one
      }));
      let out = '';
      try {
        execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' });
      } catch (err) {
        out = String((err as { stdout?: string }).stdout ?? err);
      }
      expect(out).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
