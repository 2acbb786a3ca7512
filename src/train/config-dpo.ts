// The fields a stage of kind "dpo" adds to the common ones (src/train/config.ts validates those
// and calls validateDpoFields): preference data, the chat template and LoRA as in SFT, and the
// DPO objective. Errors name the file and the field, as every config error does.
import type { PreferenceDataConfig } from '../data/preference/config.js';
import type { SftChatTemplate, SftLora, StageBase } from './config.js';
import { Fields, relativeTo, validateChatTemplate, validateInit, validateLora, validatePreferenceData, type Json } from './config-fields.js';

export const DPO_LOSSES = ['sigmoid', 'ipo'] as const;
export type DpoLoss = (typeof DPO_LOSSES)[number];
export const DPO_REFERENCES = ['precomputed', 'adapters-off'] as const;
export type DpoReference = (typeof DPO_REFERENCES)[number];

/** The DPO objective (TRL's DPOConfig under our names). */
export interface DpoObjective {
  /** beta: how far the policy may move from the reference (IPO's tau). Default 0.1. */
  beta: number;
  /**
   * "sigmoid" (DPO: -log sigmoid(beta * margin), with labelSmoothing the conservative cDPO) or
   * "ipo" ((margin / tokens - 1 / (2 beta))^2 on token-averaged log-ratios, as TRL). Default sigmoid.
   */
  loss: DpoLoss;
  /** cDPO: the probability that a label is flipped, in [0, 0.5); sigmoid only. Default 0. */
  labelSmoothing: number;
  /**
   * Where the reference log-probs come from: "precomputed" (one pass of the initial model over
   * every pair before training; no second model in memory) or "adapters-off" (LoRA only: the
   * frozen base with the adapters bypassed, each step). Default: adapters-off under LoRA, else precomputed.
   */
  reference: DpoReference;
}

/** Direct preference optimisation on pairs of a prompt and a chosen and a rejected response. */
export interface DpoConfig extends StageBase {
  kind: 'dpo';
  init: string;
  data: PreferenceDataConfig;
  chatTemplate: SftChatTemplate;
  lora?: SftLora;
  dpo: DpoObjective;
}

/** The fields of kind "dpo" besides the common ones. */
export const DPO_KEYS = ['data', 'chatTemplate', 'lora', 'dpo'] as const;

/** Validates what a dpo config adds to `base`; `source` names the file, `baseDir` resolves paths. */
export function validateDpoFields(c: Json, base: StageBase, opts: { source?: string; baseDir?: string }): DpoConfig {
  const file = opts.source ?? 'config';
  const f = new Fields(file);
  const rel = relativeTo(opts.baseDir);
  const data = validatePreferenceData(f, file, c.data, base, opts.baseDir);
  const chatTemplate = validateChatTemplate(f, c.chatTemplate, rel);
  const lora = c.lora !== undefined ? validateLora(f, c.lora, base.seed) : undefined;

  const d = f.object(c.dpo ?? {}, 'dpo');
  f.known(d, 'dpo', ['beta', 'loss', 'labelSmoothing', 'reference']);
  const loss = (d.loss ?? 'sigmoid') as DpoLoss;
  if (!DPO_LOSSES.includes(loss)) f.fail('dpo.loss', `must be ${DPO_LOSSES.map((x) => `"${x}"`).join(' or ')}, got ${JSON.stringify(d.loss)}`);
  const labelSmoothing = f.number(d.labelSmoothing, 'dpo.labelSmoothing', (x) => x >= 0 && x < 0.5, 'a number in [0, 0.5)', 0);
  if (labelSmoothing > 0 && loss !== 'sigmoid') f.fail('dpo.labelSmoothing', `applies to the "sigmoid" loss (cDPO), not "${loss}"`);
  const reference = (d.reference ?? (lora ? 'adapters-off' : 'precomputed')) as DpoReference;
  if (!DPO_REFERENCES.includes(reference)) f.fail('dpo.reference', `must be ${DPO_REFERENCES.map((x) => `"${x}"`).join(' or ')}, got ${JSON.stringify(d.reference)}`);
  if (reference === 'adapters-off' && !lora) f.fail('dpo.reference', '"adapters-off" needs lora (the frozen base is the reference); use "precomputed" for full fine-tuning');
  const dpo: DpoObjective = { beta: f.number(d.beta, 'dpo.beta', (x) => x > 0, 'a number > 0', 0.1), loss, labelSmoothing, reference };

  const init = validateInit(f, base, 'DPO starts from trained weights (usually an SFT run)');
  return { ...base, kind: 'dpo', init, data, chatTemplate, ...(lora ? { lora } : {}), dpo };
}
