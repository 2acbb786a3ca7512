// `patentgpt eval` end to end on a tiny saved model: table, results.json, report.md with the
// skipped rows, reproducible from the seed, and a clear error for an unreadable task.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BYTE_VOCAB_SIZE, LlamaForCausalLM, preset, savePretrained, validateConfig } from '../../src/index.js';

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const cli = (args: string[]): string =>
  execFileSync(process.execPath, ['--import', 'tsx', main, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('patentgpt eval', () => {
  it('writes a table, JSON and markdown; same seed, same numbers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgpt-cli-eval-'));
    const cfg = validateConfig({ ...preset('tiny').config, vocabSize: BYTE_VOCAB_SIZE, dim: 32, nHeads: 4, nKvHeads: 2, ffnDim: 64, nLayers: 1, maxSeqLen: 512 });
    const model = new LlamaForCausalLM(cfg, { seed: 5 });
    await savePretrained(model, join(dir, 'model'));
    model.dispose();
    const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({
      question: `Question ${i}?`, choices: ['alpha', 'beta', 'gamma', 'delta'], answer: i % 4, category: i % 2 ? 'odd' : 'even',
    }));
    lines.push(JSON.stringify({ question: 'bad', choices: ['a', 'b'], answer: 'Z' }));
    writeFileSync(join(dir, 'toy.jsonl'), lines.join('\n'));
    writeFileSync(join(dir, 'multi.json'), JSON.stringify([
      { question: 'Which?', options: { A: 'x', B: 'y', C: 'z' }, answer: 'AC' },
      { question: 'Which one?', options: { A: 'x', B: 'y', C: 'z' }, answer: 'B' },
    ]));
    const args = ['eval', '--model', join(dir, 'model'), '--tokenizer', 'byte', '--tasks', `${join(dir, 'toy.jsonl')},${join(dir, 'multi.json')}`, '--shots', '2', '--seed', '9', '--limit', '10'];
    const out = cli([...args, '--out', join(dir, 'a')]);
    expect(out).toMatch(/task \/ category\s+n\s+acc %/);
    expect(out).toMatch(/toy\s+10/);
    expect(out).toMatch(/ {2}odd\s+5/);
    expect(out).toMatch(/1 malformed row/);
    const a = JSON.parse(readFileSync(join(dir, 'a', 'results.json'), 'utf8'));
    expect(a.tasks.map((t: { task: string }) => t.task)).toEqual(['toy', 'multi']);
    expect(a.tasks[0].docs).toHaveLength(10);
    expect(a.tasks[0].skipped).toEqual([{ file: join(dir, 'toy.jsonl'), row: 13, reason: 'answer-not-in-choices', detail: expect.any(String) }]);
    expect(a.tasks[1].docs[0].candidates).toHaveLength(7);
    const md = readFileSync(join(dir, 'a', 'report.md'), 'utf8');
    expect(md).toMatch(/\| toy \| 10 \|/);
    expect(md).toMatch(/\| 13 \| answer-not-in-choices \|/);
    cli([...args, '--out', join(dir, 'b')]);
    const b = JSON.parse(readFileSync(join(dir, 'b', 'results.json'), 'utf8'));
    expect(b.tasks.map((t: { docs: unknown }) => t.docs)).toEqual(a.tasks.map((t: { docs: unknown }) => t.docs));
    cli([...args.slice(0, -4), '--seed', '10', '--limit', '10', '--out', join(dir, 'c')]);
    const c = JSON.parse(readFileSync(join(dir, 'c', 'results.json'), 'utf8'));
    expect(c.tasks[0].docs.map((d: { loglik: number[] }) => d.loglik)).not.toEqual(a.tasks[0].docs.map((d: { loglik: number[] }) => d.loglik));
    let err = '';
    try {
      cli(['eval', '--model', join(dir, 'model'), '--tokenizer', 'byte', '--tasks', join(dir, 'missing.jsonl')]);
    } catch (e) {
      err = String((e as { stderr: string }).stderr);
    }
    expect(err).toContain('missing.jsonl');
  }, 90_000);

  it('runs generation, perplexity and phrase-matching definitions: one table per kind, all in results.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgpt-cli-eval-'));
    const cfg = validateConfig({ ...preset('tiny').config, vocabSize: BYTE_VOCAB_SIZE, dim: 32, nHeads: 4, nKvHeads: 2, ffnDim: 64, nLayers: 1, maxSeqLen: 128 });
    const model = new LlamaForCausalLM(cfg, { seed: 6 });
    await savePretrained(model, join(dir, 'model'));
    model.dispose();
    writeFileSync(join(dir, 'qa.jsonl'), ['{"q":"Who grants patents?","a":"the office","c":"law"}', '{"q":"Term?","a":"twenty years","c":"term"}'].join('\n'));
    writeFileSync(join(dir, 'qa.task.json'), JSON.stringify({ kind: 'generate', files: ['qa.jsonl'], prompt: 'Q: {q}\nA:', reference: '{a}', category: '{c}', maxTokens: 50, stop: ['\n'] }));
    writeFileSync(join(dir, 'docs.csv'), 'text,section\nA device comprising a housing.,claims\n专利权的期限,law\n');
    writeFileSync(join(dir, 'ppl.task.json'), JSON.stringify({ kind: 'perplexity', files: ['docs.csv'], text: '{text}', category: '{section}' }));
    writeFileSync(join(dir, 'pairs.csv'), 'anchor,target,context,score\nabatement,act of abating,A47,0.75\nabatement,forest region,A47,0\ndry corn,corn starch,C12,0.5\n');
    writeFileSync(join(dir, 'pm.task.json'), JSON.stringify({ kind: 'phrase-matching', files: ['pairs.csv'] }));
    const tasks = ['qa', 'ppl', 'pm'].map((t) => join(dir, `${t}.task.json`)).join(',');
    const out = cli(['eval', '--model', join(dir, 'model'), '--tokenizer', 'byte', '--tasks', tasks, '--max-tokens', '8', '--out', join(dir, 'o')]);
    expect(out).toMatch(/task \/ category\s+n\s+exact match %\s+F1 %\s+ROUGE-L %\s+BLEU/);
    expect(out).toMatch(/task \/ category\s+docs\s+tokens\s+perplexity\s+bits\/byte/);
    expect(out).toMatch(/task \/ category\s+pairs\s+pearson r/);
    const r = JSON.parse(readFileSync(join(dir, 'o', 'results.json'), 'utf8'));
    expect(r.tasks.map((t: { kind: string }) => t.kind)).toEqual(['generate', 'perplexity', 'phrase-matching']);
    expect(r.tasks[0].options.maxTokens).toBe(8);
    expect(Object.keys(r.tasks[0].byCategory)).toEqual(['law', 'term']);
    expect(r.tasks[1].byCategory.claims.tokens).toBe(Buffer.byteLength('A device comprising a housing.'));
    expect(r.tasks[2].docs).toHaveLength(3);
    expect(readFileSync(join(dir, 'o', 'report.md'), 'utf8')).toMatch(/\| pm \| 3 \|/);
  }, 90_000);
});
