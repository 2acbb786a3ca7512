// Generation through the engine, perplexity and phrase matching: task definitions and their
// errors, rolling windows, perplexity against a plain forward, PMI scores against the scorer, and a
// tiny model trained on known answers that generates them (exact match, F1, ROUGE-L, BLEU at 100).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BYTE_VOCAB_SIZE, ByteTokenizer, Engine, LlamaForCausalLM, Scorer, dataDir, evaluateGenerate, evaluatePerplexity, evaluatePhraseMatching,
  loadGenTask, loadPhraseTask, loadPplTask, loadTaskDef, noGrad, parseTaskDef, phrasePrompts, preset, resolveTask, rollingWindows,
  validateConfig, type GenerateDef, type PerplexityDef, type PhraseMatchingDef,
} from '../../src/index.js';
import { AdamW } from '../../src/train/optimizer.js';
import { expectClose } from '../helpers.js';

const cfg = validateConfig({ ...preset('tiny').config, vocabSize: BYTE_VOCAB_SIZE, dim: 32, nHeads: 4, nKvHeads: 2, ffnDim: 64, nLayers: 2, maxSeqLen: 64 });
const tok = new ByteTokenizer();
const dir = mkdtempSync(join(tmpdir(), 'pgpt-eval-tasks-'));

describe('task definitions', () => {
  it('reads CSV, JSONL and JSON rows through templates; rows with a missing field are skipped and listed', () => {
    writeFileSync(join(dir, 'qa.csv'), 'q,a,cat\nWho grants patents?,the office,law\n,no question,law\nTerm?,20 years,\n');
    writeFileSync(join(dir, 'qa.jsonl'), '{"q":"Where?","a":"Alexandria","cat":"us"}\nnot json\n');
    writeFileSync(join(dir, 'qa.task.json'), JSON.stringify({ kind: 'generate', files: ['qa.csv', 'qa.jsonl'], prompt: 'Q: {q}\nA:', reference: '{a}', category: '{cat}', stop: ['\n'] }));
    const task = resolveTask(join(dir, 'qa.task.json'));
    expect(task).toMatchObject({ kind: 'generate', name: 'qa', maxTokens: 128, stop: ['\n'] });
    if (!('kind' in task) || task.kind !== 'generate') throw new Error('not a generative task');
    expect(task.docs.map((d) => [d.prompt, d.references, d.category])).toEqual([
      ['Q: Who grants patents?\nA:', ['the office'], 'law'],
      ['Q: Term?\nA:', ['20 years'], 'qa'], // empty category field: the file name
      ['Q: Where?\nA:', ['Alexandria'], 'us'],
    ]);
    expect(task.skipped.map((s) => [s.row, s.reason])).toEqual([[2, 'missing-field'], [2, 'malformed-row']]);
  });

  it('names the field at fault, and a missing file or unknown kind is a clear error', () => {
    const bad = (o: unknown): unknown => {
      try {
        parseTaskDef(o, dir, 'x.task.json');
      } catch (e) {
        return e;
      }
      return null;
    };
    expect(bad({ kind: 'classify', files: ['a.csv'] })).toMatchObject({ code: 'E_CONFIG', message: expect.stringContaining('"kind"') });
    expect(bad({ kind: 'generate', files: [] })).toMatchObject({ code: 'E_CONFIG', message: expect.stringContaining('"files"') });
    expect(bad({ kind: 'generate', files: ['a.csv'], prompt: 'x' })).toMatchObject({ code: 'E_CONFIG', message: expect.stringContaining('"reference"') });
    expect(bad({ kind: 'generate', files: ['a.csv'], prompt: 'x', reference: 'y', maxTokens: 0 })).toMatchObject({ message: expect.stringContaining('"maxTokens"') });
    const def = parseTaskDef({ kind: 'perplexity', files: ['absent.jsonl'] }, dir, 'p.task.json') as PerplexityDef;
    expect(() => loadPplTask(def)).toThrow(expect.objectContaining({ code: 'E_IO', message: expect.stringContaining('absent.jsonl') }));
    writeFileSync(join(dir, 'broken.task.json'), '{ "kind": ');
    expect(() => loadTaskDef(join(dir, 'broken.task.json'))).toThrow(expect.objectContaining({ code: 'E_FORMAT' }));
  });
});

