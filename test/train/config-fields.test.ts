// The chat stages (sft, dpo, reward, ppo) validate their shared sections in one place
// (src/train/config-fields.ts, src/data/config-fields.ts): the same input is refused with the
// same field named whatever the kind, and what one kind checked the others now check too.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { validateStageConfig } from '../../src/train/config.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-cfg-fields-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const data = path.join(dir, 'x.jsonl');
fs.writeFileSync(data, '{}\n');

const KINDS = ['sft', 'dpo', 'reward', 'ppo'] as const;
function config(kind: (typeof KINDS)[number], extra: Record<string, unknown>): Record<string, unknown> {
  const own = kind === 'ppo' ? { prompts: { path: data }, reward: { function: 'claim-format' } } : { data: { sources: [data] } };
  return { kind, name: 'r', model: 'tiny', init: dir, seqLen: 64, batchSize: 2, steps: 4, optimizer: { lr: 1e-3 }, ...own, ...extra };
}

function message(raw: unknown): string {
  try {
    validateStageConfig(raw, { source: 'stage.json' });
  } catch (err) {
    expect(err).toBeInstanceOf(PatentGPTError);
    expect((err as PatentGPTError).code).toBe('E_CONFIG');
    return (err as Error).message;
  }
  return expect.fail('accepted');
}

describe('shared stage config sections', () => {
  it('lora.targetModules that is not a regular expression is refused by every chat stage (dpo did not check it)', () => {
    for (const kind of KINDS) expect(message(config(kind, { lora: { r: 4, targetModules: 'q_proj(' } }))).toMatch(/^stage\.json: lora\.targetModules: "q_proj\(" is not a valid regular expression/);
  });

  it('a missing lora.r, a bad chatTemplate and an unknown chatTemplate field read the same for every kind', () => {
    for (const kind of KINDS) {
      expect(message(config(kind, { lora: { alpha: 8 } }))).toBe('stage.json: lora.r: missing (an integer >= 1 is required)');
      expect(message(config(kind, { chatTemplate: { path: dir, nme: 'x' } }))).toBe('stage.json: chatTemplate.nme: unknown field (known: path, name)');
      expect(message(config(kind, { chatTemplate: '' }))).toBe('stage.json: chatTemplate: must be a non-empty string, got ""');
    }
  });

  it('init: a missing init on a model that is not a folder names what the stage starts from', () => {
    const want = { sft: 'fine-tuning starts', dpo: 'DPO starts', reward: 'a reward model starts', ppo: 'PPO starts' };
    for (const kind of KINDS) {
      const raw = config(kind, {});
      delete raw.init;
      expect(message(raw)).toMatch(new RegExp(`^stage\\.json: init: missing: ${want[kind]} from trained weights`));
    }
  });

  it('data sections: sources, valFraction and maxLength read the same for sft and preference data', () => {
    for (const kind of ['sft', 'dpo', 'reward'] as const) {
      expect(message(config(kind, { data: { sources: [] } }))).toMatch(/^stage\.json: data\.sources: must list at least one .* data file/);
      expect(message(config(kind, { data: { sources: [data], valFraction: 1 } }))).toBe('stage.json: data.valFraction: must be in [0, 1), got 1');
      expect(message(config(kind, { data: { sources: [{ path: data, fields: { roles: { human: 'robot' } } }] } })))
        .toBe('stage.json: data.sources[0].fields.roles.human: must be one of "system", "user", "assistant", got "robot"');
      expect(message(config(kind, { data: { sources: [data], maxLength: 128 } }))).toMatch(/^stage\.json: data\.maxLength: 128 exceeds seqLen 64/);
    }
  });
});
