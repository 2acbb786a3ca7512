// Named model configs. The presets are data (presets/presets.json); this module only checks them.
import { PatentGPTError } from '../errors.js';
import { validateConfig, type ModelConfig } from './config.js';
import presetData from './presets/presets.json' with { type: 'json' };

export interface Preset {
  name: string;
  description: string;
  config: ModelConfig;
}

const table = presetData as Record<string, { description: string; config: unknown }>;

/** The names of every preset, in file order. */
export function presetNames(): string[] {
  return Object.keys(table);
}

/** A preset's validated config; an unknown name lists the known ones. */
export function preset(name: string): Preset {
  const entry = Object.hasOwn(table, name) ? table[name] : undefined;
  if (!entry) throw new PatentGPTError('E_CONFIG', `unknown model preset "${name}"; known presets: ${presetNames().join(', ')}`);
  return { name, description: entry.description, config: validateConfig(entry.config, `preset ${name}`) };
}