describe('perplexity', () => {
  it('rolling windows predict every token once, the later ones with a full context (lm-eval)', () => {
    const ids = Int32Array.from({ length: 10 }, (_, i) => 100 + i);
    const w = rollingWindows(ids, 1, 4);
    expect(w.map((x) => [Array.from(x.context), Array.from(x.continuation)])).toEqual([
      [[1], [100, 101, 102, 103]],
      [[103], [104, 105, 106, 107]],
      [[105, 106, 107], [108, 109]],
    ]);
    expect(rollingWindows(new Int32Array(0), 1, 4)).toEqual([]);
  });

  it('is exp(-sum / tokens) over each category, the sums equal to plain forwards', () => {
    writeFileSync(join(dir, 'docs.jsonl'), [
      { text: 'A claim about a housing and a lid, long enough to need two windows of the context.', category: 'claims' },
      { text: 'Short one.', category: 'claims' },
      { text: '专利权', category: 'law' },
    ].map((o) => JSON.stringify(o)).join('\n'));
    const model = new LlamaForCausalLM(cfg, { seed: 4 });
    const task = loadPplTask(parseTaskDef({ kind: 'perplexity', files: ['docs.jsonl'], category: '{category}' }, dir, 'docs.task.json') as PerplexityDef);
    const res = evaluatePerplexity(new Scorer(model, tok), task);
    // Plain reference: each window as one forward, f64 log-softmax.
    const plain = task.docs.map((d) => {
      let s = 0;
      for (const w of rollingWindows(Int32Array.from(tok.encode(d.text)), tok.bosId, cfg.maxSeqLen)) {
        const all = Int32Array.from([...w.context, ...w.continuation]);
        const x = noGrad(() => {
          const l = model.forward({ tokens: all.subarray(0, all.length - 1) });
          const a = l.toArray() as Float32Array;
          l.dispose();
          return a;
        });
        const V = cfg.vocabSize;
        for (let j = 0; j < w.continuation.length; j++) {
          const p = w.context.length - 1 + j;
          let mx = -Infinity;
          for (let v = 0; v < V; v++) mx = Math.max(mx, x[p * V + v]!);
          let z = 0;
          for (let v = 0; v < V; v++) z += Math.exp(x[p * V + v]! - mx);
          s += x[p * V + w.continuation[j]!]! - mx - Math.log(z);
        }
      }
      return s;
    });
    expect(res.docs[0]!.tokens).toBeGreaterThan(cfg.maxSeqLen);
    expectClose(res.docs.map((d) => d.loglik), plain, 1e-3, 1e-5, 'document log-likelihoods');
    const c = res.byCategory.claims!;
    expect(c.tokens).toBe(res.docs[0]!.tokens + res.docs[1]!.tokens);
    expectClose([c.perplexity, res.byCategory.law!.bits_per_byte], [Math.exp(-(plain[0]! + plain[1]!) / c.tokens), -plain[2]! / Math.LN2 / 9], 0, 1e-6, 'perplexity, bits/byte');
    expect(res.metrics.n).toBe(3);
    model.dispose();
  });
});

describe('phrase matching', () => {
  it('scores each pair by PMI per target token and reports Pearson r per CPC section; bad scores are skipped', () => {
    writeFileSync(join(dir, 'pairs.csv'), [
      'id,anchor,target,context,score', 'a,abatement,abatement of pollution,A47,0.5', 'b,abatement,forest region,A47,0',
      'c,adjust gas flow,altering gas flow,F23,0.75', 'd,dry corn,dry corn starch,C12,1', 'e,opc drum,drum,G02,high', 'f,lid,cover,A47,0.25',
    ].join('\n'));
    const task = loadPhraseTask(parseTaskDef({ kind: 'phrase-matching', files: ['pairs.csv'] }, dir, 'p.task.json') as PhraseMatchingDef);
    expect(task.skipped).toEqual([expect.objectContaining({ row: 5, reason: 'bad-score' })]);
    const model = new LlamaForCausalLM(cfg, { seed: 8 });
    const scorer = new Scorer(model, tok);
    const res = evaluatePhraseMatching(scorer, task);
    const d = task.docs[2]!;
    const p = phrasePrompts(d);
    const [c, u] = scorer.loglikelihood([{ context: p.conditioned, continuation: ` ${d.target}` }, { context: p.unconditioned, continuation: ` ${d.target}` }]);
    expect(res.docs[2]!.model).toBeCloseTo((c!.logprob - u!.logprob) / c!.nTokens, 5);
    expect(Object.keys(res.byCategory)).toEqual(['A', 'C', 'F']);
    expect(res.byCategory.A!.n).toBe(3);
    expect(Number.isFinite(res.metrics.pearson)).toBe(true);
    model.dispose();
  });

  it('reads the real phrase-matching data (skips without it)', (ctx) => {
    const task = (() => {
      try {
        return resolveTask('phrase-matching', dataDir());
      } catch {
        return null;
      }
    })();
    if (!task) return ctx.skip();
    if (!('kind' in task) || task.kind !== 'phrase-matching') throw new Error('not phrase matching');
    expect(task.docs.length).toBeGreaterThan(30000);
    expect(task.skipped).toEqual([]);
    expect(new Set(task.docs.map((x) => x.category))).toEqual(new Set(['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H']));
  });
});

