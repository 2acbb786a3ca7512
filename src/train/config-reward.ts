// The fields a stage of kind "reward" adds to the common ones (src/train/config.ts validates those
// and calls validateRewardFields): preference data, the chat template and LoRA as in SFT, and
// the reward objective (Bradley-Terry with an optional margin and TRL's reward centering).
// Errors name the file and the field, as every config error does.
import type { PreferenceDataConfig } from '../data/preference/config.js';
import type { SftChatTemplate, SftLora, StageBase } from './config.js';
import { Fields, relativeTo, validateChatTemplate, validateInit, validateLora, validatePreferenceData, type Json } from './config-fields.js';

/** The reward model's objective (TRL's RewardConfig under our names). */
export interface RewardObjective {
  /** Subtracted inside the sigmoid: -log sigmoid(r_c - r_r - margin) (Llama 2's margin loss). Default 0. */
  margin: number;
  /** coef * mean((r_c + r_r)^2) keeps rewards centred at 0 (TRL's center_rewards_coefficient). Default 0: off. */
  centerRewardsCoefficient: number;
  /** Std of the new score head when init is a causal LM (transformers' initializer_range). Default 0.02. */
  scoreInitStd: number;
}

/**
 * Reward model training on pairs of a prompt and a chosen and a rejected response: a decoder
 * with a scalar head (init: an SFT or pretraining model, or a reward model to go on from).
 */
export interface RewardConfig extends StageBase {
  kind: 'reward';
  init: string;
  data: PreferenceDataConfig;
  chatTemplate: SftChatTemplate;
  /** LoRA adapters on the decoder's Linears; the score head trains whole (PEFT's modules_to_save for SEQ_CLS). */
  lora?: SftLora;
  reward: RewardObjective;
}

/** The fields of kind "reward" besides the common ones. */
export const REWARD_KEYS = ['data', 'chatTemplate', 'lora', 'reward'] as const;

/** Validates what a reward config adds to `base`; `source` names the file, `baseDir` resolves paths. */
export function validateRewardFields(c: Json, base: StageBase, opts: { source?: string; baseDir?: string }): RewardConfig {
  const file = opts.source ?? 'config';
  const f = new Fields(file);
  const rel = relativeTo(opts.baseDir);
  const data = validatePreferenceData(f, file, c.data, base, opts.baseDir);
  const chatTemplate = validateChatTemplate(f, c.chatTemplate, rel);

  const r = f.object(c.reward ?? {}, 'reward');
  f.known(r, 'reward', ['margin', 'centerRewardsCoefficient', 'scoreInitStd']);
  const reward: RewardObjective = {
    margin: f.number(r.margin, 'reward.margin', () => true, 'a number', 0),
    centerRewardsCoefficient: f.number(r.centerRewardsCoefficient, 'reward.centerRewardsCoefficient', (x) => x >= 0, 'a number >= 0 (0: off; TRL recommends 0.01)', 0),
    scoreInitStd: f.number(r.scoreInitStd, 'reward.scoreInitStd', (x) => x > 0, 'a positive number', 0.02),
  };

  const init = validateInit(f, base, 'a reward model starts from trained weights (usually an SFT run)');
  return { ...base, kind: 'reward', init, data, chatTemplate, ...(c.lora !== undefined ? { lora: validateLora(f, c.lora, base.seed) } : {}), reward };
}
