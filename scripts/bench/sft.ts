// npm run bench -- sft [--quick] [--threads N] [--steps N] [--warmup N] [--gap-ms N] [--modes full,lora]
//                      [--model PRESET] [--tokenizer byte|llama2] [--seq T] [--batch B] [--lora-r R]
//
// Supervised fine-tuning throughput beside TRL's SFTTrainer in the same run, full fine-tuning and
// LoRA, on the same LLaMA shape, the same conversations and the same packing:
// - data: LLaMA-Factory's Alpaca demo (../shared/data or PATENTGPT_DATA; synthetic conversations
//   when absent) rendered once by our LLaMA-2 chat renderer; TRL gets those token ids and
//   completion masks (its completion-only loss then supervises exactly our assistant tokens);
// - packing: best-fit decreasing into rows of T tokens, conversations kept apart by position ids
//   (ours: packed variable-length attention; TRL: packing_strategy "bfd", padding-free);
// - a step: forward + loss over the assistant tokens, backward, clip 1.0, AdamW; for LoRA only the
//   adapters (r, alpha 2r, dropout 0.05 on q/k/v/o_proj) are trained on both sides.
// TRL runs in its own Python process per mode (scripts/sft-bench-trl.py) and steps in lockstep
// with ours: ours, a pause, TRL, a pause, ... so a noisy neighbour hits both alike; each side's
// figure is the median over its timed steps of the step's real (non-padding) tokens / time.
// Peak memory: ours is the native tensor high-water mark over the steps (weights, gradients,
// AdamW state, activations); TRL's is its process's max-RSS growth from before the model was
// built (allocator caches included: an upper bound). --quick: a ~5M-parameter byte-level model,
// T=256, 1 warm-up + 3 timed steps (a smoke run); the default: llama-110m with LLaMA-2's
// tokenizer, T=512.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { collateRows, llama2ChatRenderer, loadSftData, packExamples, type SftBatch, type SftExample, type SftRow } from '../../src/data/sft/index.js';
import { LlamaForCausalLM, parameterCount, preset, toHFConfig, validateConfig, type ModelConfig } from '../../src/models/index.js';
import { applyLora } from '../../src/nn/lora.js';
import { packageRoot } from '../../src/package.js';
import { memoryStats, resetPeakMemory, runtimeInfo, scope, setNumThreads, type Tensor } from '../../src/tensor/index.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../../src/tokenizer/index.js';
import { AdamW } from '../../src/train/optimizer.js';
import { llama2ByteRenderer } from '../../src/train/stages/sft.js';
import { findPython } from './_peers.js';
import { PythonPeer } from './_python-peer.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const quick = process.argv.includes('--quick');
const threads = Number(arg('threads', '2'));
const warmup = Number(arg('warmup', quick ? '1' : '2'));
const timedSteps = Number(arg('steps', quick ? '3' : '6'));
const gapMs = Number(arg('gap-ms', '200'));
const modes = arg('modes', 'full,lora').split(',') as ('full' | 'lora')[];
const modelName = arg('model', quick ? 'llama-5m' : 'llama-110m');
const tokName = arg('tokenizer', quick ? 'byte' : 'llama2');
const T = Number(arg('seq', quick ? '256' : '512'));
const B = Number(arg('batch', '4'));
const loraR = Number(arg('lora-r', '8'));
const LORA = { r: loraR, alpha: 2 * loraR, dropout: 0.05, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};

// ---- model, tokenizer, conversations ----

const tok = tokName === 'byte' ? new ByteTokenizer() : SentencePieceTokenizer.llama2();
const cfg: ModelConfig = validateConfig({ ...preset(modelName).config, vocabSize: tok.vocabSize, maxSeqLen: Math.max(T, preset(modelName).config.maxSeqLen) });
const renderer = tok instanceof ByteTokenizer ? llama2ByteRenderer(tok) : llama2ChatRenderer(tok);
const special = tok instanceof ByteTokenizer ? { bosId: tok.bosId, eosId: tok.eosId, padId: 258 } : { bosId: tok.bosId, eosId: tok.eosId, padId: 0 };

