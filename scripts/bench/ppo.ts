// npm run bench -- ppo [--quick] [--threads N] [--iters N] [--batch B] [--len L] [--epochs E] [--minibatch M] [--model PRESET]
//
// PPO beside TRL's PPO in the same run, on the same model folder (byte-level LLaMA), the same
// prompt ids (the claim prompts of examples/tiny-ppo-prompts.jsonl, rendered once by our LLaMA-2
// renderer), the same batch (B prompts a rollout), response length L, epochs and minibatches,
// and the same rule-based reward (claim-format):
// - ours: the ppo stage itself (patentgpt ppo): rollouts by our paged engine with continuous
//   batching on the live policy (ppo.kvCacheMiB's default 64 MiB: the whole rollout batch at
//   once), the old log-probs and values taken from the generation (each sampled token's logits
//   and final-normed hidden row, as TRL takes its old log-probs from generate's scores), the
//   reference's from its own engine (Engine.score over prompt ++ response; the frozen reference's
//   prompt KV blocks pinned once at the start, ppo.referenceKvCacheMiB's default 64 MiB holds all
//   128 prompts: a rollout computes each response and its prompt's last partial block; the pinning,
//   about 1.2 s CPU once at one thread, is stage setup, outside the per-iteration figures), the
//   minibatch steps through the shared training loop; the value head shares the policy's trunk
//   and the reference is a frozen copy (policy, ref in memory);
// - TRL: scripts/ppo-bench-trl.py, PPOTrainer.train's loop of trl 0.x (trl 1.13 has no
//   PPOTrainer): HF generate with exactly L new tokens, policy + reference + value model (a
//   LlamaForSequenceClassification: TRL's four models less the reward model), the same math.
//   The old log-probs come from generate's scores as TRL takes them (output_scores, the
//   processed logits divided once more by temperature + 1e-7, log_softmax, gather): no policy
//   forward for them; the reference and the value model each take a forward.
// Figures per iteration after the first (warm-up): rollout tokens/s (generated tokens over the
// generation's time), the update time (scoring, forwards, epochs x minibatches), the end-to-end
// iteration time; peak memory: ours the native high-water mark over the run (weights, KV cache,
// optimizer state, activations), TRL's its process's max-RSS growth from before the models were
// built (an upper bound: allocator caches included). Both sides generate and train on exactly L
// tokens a response: TRL's script has no stop token (EOS is an ordinary token, as PPOTrainer
// with stop_token None), ours runs with ppo.stopAtEos false (by default it would end responses
// at EOS, a quarter of the tokens fewer here, and so less work than TRL).
// Beside the wall times, each side's CPU time per iteration (all its threads): on a shared machine
// the wall times of both sides stretch unevenly (a busy core stalls torch's OpenMP team more than
// it stalls us), the CPU times far less; with --threads 1 nothing spins, and their ratio measures
// the work each side does.
// --quick: the tiny demo's model (0.8M parameters), B=16, L=32, 3 iterations: a smoke run.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlamaForCausalLM, parameterCount, preset, savePretrained, validateConfig, type ModelConfig } from '../../src/models/index.js';
import { packageRoot } from '../../src/package.js';
import { memoryStats, resetPeakMemory, runtimeInfo, setNumThreads } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { validateStageConfig, type PpoConfig } from '../../src/train/config.js';
import { ppo } from '../../src/train/stages/ppo.js';
import { llama2ByteRenderer } from '../../src/train/stages/sft.js';
import { findPython } from './_peers.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const quick = process.argv.includes('--quick');
const threads = Number(arg('threads', '2'));
const iters = Number(arg('iters', quick ? '3' : '5'));
const B = Number(arg('batch', quick ? '16' : '32'));
const L = Number(arg('len', quick ? '32' : '64'));
const epochs = Number(arg('epochs', '2'));
const minibatch = Number(arg('minibatch', quick ? '8' : '16'));
const modelName = arg('model', quick ? 'tiny' : 'llama-5m');
const TEMP = 1;
const LR = 1e-4;
setNumThreads(threads);

const TINY: Partial<ModelConfig> = { vocabSize: 259, dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, ffnDim: 352, ropeTheta: 10000, maxSeqLen: 256 };
const tok = new ByteTokenizer();
const cfg = validateConfig(modelName === 'tiny' ? TINY : { ...preset(modelName).config, vocabSize: tok.vocabSize, maxSeqLen: 256 });
const tmp = mkdtempSync(join(tmpdir(), 'pg-bench-ppo-'));
const modelDir = join(tmp, 'model');
{
  const m = new LlamaForCausalLM(cfg, { seed: 1 });
  await savePretrained(m, modelDir, { tokenizer: tok });
  m.dispose();
}
const promptFile = join(packageRoot(), 'examples/tiny-ppo-prompts.jsonl');
const texts = readFileSync(promptFile, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { prompt: string }).prompt);
const renderer = llama2ByteRenderer(tok);
const promptIds = texts.map((t) => {
  const r = renderer.render([{ role: 'user', content: t }, { role: 'assistant', content: 'x' }]);
  return Array.from(r.ids.slice(0, r.assistantMask.indexOf(1)));
});

