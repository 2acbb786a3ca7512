// patentgpt plan --config stage.json [...]: what each stage of a run needs, computed from its
// config rather than guessed: parameters (total and active), training memory term by term (the
// same estimate the trainer checks before it allocates), the KV cache of one sequence at the
// stage's context, FLOPs per token, the stage's tokens and FLOPs, and the time they take at a
// stated sustained FLOP rate on CPU and on GPU.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { PatentGPTError } from '../errors.js';
import { flopsPerToken, headDim, parameterCount, type ModelConfig } from '../models/config.js';
import { resolveModelConfig } from '../train/stages/common.js';
import { estimateTrainingMemory, type MemoryEstimate } from '../train/memory.js';

/** Default sustained rates: this package's f32 GEMM on 2 AVX-512 cores (README: 205 GFLOP/s at 1024^3), and an H100 at 40% of its 989 TFLOP/s dense bf16. */
export const DEFAULT_CPU_FLOPS = 200e9;
export const DEFAULT_GPU_FLOPS = 0.4 * 989e12;

export interface StagePlan {
  name: string;
  kind: string;
  seqLen: number;
  /** Sequences per optimizer step (batchSize x gradAccum; pairs count twice). */
  sequencesPerStep: number;
  steps: number;
  tokens: number;
  parameters: { total: number; active: number };
  /** Training memory of one micro-batch step (f32 weights, gradients, AdamW moments, activations, checkpoint copies). */
  trainingMemory: MemoryEstimate;
  /** Bytes of the K and V caches of one sequence at seqLen (bf16). */
  kvCacheBytes: number;
  /** Weights in bf16 for serving. */
  servingWeightBytes: number;
  /** Forward + backward FLOPs per trained token at seqLen (6N + 12 L T d). */
  trainingFlopsPerToken: number;
  /** FLOPs of the whole stage (forward-only passes of DPO's reference and PPO's rollouts included). */
  flops: number;
  seconds: { cpu: number; gpu: number };
}

type Json = Record<string, unknown>;

const num = (v: unknown, field: string, source: string): number => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new PatentGPTError('E_CONFIG', `${source}: ${field}: must be a positive number, got ${JSON.stringify(v)}`);
  return v;
};

/** The plan of one stage config (a parsed JSON object; `source` names it in errors, `baseDir` resolves a model path). */
export async function planStage(raw: Json, opts: { source?: string; baseDir?: string; cpuFlops?: number; gpuFlops?: number } = {}): Promise<StagePlan> {
  const source = opts.source ?? 'config';
  const kind = typeof raw.kind === 'string' ? raw.kind : 'pretrain';
  let modelSpec = raw.model as string | Json;
  if (typeof modelSpec === 'string' && opts.baseDir && (modelSpec.startsWith('.') || modelSpec.endsWith('.json'))) modelSpec = resolve(opts.baseDir, modelSpec);
  // A context extension (stage 2) changes RoPE, not the figures: they follow seqLen.
  const model: ModelConfig = await resolveModelConfig(modelSpec as Parameters<typeof resolveModelConfig>[0], source);
  const seqLen = num(raw.seqLen, 'seqLen', source);
  const batchSize = num(raw.batchSize, 'batchSize', source);
  const gradAccum = raw.gradAccum === undefined ? 1 : num(raw.gradAccum, 'gradAccum', source);
  const pairs = kind === 'reward' || kind === 'dpo' ? 2 : 1;
  const sequencesPerStep = batchSize * gradAccum * pairs;
  const tokensPerStep = sequencesPerStep * seqLen;
  const steps = raw.steps !== undefined ? num(raw.steps, 'steps', source) : Math.ceil(num(raw.tokenBudget, 'tokenBudget', source) / tokensPerStep);
  const tokens = steps * tokensPerStep;
  const f = flopsPerToken(model, seqLen);
  let flops = tokens * f.training;
  if (kind === 'dpo') flops += tokens * f.forward; // the reference model's log-probs, one forward pass
  if (kind === 'ppo') {
    // Per rollout token: the policy's generation, the reference's and the reward model's forward passes (value head on the policy).
    const ppo = (raw.ppo ?? {}) as Json;
    const epochs = typeof ppo.epochs === 'number' ? ppo.epochs : 4;
    flops = (tokens / epochs) * 3 * f.forward + tokens * f.training;
  }
  const count = parameterCount(model);
  const lora = raw.lora !== undefined;
  const trainingMemory = estimateTrainingMemory(model, { batchSize, seqLen, ...(lora ? { trainableParameters: 0 } : {}) });
  const kvCacheBytes = 2 * model.nLayers * model.nKvHeads * headDim(model) * seqLen * 2;
  const cpu = opts.cpuFlops ?? DEFAULT_CPU_FLOPS;
  const gpu = opts.gpuFlops ?? DEFAULT_GPU_FLOPS;
  return {
    name: typeof raw.name === 'string' ? raw.name : source, kind, seqLen, sequencesPerStep, steps, tokens,
    parameters: { total: count.total, active: count.active }, trainingMemory, kvCacheBytes, servingWeightBytes: 2 * count.total,
    trainingFlopsPerToken: f.training, flops, seconds: { cpu: flops / cpu, gpu: flops / gpu },
  };
}

