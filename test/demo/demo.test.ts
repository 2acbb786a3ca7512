// `patentgpt demo` at smoke size (tiny model, a few steps per stage): every step runs and leaves
// what it should, report.html has every panel and renders in a real browser without errors, and a
// rerun skips the finished steps and resumes a stage whose marker is missing from its checkpoint.
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoBudget, demoSteps, readMarker, runDemo, type DemoResult } from '../../src/demo/index.js';
import { renderReport } from '../../src/demo/report.js';
import { findChromium, renderInBrowser } from './browser.js';

const TRAINED = ['stage1', 'moe', 'stage2', 'sft', 'reward', 'ppo'];
const EVALUATED = ['init', 'stage1', 'moe', 'stage2', 'sft', 'ppo'];
const PANELS = ['data', 'tokenizer', ...TRAINED.map((s) => `run-${s}`), 'losses', 'eval', 'chat'];

/** Progress written to a string, as a pipe would get it (JSON lines). */
function capture(): { stream: { write(s: string): boolean; isTTY: false }; lines: () => Record<string, unknown>[] } {
  let text = '';
  return {
    stream: { write: (s: string) => ((text += s), true), isTTY: false },
    lines: () => text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Throws naming what is missing: a step's marker, a run's files, a report panel. */
function checkDemoFolder(out: string, html: string): void {
  for (const step of demoSteps('ppo')) if (!readMarker(out, step)) throw new Error(`step ${step} left no marker`);
  for (const s of TRAINED) {
    for (const f of ['metrics.jsonl', 'report.svg']) if (!existsSync(join(out, 'runs', s, f))) throw new Error(`run ${s} has no ${f}`);
    const marker = readMarker(out, s)!;
    if (!(typeof marker.result.step === 'number' && marker.result.step > 0)) throw new Error(`run ${s} trained no step`);
  }
  for (const p of PANELS) if (!html.includes(`data-panel="${p}"`)) throw new Error(`report.html has no ${p} panel`);
  for (const s of EVALUATED) if (!html.includes(`data-stage="${s}"`)) throw new Error(`report.html has no eval row for ${s}`);
}

describe('patentgpt demo (smoke size)', () => {
  let out: string;
  let first: DemoResult;
  let progress: Record<string, unknown>[];

  beforeAll(async () => {
    out = mkdtempSync(join(tmpdir(), 'pg-demo-'));
    const cap = capture();
    first = await runDemo({ out, smoke: true, progress: cap.stream });
    progress = cap.lines();
  }, 600_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs every step of the paper\'s path once, with progress per step as JSON lines', () => {
    expect(first.status).toBe('completed');
    expect(first.ran).toEqual(demoSteps('ppo'));
    expect(first.skipped).toEqual([]);
    const done = progress.filter((e) => e.event === 'demo' && e.status === 'done').map((e) => e.step);
    expect(done).toEqual(demoSteps('ppo'));
    // the training stages' own progress comes through too
    for (const s of TRAINED) expect(progress.some((e) => e.event === 'progress' && e.label === s)).toBe(true);
  });

  it('leaves each stage\'s run folder, the tokenizers, the evals and a chat transcript', () => {
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    checkDemoFolder(out, html);
    const tok = readMarker(out, 'tokenizer')!.result as { charsPerToken: { byte: number; base: number; merged: number }; vocab: { merged: number } };
    expect(tok.charsPerToken.merged).toBeGreaterThan(tok.charsPerToken.base);
    expect(tok.charsPerToken.base).toBeGreaterThan(tok.charsPerToken.byte);
    const prep = readMarker(out, 'prep-text')!.result as { documents: { in: number; kept: number; dropped: Record<string, number> } };
    expect(prep.documents.kept).toBeLessThan(prep.documents.in); // the junk is filtered out
    const ev = readMarker(out, 'eval-stage1')!.result as { tasks: { task: string; chance?: number; perplexity?: number }[] };
    expect(ev.tasks.find((t) => t.task === 'patent-title')!.chance).toBeCloseTo(0.25, 6);
    expect(ev.tasks.find((t) => t.task === 'heldout-perplexity')!.perplexity).toBeGreaterThan(1);
    // stage 2 extends the context: its config trains at 2x stage 1's rows with a larger RoPE base
    const s1 = JSON.parse(readFileSync(join(out, 'configs', 'stage1.json'), 'utf8')) as { seqLen: number };
    const s2 = JSON.parse(readFileSync(join(out, 'configs', 'stage2.json'), 'utf8')) as { seqLen: number; context: { ropeTheta: number } };
    expect(s2.seqLen).toBeGreaterThan(s1.seqLen);
    expect(s2.context.ropeTheta).toBeGreaterThan(10000);
    const chat = readMarker(out, 'chat')!.result as { model: string; turns: { user: string; tokens: number }[]; before: { model: string; turns: { tokens: number }[] } };
    expect(chat.turns.length).toBe(3);
    expect(chat.turns.every((t) => t.tokens > 0)).toBe(true);
    expect(chat.model).toMatch(/runs\/ppo\//);
    expect(chat.before.model).toMatch(/runs\/sft\//);
    expect(chat.before.turns.length).toBe(3);
  });

  it('the folder check fails when a stage is missing or the report lacks a panel', () => {
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(() => checkDemoFolder(out, html.replace('data-panel="run-moe"', 'data-panel="x"'))).toThrow(/run-moe/);
    const results = Object.fromEntries(demoSteps('ppo').map((s) => [s, readMarker(out, s)!.result]));
    delete results['eval-sft'];
    const partial = renderReport({ steps: demoSteps('ppo'), results, budget: demoBudget({ smoke: true }), align: 'ppo' });
    expect(() => checkDemoFolder(out, partial)).toThrow(/eval row for sft/);
  });

  it('report.html renders in a headless browser with every figure and table and no console error', async (ctx) => {
    const chromium = findChromium();
    if (!chromium.path) return ctx.skip(chromium.why);
    const page = await renderInBrowser(join(out, 'report.html'), chromium.path);
    expect(page.errors).toEqual([]);
    expect(page.panels).toEqual(expect.arrayContaining(PANELS));
    for (const s of TRAINED) {
      const f = page.figures[s];
      expect(f, `figure ${s}`).toBeDefined();
      expect(f!.width).toBeGreaterThan(100);
      expect(f!.height).toBeGreaterThan(100);
      expect(f!.curves).toBeGreaterThan(2);
      expect(f!.titles.join(' ')).toMatch(/Loss/);
    }
    expect(page.figures.moe!.titles.join(' ')).toMatch(/Expert load/);
    expect(page.figures.ppo!.titles.join(' ')).toMatch(/Reward and KL/);
    const evalRows = page.tables.eval!;
    expect(evalRows.map((r) => r[0])).toEqual(['after', 'chance', ...EVALUATED]);
    expect(evalRows[1]!.slice(1, 5)).toEqual(['25.0%', '25.0%', '25.0%', '25.0%']);
    expect(page.tables.tokenizer!.length).toBe(4);
    expect(page.tables.losses!.map((r) => r[0])).toEqual(['stage', ...TRAINED]);
    expect(page.chatTurns).toBe(3);
  }, 120_000);

  it('a rerun skips every finished step and resumes a stage from its checkpoint', async () => {
    const before = statSync(join(out, 'stages', 'stage1.json')).mtimeMs;
    const again = await runDemo({ out, smoke: true, progress: null });
    expect(again.ran).toEqual(['report']);
    expect(again.skipped).toEqual(demoSteps('ppo').filter((s) => s !== 'report'));
    expect(statSync(join(out, 'stages', 'stage1.json')).mtimeMs).toBe(before);
    // A stage that stopped before its marker was written: the rerun continues its run folder.
    unlinkSync(join(out, 'stages', 'sft.json'));
    const resumed = await runDemo({ out, smoke: true, progress: null });
    expect(resumed.ran[0]).toBe('sft');
    const sft = readMarker(out, 'sft')!.result as { resumedFrom: number | null; step: number };
    expect(sft.resumedFrom).toBe(sft.step);
  }, 300_000);

  it('--align dpo on the same folder keeps the steps up to SFT and adds DPO, its eval, the chat and the report', async () => {
    const dpo = await runDemo({ out, smoke: true, align: 'dpo', progress: null });
    expect(dpo.ran).toEqual(['dpo', 'eval-dpo', 'chat', 'report']);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain('data-panel="run-dpo"');
    expect(html).toContain('data-stage="dpo"');
    expect(html).toContain('Implicit rewards (DPO)');
    expect(readMarker(out, 'chat')!.result.model).toMatch(/runs\/dpo\//);
  }, 300_000);
});