describe('generation through the engine', () => {
  it('a tiny model trained on known answers generates them: exact match, F1, ROUGE-L 100%, BLEU 100', async () => {
    const qa = [
      ['Who grants patents?', 'the patent office grants them'],
      ['How long is the term?', 'twenty years from the filing date'],
      ['What defines the scope?', 'the claims define the scope'],
    ];
    writeFileSync(join(dir, 'known.jsonl'), qa.map(([q, a]) => JSON.stringify({ q, a })).join('\n'));
    const def = parseTaskDef({ kind: 'generate', files: ['known.jsonl'], prompt: 'Q: {q}\nA:', reference: '{a}', stop: ['\n'], maxTokens: 48 }, dir, 'k') as GenerateDef;
    const task = loadGenTask(def);
    // A context of 128: the prompts (about 27 tokens) fit beside maxTokens 48 without left truncation.
    const model = new LlamaForCausalLM(validateConfig({ ...cfg, maxSeqLen: 128 }), { seed: 2 });
    const texts = task.docs.map((d, i) => tok.encode(`${d.prompt} ${qa[i]![1]}\n`, { bos: true }));
    const N = texts.reduce((s, t) => s + t.length, 0);
    const tokens = new Int32Array(N);
    const targets = new Int32Array(N).fill(-100);
    const cu = [0];
    let off = 0;
    texts.forEach((t, i) => {
      tokens.set(t, off);
      // Only the answers are targets (the prompts are what the model is given).
      const promptLen = tok.encode(task.docs[i]!.prompt, { bos: true }).length;
      for (let j = promptLen - 1; j + 1 < t.length; j++) targets[off + j] = t[j + 1]!;
      off += t.length;
      cu.push(off);
    });
    const opt = new AdamW(model.namedParameters(), { weightDecay: 0, maxGradNorm: 1 });
    // Until the answers are memorised: a mean loss under 1e-3 over ~90 answer tokens leaves no token
    // whose argmax is wrong (that alone would add log(2) / 90), so greedy decoding reproduces them.
    let last = Infinity;
    for (let step = 0; step < 1500 && last > 1e-3; step++) {
      const loss = model.loss({ tokens, targets, cuSeqlens: cu });
      loss.backward();
      last = loss.item();
      loss.dispose();
      opt.step(5e-3);
      opt.zeroGrad();
    }
    expect(last).toBeLessThan(1e-3);
    opt.dispose();
    const engine = new Engine(model, { tokenizer: tok, kvCacheBytes: 1 << 20 });
    const seen: number[] = [];
    const res = await evaluateGenerate(engine, tok, task, { onProgress: (done) => seen.push(done) });
    engine.close();
    expect(res.docs.map((d) => d.completion)).toEqual(qa.map((x) => x[1]));
    expect(res.docs.map((d) => d.finishReason)).toEqual(['stop', 'stop', 'stop']);
    expect(res.metrics).toMatchObject({ n: 3, exact_match: 1, f1: 1, rouge_l: 1 });
    expect(res.metrics.bleu).toBeCloseTo(100, 9);
    expect(seen).toEqual([1, 2, 3]);
    // A wrong reference lowers every score.
    const engine2 = new Engine(model, { tokenizer: tok, kvCacheBytes: 1 << 20 });
    const wrong = await evaluateGenerate(engine2, tok, { ...task, docs: task.docs.map((d) => ({ ...d, references: ['the office of patents'] })) });
    engine2.close();
    expect(wrong.metrics.exact_match).toBe(0);
    expect(wrong.metrics.bleu).toBeLessThan(50);
    await expect(evaluateGenerate(engine2, tok, task, { maxTokens: 128 })).rejects.toMatchObject({ code: 'E_ARGUMENT' });
    model.dispose();
  }, 60_000);
});
