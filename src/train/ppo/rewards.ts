// Rewards for PPO written in TypeScript: a function from a prompt and its completion (text) to a
// number, sync or async. The package ships a rule-based one for patents (claimFormatReward); a
// config names it as "claim-format", or names a module that exports one:
//   "reward": { "function": "claim-format" }
//   "reward": { "module": "./my-reward.js", "export": "score" }     (default export: "default")
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PatentGPTError } from '../../errors.js';

/** A reward: the score of one completion of one prompt (higher is better); finite. */
export type RewardFunction = (prompt: string, completion: string) => number | Promise<number>;

/**
 * A rule-based check of the form of a patent claim, in [0, 1]: a quarter each for opening as a
 * first claim ("1. A ...", "1. An ...", "1. The ..."), holding the transition "comprising",
 * ending with a period, and the share of the text made of letters, digits, spaces and claim
 * punctuation (dense, so a small model has a slope to climb). The last two are scaled by
 * min(1, words / 6): a stub such as "1. 2." earns little (without it, PPO finds that stub).
 */
export function claimFormatReward(_prompt: string, completion: string): number {
  const text = completion.trim();
  if (text.length === 0) return 0;
  const body = Math.min(1, text.split(/\s+/).length / 6);
  let score = 0;
  if (/^1\.\s+(A|An|The)\s/.test(text)) score += 0.25;
  if (/\bcomprising\b/i.test(text)) score += 0.25;
  if (text.endsWith('.')) score += 0.25 * body;
  let clean = 0;
  const chars = [...text];
  for (const ch of chars) if (/[\p{L}\p{N} ,;:.()-]/u.test(ch)) clean++;
  return score + (0.25 * body * clean) / chars.length;
}

/** The rewards a config may name without a module. */
export const BUILTIN_REWARDS: Readonly<Record<string, RewardFunction>> = { 'claim-format': claimFormatReward };

/** How a config names its reward function. */
export type RewardFunctionSpec = { function: string } | { module: string; export?: string };

/** The function a spec names: a built-in, or an export of a module (a path, resolved from the working directory). */
export async function loadRewardFunction(spec: RewardFunctionSpec, source = 'config'): Promise<RewardFunction> {
  if ('function' in spec) {
    const f = BUILTIN_REWARDS[spec.function];
    if (!f) throw new PatentGPTError('E_CONFIG', `${source}: reward.function: "${spec.function}" is not a built-in reward (built in: ${Object.keys(BUILTIN_REWARDS).join(', ')}); name your own with reward.module`);
    return f;
  }
  const name = spec.export ?? 'default';
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path.resolve(spec.module)).href)) as Record<string, unknown>;
  } catch (err) {
    throw new PatentGPTError('E_CONFIG', `${source}: reward.module: cannot import ${spec.module} (${(err as Error).message})`);
  }
  const f = mod[name];
  if (typeof f !== 'function')
    throw new PatentGPTError('E_CONFIG', `${source}: reward.module: ${spec.module} has no function export "${name}" (exports: ${Object.keys(mod).join(', ') || 'none'}); set reward.export`);
  return f as RewardFunction;
}

/** Scores of completions by `fn`, checked finite (a NaN reward would poison every advantage). */
export async function scoreAll(fn: RewardFunction, prompts: readonly string[], completions: readonly string[]): Promise<Float64Array> {
  const out = new Float64Array(completions.length);
  for (let i = 0; i < completions.length; i++) {
    const s = await fn(prompts[i]!, completions[i]!);
    if (typeof s !== 'number' || !Number.isFinite(s))
      throw new PatentGPTError('E_NONFINITE', `reward: the reward function returned ${String(s)} for completion ${i} (${JSON.stringify(completions[i]!.slice(0, 60))}); it must return a finite number`);
    out[i] = s;
  }
  return out;
}
