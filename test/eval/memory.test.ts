// Memory of multiple-choice scoring: the peak resident memory of `patentgpt eval` stays under 4x
// the model's weight bytes (it was 3.9 GB for a 438 MB, 110M model: a 1024-token forward keeps
// every layer's activations, a 256 MiB KV cache whatever the model, and the allocator kept up to
// 2 GiB of freed blocks of sizes no later step asked for). Here a 41M-parameter model (165 MB,
// the llama2 vocabulary) scores Chinese exam-style questions in a child process; the in-process
// part checks the bounds the scorer sets itself.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BYTE_VOCAB_SIZE, ByteTokenizer, LlamaForCausalLM, Scorer, SentencePieceTokenizer, activationBytesPerToken, evaluateMc, preset, savePretrained, validateConfig,
  type McTask,
} from '../../src/index.js';
import { memoryStats, releaseCachedMemory, resetPeakMemory } from '../../src/tensor/index.js';

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'pgpt-eval-mem-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 32000, dim: 512, nHeads: 8, nKvHeads: 8, ffnDim: 1376, nLayers: 8, maxSeqLen: 1024, tieEmbeddings: true });
const STEM = '甲公司委托乙公司研发一种面包机，乙公司指定员工完成了发明创造。在没有任何约定的情形下，下列关于该发明创造申请专利的权利归属的说法哪些是正确的？';
const questions = Array.from({ length: 24 }, (_, i) => ({
  question: `${STEM.repeat(1 + (i % 3))}（第${i + 1}题）`,
  choices: ['属于甲公司', '属于乙公司', '属于该员工', '由甲乙共有'],
  answer: i % 4,
  category: i % 2 ? '专利法' : '实施细则',
}));

describe('memory of multiple-choice scoring', () => {
  it('bounds its own working memory: steps by activations, the KV cache and the allocator cache by the weights', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 1 });
    const weights = model.parameters().reduce((s, t) => s + t.byteLength, 0);
    const tok = SentencePieceTokenizer.llama2();
    const task: McTask = { name: 'mem', skipped: [], files: [], docs: questions.map((q, i) => ({ id: String(i), question: q.question, choices: q.choices, answer: [q.answer], multi: false, category: q.category })) };
    releaseCachedMemory();
    const scorer = new Scorer(model, tok);
    expect(scorer.maxBatchTokens * activationBytesPerToken(cfg)).toBeLessThanOrEqual(weights / 4);
    expect(scorer.kvCacheBytes).toBeLessThanOrEqual(weights / 2);
    evaluateMc(scorer, task);
    expect(memoryStats().cpu.cachedBytes).toBeLessThanOrEqual(scorer.cacheLimitBytes);
    scorer.close();
    model.dispose();
  }, 120_000);

  it('a context longer than a step is prefilled in chunks: the same log-likelihoods, and no step holds more than a step of activations', () => {
    const small = validateConfig({ ...preset('tiny').config, vocabSize: BYTE_VOCAB_SIZE, dim: 64, nHeads: 4, nKvHeads: 2, ffnDim: 128, nLayers: 2, maxSeqLen: 1024 });
    const model = new LlamaForCausalLM(small, { seed: 4 });
    const tok = new ByteTokenizer();
    const docs = Array.from({ length: 3 }, (_, i) => ({
      id: String(i), question: `${'A patent claim recites a device comprising a housing and a lid. '.repeat(6 + i)}Which part is claimed?`,
      choices: ['the housing', 'the lid', 'both', 'neither'], answer: [i % 4], multi: false, category: 'c',
    }));
    const task: McTask = { name: 'long', skipped: [], files: [], docs };
    const reference = evaluateMc(new Scorer(model, tok, { batched: false }), task).docs.map((d) => d.loglik).flat();
    const step = 64;
    const scorer = new Scorer(model, tok, { maxBatchTokens: step });
    evaluateMc(scorer, { ...task, docs: docs.slice(0, 1) }); // makes the KV cache
    releaseCachedMemory();
    resetPeakMemory();
    const before = memoryStats().cpu.liveBytes;
    const got = evaluateMc(scorer, task).docs.map((d) => d.loglik).flat();
    const peak = memoryStats().cpu.peakBytes - before;
    for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(reference[i]!, 3);
    // Contexts of ~400-560 tokens, each once in a single step before: ~8x this bound.
    expect(peak).toBeLessThanOrEqual(2 * step * activationBytesPerToken(small));
    scorer.close();
    model.dispose();
  });

  it('patentgpt eval peaks under 4x the weight bytes, and says so in results.json', async () => {
    const model = new LlamaForCausalLM(cfg, { seed: 1 });
    await savePretrained(model, join(dir, 'model'));
    model.dispose();
    writeFileSync(join(dir, 'exam.jsonl'), questions.map((q) => JSON.stringify(q)).join('\n'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'eval', '--model', join(dir, 'model'), '--tokenizer', 'llama2', '--tasks', join(dir, 'exam.jsonl'), '--progress', 'none', '--out', join(dir, 'o')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(readFileSync(join(dir, 'o', 'results.json'), 'utf8')) as { tasks: { metrics: { n: number } }[]; memory: { peakRssBytes: number; weightBytes: number } };
    expect(res.tasks[0]!.metrics.n).toBe(24);
    expect(res.memory.weightBytes).toBeGreaterThan(150e6);
    expect(res.memory.peakRssBytes / res.memory.weightBytes).toBeLessThan(4);
  }, 300_000);
});