console.log(`PPO, ${modelName} (${(parameterCount(cfg).total / 1e6).toFixed(2)}M parameters, byte vocabulary), B=${B} prompts a rollout, L=${L} new tokens, ` +
  `${epochs} epochs of minibatches of ${minibatch}, ${iters} iterations (the first is warm-up), ${threads} threads (${runtimeInfo().simd})`);

// ---- ours: the stage itself
const stepsPerIter = epochs * (B / minibatch);
const ours = validateStageConfig({
  kind: 'ppo', name: 'bench', runDir: join(tmp, 'run'), model: modelDir, tokenizer: 'byte', prompts: { path: promptFile }, reward: { function: 'claim-format' },
  seqLen: 256, batchSize: minibatch, steps: iters * stepsPerIter, optimizer: { lr: LR, weightDecay: 0, eps: 1e-5 }, schedule: { kind: 'constant' },
  evalEvery: 0, checkpointEvery: 0, keepCheckpoints: 1, threads, memoryCheck: false,
  ppo: { rolloutBatch: B, epochs, maxNewTokens: L, temperature: TEMP, klCoef: 0.05, stopAtEos: false },
}) as PpoConfig;
const stamps: { step: number; t: number; cpu: number; rate: number; len: number }[] = [];
const cpuSec = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};
resetPeakMemory();
await ppo(ours, {
  progress: null,
  onMetrics: (m) => {
    if (typeof m.loss === 'number') stamps.push({ step: m.step, t: performance.now(), cpu: cpuSec(), rate: m.rolloutTokensPerSec as number, len: m.responseLength as number });
  },
});
const oursPeak = memoryStats().cpu.peakBytes;
const ourIters: { rollout: number; update: number; total: number; cpu: number; tokens: number }[] = [];
for (let k = 1; k < iters; k++) {
  const end = stamps[(k + 1) * stepsPerIter - 1]!, start = stamps[k * stepsPerIter - 1]!;
  const first = stamps[k * stepsPerIter]!;
  const tokens = first.len * B;
  const rollout = tokens / first.rate;
  const total = (end.t - start.t) / 1000;
  ourIters.push({ rollout, update: total - rollout, total, cpu: end.cpu - start.cpu, tokens });
}

// ---- TRL
let trl: { iters: { rollout: number; update: number; cpu: number; tokens: number }[]; peakBytes: number; torch: string } | null = null;
const { python, why } = findPython(['torch', 'transformers', 'trl']);
if (python) {
  const out = execFileSync(python, [join(packageRoot(), 'scripts/ppo-bench-trl.py')], {
    input: JSON.stringify({ model_dir: modelDir, prompts: promptIds, B, L, epochs, minibatch, iters, temperature: TEMP, threads, lr: LR }) + '\n',
    encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['pipe', 'pipe', 'ignore'],
  });
  trl = JSON.parse(out.trim().split('\n').pop()!);
} else console.log(`TRL side skipped: ${why}`);
rmSync(tmp, { recursive: true, force: true });

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const o = {
  rolloutTokPerSec: median(ourIters.map((x) => x.tokens / x.rollout)), updateSec: median(ourIters.map((x) => x.update)),
  iterSec: median(ourIters.map((x) => x.total)), cpuSec: median(ourIters.map((x) => x.cpu)), tokens: median(ourIters.map((x) => x.tokens)), peakMiB: oursPeak / 2 ** 20,
};
const t = trl && (() => {
  const it = trl.iters.slice(1);
  return {
    rolloutTokPerSec: median(it.map((x) => x.tokens / x.rollout)), updateSec: median(it.map((x) => x.update)),
    iterSec: median(it.map((x) => x.rollout + x.update)), cpuSec: median(it.map((x) => x.cpu)), tokens: median(it.map((x) => x.tokens)), peakMiB: trl.peakBytes / 2 ** 20,
  };
})();
const row = (name: string, a: number, b: number | undefined, unit: string, higherBetter: boolean): string =>
  `${name.padEnd(28)} ${a.toFixed(2).padStart(10)} ${b === undefined ? '         -' : b.toFixed(2).padStart(10)} ${unit.padEnd(9)} ` +
  (b === undefined ? '' : `x${(higherBetter ? a / b : b / a).toFixed(2)}`);
console.log(`${''.padEnd(28)} ${'ours'.padStart(10)} ${'TRL'.padStart(10)} ${'unit'.padEnd(9)} ours vs TRL`);
console.log(row('rollout tokens/s', o.rolloutTokPerSec, t?.rolloutTokPerSec, 'tok/s', true));
console.log(row('update (score+fwd+epochs)', o.updateSec, t?.updateSec, 's/iter', false));
console.log(row('end-to-end iteration', o.iterSec, t?.iterSec, 's/iter', false));
console.log(row('CPU time per iteration', o.cpuSec, t?.cpuSec, 's/iter', false));
console.log(row('generated tokens / iter', o.tokens, t?.tokens, 'tokens', true));
console.log(row('peak memory', o.peakMiB, t?.peakMiB, 'MiB', false));
console.log(JSON.stringify({ bench: 'ppo', quick, model: modelName, B, L, epochs, minibatch, iters, threads, ours: o, trl: t, trlTorch: trl?.torch ?? null,
  speedup: t ? { rollout: o.rolloutTokPerSec / t.rolloutTokPerSec, update: t.updateSec / o.updateSec, endToEnd: t.iterSec / o.iterSec, cpu: t.cpuSec / o.cpuSec } : null }));
