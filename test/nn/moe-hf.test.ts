// The load-balancing loss equals transformers' load_balancing_loss_func (Mixtral) on the same
// router logits, and the z-loss equals logsumexp(logits)^2 averaged over tokens, computed by torch.
// Live where torch + transformers are installed (CI requires them), skipped with the reason otherwise.
import { describe, expect, it } from 'vitest';
import { findPython, runPythonJson } from '../../scripts/bench/_peers.js';
import { ForwardRecorder, SparseMoE, Tensor, loadBalancingLoss, noGrad, routerZLoss, softmax } from '../../src/index.js';
import { randomArray } from '../helpers.js';

const { python, why } = findPython(['torch', 'transformers']);

describe.skipIf(!python)(`router losses against transformers${python ? '' : ` (skipped: ${why})`}`, () => {
  it('loadBalancingLoss and routerZLoss equal torch on the same logits, for top-1, top-2 and top-3', () => {
    const N = 37, E = 6;
    const logits = Array.from(randomArray(N * E, 11, 2));
    const refs = runPythonJson<{ lb: number; z: number }[]>(python!, `
import json, torch
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
l = torch.tensor(json.loads('${JSON.stringify(logits)}'), dtype=torch.float32).reshape(${N}, ${E})
z = (torch.logsumexp(l, dim=-1) ** 2).mean()
print(json.dumps([{"lb": float(load_balancing_loss_func((l,), ${E}, k)), "z": float(z)} for k in (1, 2, 3)]))`);
    for (const K of [1, 2, 3]) {
      const ref = refs[K - 1]!;
      const lt = Tensor.from(Float32Array.from(logits), [N, E]);
      const { lb, z } = noGrad(() => {
        const p = softmax(lt);
        // the counts as the module makes them: each token's top-K by probability
        const pa = p.toArray() as Float32Array;
        const counts = new Int32Array(E);
        for (let n = 0; n < N; n++)
          [...Array(E).keys()].sort((a, b) => pa[n * E + b]! - pa[n * E + a]!).slice(0, K).forEach((e) => counts[e]!++);
        return { lb: loadBalancingLoss(p, counts, N).item(), z: routerZLoss(lt).item() };
      });
      expect(Math.abs(lb - ref.lb) / ref.lb, `top-${K} load balance ${lb} vs ${ref.lb}`).toBeLessThan(1e-5);
      expect(Math.abs(z - ref.z) / ref.z, `z-loss ${z} vs ${ref.z}`).toBeLessThan(1e-5);
    }
  });

  it("a layer's reported load_balance equals load_balancing_loss_func on its router logits", () => {
    const C = 16, N = 29, E = 8, K = 2;
    let seed = 50;
    const moe = new SparseMoE({ dim: C, hiddenDim: 8, numExperts: E, topK: K, auxLossWeight: 1 }, (s) => Tensor.randn(s, { seed: seed++, std: 0.5 }));
    const x = Tensor.from(Float32Array.from(randomArray(N * C, 12)), [N, C]);
    const rec = new ForwardRecorder();
    noGrad(() => moe.forward(x, rec));
    const logits = Array.from(noGrad(() => moe.routerLogits(x)).toArray() as Float32Array);
    const ref = runPythonJson<{ lb: number }>(python!, `
import json, torch
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
l = torch.tensor(json.loads('${JSON.stringify(logits)}'), dtype=torch.float32).reshape(${N}, ${E})
print(json.dumps({"lb": float(load_balancing_loss_func((l,), ${E}, ${K}))}))`);
    expect(Math.abs(rec.metrics.get('load_balance')! - ref.lb) / ref.lb).toBeLessThan(1e-5);
    expect(Math.abs(rec.auxLosses.get('load_balance_loss')!.item() - ref.lb) / ref.lb).toBeLessThan(1e-5);
    rec.dispose();
    moe.dispose();
  });
});