const DATA = process.env.PATENTGPT_DATA ?? resolve(packageRoot(), '../shared/data');
const alpaca = join(DATA, 'general-sft-pretrain-demo', 'alpaca_en_demo.json');
const rowsNeeded = (warmup + timedSteps) * B;
let examples: SftExample[];
let dataName: string;
const tmp = mkdtempSync(join(tmpdir(), 'pg-bench-sft-'));
if (existsSync(alpaca)) {
  const data = await loadSftData({ sources: [{ path: alpaca, weight: 1, layout: 'alpaca' }], renderer, seed: 0, valFraction: 0, shuffle: false, maxLength: T });
  examples = data.train;
  dataName = `alpaca_en_demo (${examples.length} conversations)`;
} else {
  // Synthetic conversations of words, so the bench runs without the shared data.
  const { writeFileSync } = await import('node:fs');
  const words = 'the claim method device patent invention system layer signal data process apparatus first second wherein comprising'.split(' ');
  const w = (n: number, s: number): string => Array.from({ length: n }, (_, i) => words[(i * 7 + s * 13) % words.length]).join(' ');
  const file = join(tmp, 'synthetic.jsonl');
  writeFileSync(file, Array.from({ length: 600 }, (_, i) => JSON.stringify({ instruction: w(8 + (i % 30), i), output: w(20 + ((i * 11) % 90), i + 1) })).join('\n'));
  const data = await loadSftData({ sources: [{ path: file, weight: 1, layout: 'alpaca' }], renderer, seed: 0, valFraction: 0, shuffle: false, maxLength: T });
  examples = data.train;
  dataName = `synthetic (${examples.length} conversations; ${alpaca} not found)`;
}
const rows: SftRow[] = packExamples(examples, { seqLen: T, mode: 'pack', strategy: 'bfd' });
if (rows.length < rowsNeeded) throw new Error(`sft bench: ${rows.length} packed rows, ${rowsNeeded} needed; lower --steps or --batch`);
const realTokens = (r: SftRow): number => r.examples.reduce((s, i) => s + examples[i]!.ids.length, 0);
const batches: { batch: SftBatch; tokens: number }[] = [];
for (let i = 0; i < rowsNeeded; i += B) {
  const picked = rows.slice(i, i + B);
  batches.push({ batch: collateRows(picked), tokens: picked.reduce((s, r) => s + realTokens(r), 0) });
}

// ---- TRL peer: one process per mode ----

interface PeerStep { time: number; tokens: number }

/** TRL's SFTTrainer on our token ids and masks (scripts/sft-bench-trl.py); answers its info, then one line per step, then its totals. */
async function startTrl(python: string, mode: 'full' | 'lora', steps: number): Promise<{ peer: PythonPeer; info: Record<string, unknown> }> {
  const peer = PythonPeer.start('TRL peer', python, [join(packageRoot(), 'scripts', 'sft-bench-trl.py'), String(threads)], threads, { WANDB_DISABLED: 'true' });
  const info = await peer.request({
    config: toHFConfig(cfg), ...special, T, B, mode, lora: LORA, steps, outDir: join(tmp, `trl-${mode}`),
    examples: examples.map((e) => ({ input_ids: Array.from(e.ids), completion_mask: Array.from(e.labels, (l) => (l === -100 ? 0 : 1)) })),
  });
  return { peer, info };
}

// ---- ours ----

class OursSft {
  readonly model: LlamaForCausalLM;
  readonly opt: AdamW;
  readonly trainable: number;

  constructor(mode: 'full' | 'lora') {
    this.model = new LlamaForCausalLM(cfg, { seed: 0 });
    const params: [string, Tensor][] = mode === 'lora' ? applyLora(this.model, { ...LORA, seed: 0 }) : this.model.namedParameters();
    this.trainable = params.reduce((s, [, t]) => s + t.size, 0);
    this.opt = new AdamW(params, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1.0 });
  }

  step(b: SftBatch): { time: number; loss: number } {
    const t0 = performance.now();
    const l = scope(() => this.model.loss(b));
    const loss = l.item();
    l.backward();
    l.dispose();
    this.opt.step(1e-4);
    this.opt.zeroGrad();
    return { time: (performance.now() - t0) / 1000, loss };
  }

  dispose(): void {
    this.opt.dispose();
    this.model.dispose();
  }
}

// ---- main ----

setNumThreads(threads);
const info = runtimeInfo();
const py = findPython(['torch', 'transformers', 'trl', 'peft', 'datasets']);
console.log(`ours: ${info.simd}, ${info.threads} threads; model ${modelName} (${(parameterCount(cfg).total / 1e6).toFixed(1)}M parameters, vocabulary ${cfg.vocabSize}, ${tokName} tokenizer), T=${T}, B=${B}`);
console.log(`data: ${dataName}; packed bfd into ${rows.length} rows; ${warmup} warm-up + ${timedSteps} timed steps per mode, ours and TRL taking turns`);
console.log(`TRL: ${py.python ? `${py.python}` : `not run (${py.why})`}\n`);

