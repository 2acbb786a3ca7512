// The engine serves base + LoRA adapter without merging (Engine.fromPretrained(dir, { adapter })):
// greedy output and log-probs equal those of the merged folder (patentgpt sft merge's writer),
// differ from the base's, the adapted layers take the generic forward (not fusable) while the
// merged model's layers are fused again, and the adapter's dropout is off while serving.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, ThreadedEngine, type GenerateOptions } from '../../src/infer/index.js';
import { ADAPTER_CONFIG_FILE, LlamaForCausalLM, loraParameters, preset, saveLora, savePretrained } from '../../src/index.js';
import { mergeAdapterFolder } from '../../src/models/lora-merge.js';
import { applyLora } from '../../src/nn/lora.js';
import { randomArray } from '../helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-engine-lora-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const base = path.join(root, 'base');
const adapter = path.join(root, 'adapter');
const merged = path.join(root, 'merged');
const cfg = preset('tiny').config;

beforeAll(async () => {
  const model = new LlamaForCausalLM(cfg, { seed: 11, initStd: 0.05 });
  await savePretrained(model, base);
  applyLora(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'], seed: 2 });
  for (const [n, p] of loraParameters(model)) if (n.endsWith('lora_B.weight')) p.write(Float32Array.from(randomArray(p.size, n.length, 0.2)));
  await saveLora(model, adapter, { baseModel: base });
  model.dispose();
  await mergeAdapterFolder(base, adapter, merged);
});

const prompts = [[1, 7, 99, 3, 4], [200, 13, 5, 80, 81, 82, 83, 9], [42, 42, 17]];
const opts: GenerateOptions = { maxTokens: 12, ignoreEos: true, logprobs: 0 };
const perToken = 2 * cfg.nLayers * cfg.nKvHeads * (cfg.dim / cfg.nHeads) * 4;

/** Greedy tokens and log-probs of every prompt, all in flight at once (decode steps batch them). */
async function serve(engine: Engine | ThreadedEngine): Promise<{ tokens: number[]; logprobs: number[] }[]> {
  try {
    return await Promise.all(prompts.map(async (p) => {
      const tokens: number[] = [], logprobs: number[] = [];
      for await (const d of engine.generate(p, opts)) {
        tokens.push(...d.tokens);
        logprobs.push(...d.logprobs!.map((l) => l.logprob));
      }
      return { tokens, logprobs };
    }));
  } finally {
    await engine.close();
  }
}

describe('Engine.fromPretrained with an adapter', () => {
  const engineOpts = { kvCacheBytes: 64 * 16 * perToken, blockSize: 16 };

  it('serves base + adapter unmerged: the merged model\'s greedy output and log-probs, not the base\'s', async () => {
    const withAdapter = await Engine.fromPretrained(base, { ...engineOpts, adapter });
    const layers = withAdapter.model.model.layers.items;
    expect(layers.every((l) => l.decodeWeights() === null)).toBe(true); // adapted layers: the generic forward
    const a = await serve(withAdapter);
    const mergedEngine = await Engine.fromPretrained(merged, engineOpts);
    expect(mergedEngine.model.model.layers.items.every((l) => l.decodeWeights() !== null)).toBe(true); // merged: fused again
    const m = await serve(mergedEngine);
    const b = await serve(await Engine.fromPretrained(base, engineOpts));
    let worst = 0;
    for (let i = 0; i < prompts.length; i++) {
      expect(a[i]!.tokens, `prompt ${i}`).toEqual(m[i]!.tokens);
      a[i]!.logprobs.forEach((lp, j) => (worst = Math.max(worst, Math.abs(lp - m[i]!.logprobs[j]!))));
    }
    expect(worst).toBeLessThan(1e-4);
    expect(a.some((x, i) => x.tokens.join() !== b[i]!.tokens.join())).toBe(true);
  }, 60_000);

  it('ThreadedEngine.fromPretrained attaches the adapter in its worker: the same output as Engine', async () => {
    const threaded = await serve(await ThreadedEngine.fromPretrained(base, { ...engineOpts, adapter }));
    expect(threaded).toEqual(await serve(await Engine.fromPretrained(base, { ...engineOpts, adapter })));
  }, 60_000);

  it('the adapter\'s dropout is a training setting: off while serving', async () => {
    const dropped = path.join(root, 'adapter-dropout');
    fs.cpSync(adapter, dropped, { recursive: true });
    const c = JSON.parse(fs.readFileSync(path.join(dropped, ADAPTER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(dropped, ADAPTER_CONFIG_FILE), JSON.stringify({ ...c, lora_dropout: 0.5 }));
    const x = await serve(await Engine.fromPretrained(base, { ...engineOpts, adapter: dropped }));
    const y = await serve(await Engine.fromPretrained(base, { ...engineOpts, adapter }));
    expect(x).toEqual(y);
  }, 60_000);

  it('refuses an adapter given to the constructor, and one that does not fit the base, naming it', async () => {
    const model = new LlamaForCausalLM(cfg, { seed: 1 });
    expect(() => new Engine(model, { adapter })).toThrow(/Engine: adapter .* is attached by Engine\.fromPretrained\(dir, \{ adapter \}\); .* loadLora/);
    model.dispose();
    await expect(Engine.fromPretrained(base, { adapter: path.join(root, 'nowhere') })).rejects.toThrow(/nowhere\/adapter_config\.json not found/);
  });
});
