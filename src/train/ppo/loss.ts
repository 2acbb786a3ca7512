// PPO's minibatch loss (TRL's PPOTrainer formulas) over the valid tokens of a minibatch, packed:
// n policy tokens and m value positions (m = n unless the score sits past the EOS), so a masked
// mean is a plain mean and no padding is ever computed.
//   ratio = exp(logp - logp_old)
//   pg    = mean(max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)))
//   vf    = 0.5 mean(max((v - R)^2, (v_old + clip(v - v_old, -eps_v, eps_v) - R)^2))
//   loss  = pg + vfCoef vf
// The metrics (clip fractions, approx-KL = 0.5 mean((logp - logp_old)^2)) come from the same
// numbers in float64; TRL means approx-KL and entropy over the padding too, we over valid tokens.
import { PatentGPTError } from '../../errors.js';
import { Tensor, add, clamp, exp, logSoftmax, maximum, mean, mul, noGrad, scale, softmax, sub, sum } from '../../tensor/index.js';

export interface PpoLossInputs {
  /** (n) log-probs of the sampled tokens under the current policy (recorded for backward). */
  logprobs: Tensor;
  /** (n) log-probs at rollout time, and the whitened advantages. */
  oldLogprobs: Float32Array;
  advantages: Float32Array;
  /** (m) value predictions of the current value head (recorded for backward). */
  values: Tensor;
  /** (m) values at rollout time, and the returns. */
  oldValues: Float32Array;
  returns: Float32Array;
}

export interface PpoLossOptions {
  /** eps of the ratio clip (TRL's cliprange, default 0.2). */
  cliprange: number;
  /** eps_v of the value clip (TRL's cliprange_value, default 0.2). */
  cliprangeValue: number;
  /** Weight of the value loss (TRL's vf_coef, default 0.1). */
  vfCoef: number;
}

export interface PpoLossOutput {
  /** pgLoss + vfCoef * vfLoss, recorded for backward. */
  loss: Tensor;
  pgLoss: number;
  vfLoss: number;
  /** Share of tokens whose clipped term was the larger (TRL's pg_clipfrac, vf_clipfrac). */
  clipFraction: number;
  valueClipFraction: number;
  approxKl: number;
  ratioMean: number;
}

export function ppoLoss(x: PpoLossInputs, o: PpoLossOptions): PpoLossOutput {
  const n = x.logprobs.size, m = x.values.size;
  if (x.oldLogprobs.length !== n || x.advantages.length !== n)
    throw new PatentGPTError('E_SHAPE', `ppoLoss: ${n} log-probs, ${x.oldLogprobs.length} old log-probs, ${x.advantages.length} advantages`);
  if (x.oldValues.length !== m || x.returns.length !== m)
    throw new PatentGPTError('E_SHAPE', `ppoLoss: ${m} values, ${x.oldValues.length} old values, ${x.returns.length} returns`);
  if (n === 0 || m === 0) throw new PatentGPTError('E_ARGUMENT', 'ppoLoss: a minibatch with no valid token');
  const dev = x.logprobs.device;
  const f = (a: Float32Array, len: number): Tensor => Tensor.from(a, [len], { device: dev });
  const oldLp = f(x.oldLogprobs, n), negAdv = f(x.advantages.map((v) => -v), n);
  const ratio = exp(sub(x.logprobs, oldLp));
  const pg1 = mul(negAdv, ratio);
  const pg2 = mul(negAdv, clamp(ratio, 1 - o.cliprange, 1 + o.cliprange));
  const pg = mean(maximum(pg1, pg2));
  const oldV = f(x.oldValues, m), ret = f(x.returns, m);
  const vClipped = add(oldV, clamp(sub(x.values, oldV), -o.cliprangeValue, o.cliprangeValue));
  const d1 = sub(x.values, ret), d2 = sub(vClipped, ret);
  const vf1 = mul(d1, d1), vf2 = mul(d2, d2);
  const vf = scale(mean(maximum(vf1, vf2)), 0.5);
  const loss = add(pg, scale(vf, o.vfCoef));

  // metrics in float64 from the same float32 values
  const [lp, r, a1, a2, v1, v2] = [x.logprobs, ratio, pg1, pg2, vf1, vf2].map((t) => t.toArray() as Float32Array) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  let clip = 0, kl = 0, rsum = 0;
  for (let i = 0; i < n; i++) {
    if (a2[i]! > a1[i]!) clip++;
    kl += (lp[i]! - x.oldLogprobs[i]!) ** 2;
    rsum += r[i]!;
  }
  let vclip = 0;
  for (let i = 0; i < m; i++) if (v2[i]! > v1[i]!) vclip++;
  return {
    loss, pgLoss: pg.item(), vfLoss: vf.item(), clipFraction: clip / n, valueClipFraction: vclip / m, approxKl: (0.5 * kl) / n, ratioMean: rsum / n,
  };
}

/** Mean entropy of the rows of logits (n, V), no gradient: logsumexp - sum(p * logits) per row. */
export function meanEntropy(logits: Tensor): number {
  return noGrad(() => {
    const p = softmax(logits);
    const h = sum(mul(p, logSoftmax(logits)), -1); // (n): -entropy
    const out = -mean(h).item();
    p.dispose();
    h.dispose();
    return out;
  });
}
