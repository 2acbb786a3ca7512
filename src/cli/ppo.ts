// patentgpt ppo: RLHF with PPO from a stage config of kind "ppo" (rollouts by the package's own
// engine, a reward function or a frozen reward model, KL to the frozen reference).
import { ppo } from '../train/stages/ppo.js';
import { commandRunOptions, finishStageCommand, loadCommandConfig, stageCommand, type StageFlags } from './stage-run.js';

export function ppoCommand() {
  return stageCommand('ppo', 'run (or resume) PPO: rollouts of the policy scored by a reward, KL-penalised against the frozen reference',
    'PPO stage config JSON, "kind": "ppo" (see examples/tiny-ppo.json)')
    .addHelpText('after', [
      '',
      'init names the policy\'s starting weights (an SFT run); the same weights, frozen, are the reference (with "lora": the base',
      'under the adapters, so one copy of the model is in memory). The reward is reward.function ("claim-format", built in),',
      'reward.module (a .js/.mjs file exporting (prompt, completion) => number | Promise<number>) or reward.model (a reward model folder).',
      'metrics.jsonl holds per step: reward, kl, klCoef, entropy, clipFraction, valueLoss, approxKl, responseLength, eosRate.',
      'Running the same command again resumes from the newest complete checkpoint (bit-exact, rollout buffer included);',
      'Ctrl-C saves one and exits (code 130); a run that diverges exits with code 3.',
      '',
      'Example:',
      '  patentgpt sft --config examples/tiny-sft.json',
      '  patentgpt ppo --config examples/tiny-ppo.json',
    ].join('\n'))
    .action(async (opts: StageFlags) => {
      const cfg = await loadCommandConfig('ppo', opts);
      finishStageCommand('ppo', opts, await ppo(cfg, commandRunOptions(opts)));
    });
}