const si = (x: number): string => {
  const u: [number, string][] = [[1e18, 'E'], [1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [v, s] of u) if (Math.abs(x) >= v) return `${(x / v).toFixed(x / v >= 100 ? 0 : 1)}${s}`;
  return x.toFixed(0);
};
const gib = (b: number): string => (b < 2 ** 30 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 2 ** 30).toFixed(b < 10 * 2 ** 30 ? 2 : 1)} GiB`);
export function duration(sec: number): string {
  if (sec < 1) return `${(sec * 1000).toFixed(sec < 0.01 ? 1 : 0)} ms`;
  if (sec < 120) return `${sec.toFixed(0)} s`;
  if (sec < 7200) return `${(sec / 60).toFixed(0)} min`;
  if (sec < 2 * 86400) return `${(sec / 3600).toFixed(1)} h`;
  if (sec < 2 * 365 * 86400) return `${(sec / 86400).toFixed(1)} days`;
  return `${(sec / (365 * 86400)).toFixed(1)} years`;
}

export function formatPlan(plans: StagePlan[], rates: { cpu: number; gpu: number }): string {
  const lines = [
    `| stage | kind | params (active) | context | tokens | train memory (weights+grads+AdamW+activations+ckpt) | KV cache / seq (bf16) | FLOPs/token | FLOPs | CPU at ${si(rates.cpu)}FLOP/s | one GPU at ${si(rates.gpu)}FLOP/s |`,
    '|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|',
  ];
  for (const p of plans) {
    const m = p.trainingMemory;
    lines.push(`| ${p.name} | ${p.kind} | ${si(p.parameters.total)} (${si(p.parameters.active)}) | ${p.seqLen} | ${si(p.tokens)} | ${gib(m.total)} = ${gib(m.weights)} + ${gib(m.gradients)} + ${gib(m.optimizer)} + ${gib(m.activations)} + ${gib(m.checkpoint)} | ${gib(p.kvCacheBytes)} | ${p.trainingFlopsPerToken.toExponential(2)} | ${p.flops.toExponential(2)} | ${duration(p.seconds.cpu)} | ${duration(p.seconds.gpu)} |`);
  }
  lines.push('', 'Memory: one training step of one micro-batch (batchSize x seqLen) on one device, f32 master weights, no activation checkpointing; data or tensor parallelism divides it. Time: the stage\'s FLOPs at the sustained rate; N GPUs take about 1/N of it.');
  return lines.join('\n');
}

const rate = (v: string): number => {
  const n = Number(v);
  if (!(n > 0 && Number.isFinite(n))) throw new InvalidArgumentError('expected a positive FLOP/s figure (e.g. 2e11)');
  return n;
};

export function planCommand(): Command {
  return new Command('plan')
    .description("what each stage needs, from its config: parameters, training memory term by term, KV cache, FLOPs, and time at a stated FLOP rate on CPU and GPU")
    .requiredOption('--config <file...>', 'stage configs (pretrain, sft, reward, ppo, dpo), e.g. examples/paper-stage1.json examples/paper-stage2.json')
    .option('--cpu-flops <x>', `sustained CPU FLOP/s (default ${DEFAULT_CPU_FLOPS.toExponential(1)}: this package's f32 GEMM on 2 AVX-512 cores)`, rate, DEFAULT_CPU_FLOPS)
    .option('--gpu-flops <x>', `sustained GPU FLOP/s (default ${DEFAULT_GPU_FLOPS.toExponential(2)}: 40% of an H100's 989 TFLOP/s bf16)`, rate, DEFAULT_GPU_FLOPS)
    .option('--json', 'print the plans as JSON')
    .action(async (o: { config: string[]; cpuFlops: number; gpuFlops: number; json?: boolean }) => {
      const plans: StagePlan[] = [];
      for (const file of o.config) {
        let raw: Json;
        try {
          raw = JSON.parse(readFileSync(file, 'utf8')) as Json;
        } catch (err) {
          throw new PatentGPTError('E_CONFIG', `${file}: cannot read the config as JSON (${(err as Error).message})`);
        }
        plans.push(await planStage(raw, { source: file, baseDir: dirname(resolve(file)), cpuFlops: o.cpuFlops, gpuFlops: o.gpuFlops }));
      }
      console.log(o.json ? JSON.stringify(plans, null, 2) : formatPlan(plans, { cpu: o.cpuFlops, gpu: o.gpuFlops }));
    });
}