interface Row {
  mode: 'full' | 'lora';
  ours: { tokPerSec: number; peakMiB: number; trainable: number; loss: number };
  trl: { tokPerSec: number; rssMiB: number; trainable: number; loss: number | null; info: Record<string, unknown> } | null;
  trlError?: string;
}
const results: Row[] = [];
for (const mode of modes) {
  let peer: PythonPeer | null = null;
  let peerInfo: Record<string, unknown> = {};
  let trlError: string | undefined;
  if (py.python) {
    try {
      ({ peer, info: peerInfo } = await startTrl(py.python, mode, warmup + timedSteps));
    } catch (err) {
      trlError = (err as Error).message;
    }
  }
  resetPeakMemory();
  const ours = new OursSft(mode);
  const o: { tps: number; loss: number }[] = [];
  const t: number[] = [];
  for (let i = 0; i < warmup + timedSteps; i++) {
    const { batch, tokens } = batches[i]!;
    const s = ours.step(batch);
    if (i >= warmup) o.push({ tps: tokens / s.time, loss: s.loss });
    if (!peer) continue;
    await sleep(gapMs);
    try {
      const ps = await peer.request<PeerStep>('step');
      if (i >= warmup) t.push(ps.tokens / ps.time);
    } catch (err) {
      trlError = (err as Error).message;
      peer = null;
    }
    await sleep(gapMs);
  }
  const peakMiB = memoryStats().cpu.peakBytes / 2 ** 20;
  const trainable = ours.trainable;
  ours.dispose();
  const row: Row = { mode, ours: { tokPerSec: median(o.map((x) => x.tps)), peakMiB, trainable, loss: o.at(-1)!.loss }, trl: null };
  if (peer && t.length > 0) {
    const fin = await peer.next<{ rssGrowth: number; loss: number | null }>(); // after the last step: max-RSS growth, last logged loss
    row.trl = { tokPerSec: median(t), rssMiB: fin.rssGrowth / 2 ** 20, trainable: Number(peerInfo.trainable), loss: fin.loss, info: peerInfo };
  }
  if (trlError) row.trlError = trlError;
  results.push(row);
  process.stderr.write(`${mode}: ours ${row.ours.tokPerSec.toFixed(0)} tok/s, TRL ${row.trl ? row.trl.tokPerSec.toFixed(0) : 'n/a'} tok/s${trlError ? ` (TRL: ${trlError.split('\n')[0]})` : ''}\n`);
}
rmSync(tmp, { recursive: true, force: true });

const f = (x: number | null | undefined, w: number, d = 1): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d)).padStart(w);
console.log(`${'mode'.padEnd(5)} ${'trainable'.padStart(10)} ${'ours tok/s'.padStart(10)} ${'TRL tok/s'.padStart(10)} ${'ratio'.padStart(6)} ${'ours peak MiB'.padStart(13)} ${'TRL RSS+ MiB'.padStart(12)}`);
for (const r of results)
  console.log(`${r.mode.padEnd(5)} ${String(r.ours.trainable).padStart(10)} ${f(r.ours.tokPerSec, 10)} ${f(r.trl?.tokPerSec, 10)} ${f(r.trl ? r.ours.tokPerSec / r.trl.tokPerSec : null, 6, 2)} ${f(r.ours.peakMiB, 13)} ${f(r.trl?.rssMiB, 12)}`);
const full = results.find((r) => r.mode === 'full');
const lora = results.find((r) => r.mode === 'lora');
if (full && lora) {
  console.log(`LoRA / full peak memory: ours ${(lora.ours.peakMiB / full.ours.peakMiB).toFixed(2)}` +
    (full.trl && lora.trl ? `, TRL ${(lora.trl.rssMiB / full.trl.rssMiB).toFixed(2)} (RSS growth)` : ''));
}
console.log('ratio = ours / TRL tokens/s (real tokens, padding not counted; target >= 1.5); ours peak = native tensor high-water mark; TRL RSS+ = max RSS growth of its process (upper bound)');
console.log('\n' + JSON.stringify({
  bench: 'sft', quick, threads, simd: info.simd, model: modelName, params: parameterCount(cfg).total, vocab: cfg.vocabSize, tokenizer: tokName, T, B,
  warmup, steps: timedSteps, data: dataName, lora: LORA,
  results: results.map((r) => ({
    mode: r.mode,
    ours: { tokensPerSec: +r.ours.tokPerSec.toFixed(1), peakMiB: +r.ours.peakMiB.toFixed(1), trainable: r.ours.trainable, loss: +r.ours.loss.toFixed(4) },
    trl: r.trl ? { tokensPerSec: +r.trl.tokPerSec.toFixed(1), rssGrowthMiB: +r.trl.rssMiB.toFixed(1), trainable: r.trl.trainable, loss: r.trl.loss, torch: r.trl.info.torch, trl: r.trl.info.trl } : null,
    ratio: r.trl ? +(r.ours.tokPerSec / r.trl.tokPerSec).toFixed(3) : null,
    ...(r.trlError ? { trlError: r.trlError.slice(0, 500) } : {}),
  })),
}));
