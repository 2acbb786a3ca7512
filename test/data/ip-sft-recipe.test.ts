// The IP instruction-set recipe of examples/README.md: its `patentgpt data synth` step (run here
// exactly as the README writes it, offline, into a temporary file) yields records every one of
// which the SFT readers accept as Alpaca records and the byte LLaMA-2 renderer turns into
// supervised conversations, in English and Chinese, from both templates; and
// examples/ip-sft.json validates, reads that file where the step writes it, and mixes general and
// IP instructions in about the paper's proportion (30k general : 13k IP). Needs ../shared/data
// (PATENTGPT_DATA); skipped with a message when absent.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { synthCommand } from '../../src/cli/synth.js';
import { loadSftData, normalizeRecord, readSftRecords, SkipCounter } from '../../src/data/sft/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { loadStageConfig, type SftConfig } from '../../src/train/config.js';
import { sftRenderer } from '../../src/train/stages/sft.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DATA = process.env.PATENTGPT_DATA ?? path.resolve(ROOT, '../shared/data');
const HAVE_DATA = fs.existsSync(path.join(DATA, 'general-sft-pretrain-demo')) && fs.existsSync(path.join(DATA, 'uspto-fulltext-rubyxml'));
const README = path.join(ROOT, 'examples', 'README.md');
const CONFIG = path.join(ROOT, 'examples', 'ip-sft.json');

/** The synth command of the README's IP section, as argv after `patentgpt data synth`. */
function readmeSynthArgs(): string[] {
  const text = fs.readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## IP instruction set'));
  const m = /patentgpt data synth ((?:[^\n]*\\\n)*[^\n]*)/.exec(section);
  if (!m) throw new Error('examples/README.md: no `patentgpt data synth` command in the IP instruction set section');
  return m[1]!.replace(/\\\n/g, ' ').trim().split(/\s+/);
}

/** The value of --flag in argv and the values after it up to the next flag. */
function flagValues(argv: string[], flag: string): string[] {
  const i = argv.indexOf(flag);
  if (i < 0) return [];
  const out: string[] = [];
  for (let j = i + 1; j < argv.length && !argv[j]!.startsWith('--'); j++) out.push(argv[j]!);
  return out;
}

// The recipe reads real patents and instructions from ../shared/data (CI has it beside the checkout);
// without it there is nothing to synthesise from, and the title says why the suite skipped.
describe.skipIf(!HAVE_DATA)(`IP SFT recipe (examples/README.md, examples/ip-sft.json)${HAVE_DATA ? '' : ` (skipped: no ${DATA}; set PATENTGPT_DATA)`}`, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-ip-sft-'));
  const out = path.join(tmp, 'ip-instructions.jsonl');
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('the README\'s synth step writes records the SFT readers take as Alpaca, all rendered with supervised answer tokens', async () => {
    const argv = readmeSynthArgs();
    expect(flagValues(argv, '--backend')).toEqual(['offline']); // runs anywhere, no endpoint
    expect(flagValues(argv, '--template')).toEqual(['patent-to-qa,sft-instruction']);
    // Inputs as the README names them (relative to the repository root), read from DATA here.
    const args = argv.map((a) => (a.startsWith('../shared/data/') ? path.join(DATA, a.slice('../shared/data/'.length)) : a));
    args[args.indexOf('--out') + 1] = out;
    const log = console.log;
    console.log = () => {};
    try {
      await synthCommand().exitOverride().parseAsync([...args, '--quiet'], { from: 'user' });
    } finally {
      console.log = log;
    }

    const renderer = sftRenderer({ chatTemplate: 'llama2', tokenizer: 'byte' }, new ByteTokenizer());
    const skipped = new SkipCounter();
    const seen = new Set<string>();
    let n = 0;
    for await (const item of readSftRecords(out, 'jsonl')) {
      if (!('record' in item)) {
        skipped.add(item.skip);
        continue;
      }
      const rec = item.record as { provenance: { template: string }; lang: string };
      const norm = normalizeRecord(item.record, { layout: 'alpaca' });
      expect(norm.ok, JSON.stringify(norm)).toBe(true);
      if (!norm.ok) continue;
      expect(norm.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
      const r = renderer.render(norm.messages);
      const supervised = r.assistantMask.reduce((s, v) => s + v, 0);
      expect(supervised).toBeGreaterThan(1); // the answer's bytes and its EOS
      expect(supervised).toBeLessThan(r.ids.length); // the prompt is masked
      seen.add(`${rec.provenance.template}/${rec.lang}`);
      n++;
    }
    expect(skipped.total).toBe(0);
    expect(n).toBeGreaterThan(1000);
    expect([...seen].sort()).toEqual(['patent-to-qa/en', 'patent-to-qa/zh', 'sft-instruction/en', 'sft-instruction/zh']);
  }, 120_000);

  it('examples/ip-sft.json validates, reads the synth output where the README writes it, and mixes about 1/3 IP', async () => {
    const argv = readmeSynthArgs();
    const cfg = (await loadStageConfig(CONFIG)) as SftConfig;
    expect(cfg.kind).toBe('sft');
    expect(cfg.init).toBe(path.resolve('runs/tiny-stage1')); // after the tiny pretraining stage (run folders resolve against the working directory)
    const synthSource = path.resolve(ROOT, flagValues(argv, '--out')[0]!); // the README runs from the repository root
    const paths = cfg.data.sources.map((s) => s.path);
    expect(paths).toContain(synthSource);
    for (const p of paths) if (p !== synthSource) expect(fs.existsSync(p), p).toBe(true);

    // The mixture as the stage loads it, the synth source read from the test's own output.
    const sources = cfg.data.sources.map((s) => (s.path === synthSource ? { ...s, path: out } : s));
    const renderer = sftRenderer(cfg, new ByteTokenizer());
    const data = await loadSftData({
      sources, renderer, seed: cfg.seed, valFraction: cfg.data.valFraction, splitSeed: cfg.data.splitSeed, shuffle: cfg.data.shuffle,
      trainOnPrompt: cfg.data.trainOnPrompt, maxLength: cfg.data.maxLength ?? cfg.seqLen,
    });
    expect(data.val.length).toBeGreaterThan(50); // a held-out split to measure the answer loss on
    const mixed = data.sources.map((s) => s.mixed);
    const general = mixed[0]! + mixed[1]!;
    const ip = mixed[2]! + mixed[3]!;
    expect(data.train.length).toBe(general + ip);
    expect(ip / (general + ip)).toBeGreaterThan(0.25);
    expect(ip / (general + ip)).toBeLessThan(0.45);
    // Only over-long prompts are left out (too-long), never a malformed record.
    expect(Object.keys(data.skipped.nonzero()).filter((r) => r !== 'too-long')).toEqual([]);
  }, 120_000);
});

