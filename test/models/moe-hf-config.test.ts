// The SMoE fields of config.json: the router coefficients are written as floats (transformers 5's
// MixtralConfig refuses an int such as 0 there), the z-loss coefficient goes out as our extra field
// router_z_loss_coef and comes back, and transformers loads the folder (live where installed).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findPython, runPythonJson } from '../../scripts/bench/_peers.js';
import { LlamaForCausalLM, fromHFConfig, hfConfigJson, preset, savePretrained, toHFConfig, validateConfig, type ModelConfig } from '../../src/models/index.js';

const base = preset('tiny-moe').config;
const cases: ModelConfig[] = [
  validateConfig({ ...base, routerAuxLossCoef: 0, routerZLossCoef: 0 }),
  validateConfig({ ...base, routerAuxLossCoef: 1, routerZLossCoef: 0.001, routerJitter: 0.01 }),
  validateConfig({ ...base, routerAuxLossCoef: 0.02, routerZLossCoef: 2 }),
];

describe('config.json of an SMoE model', () => {
  it('writes the router coefficients as floats and reads every one back, router_z_loss_coef included', () => {
    const [zero, one, two] = cases.map((c) => hfConfigJson(toHFConfig(c)));
    expect(zero).toMatch(/^ {2}"router_aux_loss_coef": 0\.0,$/m);
    expect(zero).toMatch(/^ {2}"router_z_loss_coef": 0\.0,$/m);
    expect(zero).not.toMatch(/router_jitter_noise/); // 0: transformers' default, left out
    expect(one).toMatch(/^ {2}"router_aux_loss_coef": 1\.0,$/m);
    expect(one).toMatch(/^ {2}"router_z_loss_coef": 0\.001,$/m);
    expect(one).toMatch(/^ {2}"router_jitter_noise": 0\.01,$/m);
    expect(two).toMatch(/^ {2}"router_z_loss_coef": 2\.0,$/m);
    cases.forEach((c, i) => expect(fromHFConfig(JSON.parse([zero, one, two][i]!)), `case ${i}`).toEqual(c));
    // a folder written before router_z_loss_coef existed reads as no z-loss
    const { router_z_loss_coef: _, ...old } = toHFConfig(cases[1]!);
    expect(fromHFConfig(old).routerZLossCoef).toBe(0);
    // a dense model's file is plain JSON.stringify's
    const dense = toHFConfig(preset('tiny').config);
    expect(hfConfigJson(dense)).toBe(JSON.stringify(dense, null, 2) + '\n');
  });

  const { python, why } = findPython(['transformers']);
  it.skipIf(!python)(`transformers' MixtralConfig loads the folder savePretrained writes, with float coefficients${python ? '' : ` (skipped: ${why})`}`, async () => {
    const dirs: string[] = [];
    for (const c of cases) {
      const dir = mkdtempSync(join(tmpdir(), 'pg-moe-config-'));
      const model = new LlamaForCausalLM(c, { init: 'zeros' });
      await savePretrained(model, dir);
      model.dispose();
      dirs.push(dir);
    }
    try {
      const got = runPythonJson<{ aux: number; auxType: string; z: number; jitter: number; experts: number }[]>(python!, `
import json
from transformers import AutoConfig
out = []
for d in json.loads('${JSON.stringify(dirs)}'):
    c = AutoConfig.from_pretrained(d)
    out.append({"aux": c.router_aux_loss_coef, "auxType": type(c.router_aux_loss_coef).__name__, "z": c.router_z_loss_coef,
                "jitter": c.router_jitter_noise, "experts": c.num_local_experts})
print(json.dumps(out))`);
      cases.forEach((c, i) => expect(got[i], `case ${i}`).toEqual({
        aux: c.routerAuxLossCoef, auxType: 'float', z: c.routerZLossCoef, jitter: c.routerJitter, experts: c.numExperts,
      }));
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});
