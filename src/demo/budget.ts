// How long each demo stage runs: optimizer steps from the time budget. The defaults were sized on
// 2 busy cores to fit 15 minutes end to end; `--minutes N` scales every step count by N/15
// (at least a few steps each), and the hidden smoke budget (tests) runs a handful of steps on a
// smaller model.

export interface DemoBudget {
  minutes: number;
  smoke: boolean;
  steps: { stage1: number; moe: number; stage2: number; sft: number; reward: number; ppo: number; dpo: number };
  /** Model shape of every stage (the vocabulary comes from the tokenizer). */
  model: { dim: number; nLayers: number; nHeads: number; nKvHeads: number; ffnDim: number };
  /** Tokenizer sizes: the general vocabulary, the domain one, and the merged size. */
  vocab: { base: number; domain: number; merged: number };
  seqLen: { stage1: number; stage2: number; sft: number };
  batch: { stage1: number; stage2: number; sft: number; reward: number };
  ppo: { rolloutBatch: number; maxNewTokens: number };
  /** Multiple-choice questions and perplexity documents per eval (null: all). */
  evalLimit: number | null;
  chatTokens: number;
}

export const DEFAULT_MINUTES = 15;

const BASE_STEPS = { stage1: 220, moe: 100, stage2: 40, sft: 150, reward: 25, ppo: 24, dpo: 25 };

export function demoBudget(opts: { minutes?: number; smoke?: boolean } = {}): DemoBudget {
  const minutes = opts.minutes ?? DEFAULT_MINUTES;
  if (opts.smoke) {
    return {
      minutes, smoke: true,
      steps: { stage1: 6, moe: 4, stage2: 3, sft: 4, reward: 3, ppo: 2, dpo: 3 },
      model: { dim: 64, nLayers: 2, nHeads: 2, nKvHeads: 1, ffnDim: 128 },
      vocab: { base: 512, domain: 640, merged: 640 },
      seqLen: { stage1: 128, stage2: 256, sft: 128 },
      batch: { stage1: 4, stage2: 2, sft: 4, reward: 4 },
      ppo: { rolloutBatch: 4, maxNewTokens: 12 },
      evalLimit: 8,
      chatTokens: 16,
    };
  }
  const scale = minutes / DEFAULT_MINUTES;
  const steps = Object.fromEntries(Object.entries(BASE_STEPS).map(([k, v]) => [k, Math.max(k === 'ppo' ? 2 : 5, Math.round(v * scale))])) as DemoBudget['steps'];
  return {
    minutes, smoke: false, steps,
    model: { dim: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, ffnDim: 352 },
    vocab: { base: 640, domain: 1152, merged: 1152 },
    seqLen: { stage1: 256, stage2: 1024, sft: 256 },
    batch: { stage1: 8, stage2: 2, sft: 8, reward: 8 },
    ppo: { rolloutBatch: 16, maxNewTokens: 48 },
    evalLimit: null,
    chatTokens: 96,
  };
}
