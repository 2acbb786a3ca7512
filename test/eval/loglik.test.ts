// The log-likelihood scorer against a plain forward, batched against one-by-one, and a tiny model
// trained to prefer known answers scored as expected (acc, per category, multi-answer sets).
import { describe, expect, it } from 'vitest';
import {
  BYTE_VOCAB_SIZE, ByteTokenizer, LlamaForCausalLM, Scorer, SentencePieceTokenizer, encodePair, evaluateMc, noGrad, preset,
  validateConfig, buildContext, type McDoc, type McTask,
} from '../../src/index.js';
import { AdamW } from '../../src/train/optimizer.js';
import { expectClose } from '../helpers.js';

const cfg = validateConfig({ ...preset('tiny').config, vocabSize: BYTE_VOCAB_SIZE, dim: 32, nHeads: 4, nKvHeads: 2, ffnDim: 64, nLayers: 2, maxSeqLen: 256 });
const tok = new ByteTokenizer();

/** Sum of log softmax(logits)[next] over the continuation, from one forward of context + continuation (f64 log-softmax). */
function plainLoglik(model: LlamaForCausalLM, ctx: Int32Array, cont: Int32Array): number {
  const all = Int32Array.from([...ctx, ...cont]);
  return noGrad(() => {
    const logits = model.forward({ tokens: all });
    const V = logits.shape[1]!;
    const x = logits.toArray() as Float32Array;
    logits.dispose();
    let s = 0;
    for (let j = 0; j < cont.length; j++) {
      const p = ctx.length - 1 + j;
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, x[p * V + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(x[p * V + v]! - mx);
      s += x[p * V + cont[j]!]! - mx - Math.log(z);
    }
    return s;
  });
}

describe('encodePair (lm-eval _encode_pair)', () => {
  it('moves the context trailing whitespace into the continuation and splits encode(ctx + cont)', () => {
    const a = encodePair(tok, 'Question: x\nAnswer: ', 'B');
    const b = encodePair(tok, 'Question: x\nAnswer:', ' B');
    expect(Array.from(a.context)).toEqual(Array.from(b.context));
    expect(Array.from(a.continuation)).toEqual(Array.from(tok.encode(' B')));
    expect(Array.from(encodePair(tok, '', 'hi').context)).toEqual([tok.bosId]);
  });
  it('splits at the context token length under a merging tokenizer (llama2)', () => {
    const sp = SentencePieceTokenizer.llama2();
    const { context, continuation } = encodePair(sp, 'The answer is', ' Paris');
    expect(Array.from(context)).toEqual(Array.from(sp.encode('The answer is')));
    expect(Array.from([...context, ...continuation])).toEqual(Array.from(sp.encode('The answer is Paris')));
  });
});

describe('Scorer', () => {
  const model = new LlamaForCausalLM(cfg, { seed: 3 });
  const reqs = [
    { context: 'Which law? A. patent B. trademark\nAnswer:', continuation: ' A' },
    { context: 'Which law? A. patent B. trademark\nAnswer:', continuation: ' B' },
    { context: 'Which law? A. patent B. trademark\nAnswer:', continuation: ' AB' },
    { context: 'Claim 1. A device comprising', continuation: ' a housing and a lid' },
    { context: 'x', continuation: 'yz' },
    { context: '', continuation: 'empty context' },
    { context: 'long '.repeat(60), continuation: ' tail' }, // 305 tokens: left-truncated to maxSeqLen + 1
  ];

  it("each option's log-likelihood equals the sum of token log-probs from a plain forward", () => {
    const res = new Scorer(model, tok).loglikelihood(reqs);
    reqs.forEach((r, i) => {
      const p = encodePair(tok, r.context, r.continuation, true);
      let ctx = p.context;
      const over = ctx.length + p.continuation.length - (cfg.maxSeqLen + 1);
      if (over > 0) ctx = ctx.slice(over);
      expect(res[i]!.nTokens).toBe(p.continuation.length);
      expectClose([res[i]!.logprob], [plainLoglik(model, ctx, p.continuation)], 1e-4, 1e-5, `request ${i}`);
    });
  });

  it('batched scoring (shared contexts, and packed rows) equals one-by-one scoring', () => {
    const one = new Scorer(model, tok, { batched: false });
    const a = one.loglikelihood(reqs).map((r) => r.logprob);
    expect(one.forwards).toBe(reqs.length);
    for (const opts of [{ maxBatchTokens: 1024 }, { maxBatchTokens: 16 }, { sharedContexts: false }, { sharedContexts: false, maxBatchTokens: 1 }]) {
      const many = new Scorer(model, tok, opts);
      const b = many.loglikelihood(reqs).map((r) => r.logprob);
      expectClose(b, a, 1e-4, 1e-5, `batched ${JSON.stringify(opts)} vs one-by-one`);
      expect(many.tokensComputed).toBeLessThan(one.tokensComputed);
      many.close();
    }
  });

  it('a context whose trie does not fit the cache is scored as packed rows, the same', () => {
    // The smallest cache: maxBatchTokens + maxSeqLen + 1 = 258 tokens; 200 context tokens + 4 * 39 trie rows do not fit.
    const big = ['alpha', 'beta', 'gamma', 'delta'].map((w) => ({ context: 'x'.repeat(200), continuation: ` ${w} `.repeat(10).slice(0, 40) }));
    const a = new Scorer(model, tok, { batched: false }).loglikelihood(big).map((r) => r.logprob);
    const small = new Scorer(model, tok, { maxBatchTokens: 1, kvCacheBytes: 1 });
    expectClose(small.loglikelihood(big).map((r) => r.logprob), a, 1e-4, 1e-5, 'fallback');
    expect(small.forwards).toBe(4); // the packed path: one row per option
    small.close();
  });

  it('computes a context once for all its continuations', () => {
    const ctxLen = encodePair(tok, reqs[0]!.context, ' A', true).context.length;
    // " A", " B", " AB": the context, then the trie rows " " and " A".
    const shared = new Scorer(model, tok);
    const seen: number[] = [];
    shared.loglikelihood(reqs.slice(0, 3), (done) => seen.push(done));
    expect(shared.tokensComputed).toBe(ctxLen + 2);
    expect(seen[seen.length - 1]).toBe(3);
    shared.close();
    // Packed rows: " A" and " B" are one token after the context: read from the " AB" row, no row of their own.
    const packed = new Scorer(model, tok, { sharedContexts: false, maxBatchTokens: 1 });
    packed.loglikelihood(reqs.slice(0, 3));
    expect(packed.forwards).toBe(1);
    expect(packed.tokensComputed).toBe(ctxLen + 2);
  });
});

describe('a tiny model trained to prefer known answers', () => {
  const docs: McDoc[] = [
    { id: 'q1', question: 'Who owns a service invention?', choices: ['the employee', 'the employer', 'the state'], answer: [1], multi: false, category: 'ownership' },
    { id: 'q2', question: 'Term of an invention patent?', choices: ['10 years', '20 years', '50 years'], answer: [1], multi: false, category: 'term' },
    { id: 'q3', question: 'Term of a utility model?', choices: ['10 years', '15 years', '20 years'], answer: [0], multi: false, category: 'term' },
    // Trained on "C", the file says "A": must count as wrong.
    { id: 'q4', question: 'Who examines applications?', choices: ['courts', 'police', 'the office'], answer: [0], multi: false, category: 'ownership' },
    { id: 'q5', question: 'Which are IP rights?', choices: ['patent', 'lease', 'trademark', 'loan'], answer: [0, 2], multi: true, category: 'rights' },
  ];
  const trainedOn = ['B', 'B', 'A', 'C', 'AC'];
  const task: McTask = { name: 'toy', docs, skipped: [], files: [] };

  it('scores acc, per category and multi-answer sets as trained', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 11 });
    const texts = docs.map((_, i) => tok.encode(buildContext(docs, i, { shots: 0, seed: 0, style: 'letters' }) + ' ' + trainedOn[i] + '\n', { bos: true }));
    const N = texts.reduce((s, t) => s + t.length, 0);
    const tokens = new Int32Array(N);
    const targets = new Int32Array(N).fill(-100);
    const cu = [0];
    let off = 0;
    for (const t of texts) {
      tokens.set(t, off);
      for (let j = 0; j + 1 < t.length; j++) targets[off + j] = t[j + 1]!;
      off += t.length;
      cu.push(off);
    }
    const opt = new AdamW(model.namedParameters(), { weightDecay: 0, maxGradNorm: 1 });
    for (let step = 0; step < 150; step++) {
      const loss = model.loss({ tokens, targets, cuSeqlens: cu });
      loss.backward();
      loss.dispose();
      opt.step(3e-3);
      opt.zeroGrad();
    }
    opt.dispose();
    const res = evaluateMc(new Scorer(model, tok), task, { partialCredit: 0.5 });
    expect(res.docs.map((d) => d.pred.map((k) => 'ABCD'[k]).join(''))).toEqual(trainedOn);
    expect(res.docs.map((d) => d.acc)).toEqual([1, 1, 1, 0, 1]);
    expect(res.metrics.acc).toBeCloseTo(0.8, 12);
    expect(res.byCategory.ownership!.acc).toBe(0.5);
    expect(res.byCategory.term!.acc).toBe(1);
    expect(res.byCategory.rights!.n).toBe(1);
    expect(res.docs[4]!.candidates).toHaveLength(15);
  }, 60_000);
});
