// Plain float64 references for the LLaMA op kernels (embedding, rmsnorm, rope, swiglu,
// cross-entropy / log-prob, AdamW), written straight from the PyTorch / Hugging Face definitions.
// Flat row-major arrays in, flat arrays out.

/** out (N, C) = table[ids] */
export function embeddingRef(ids: ArrayLike<number>, table: ArrayLike<number>, C: number): Float64Array {
  const out = new Float64Array(ids.length * C);
  for (let n = 0; n < ids.length; n++) for (let c = 0; c < C; c++) out[n * C + c] = table[ids[n]! * C + c]!;
  return out;
}

/** dtable (V, C) = scatter-add of dout (N, C) at ids */
export function embeddingBackwardRef(ids: ArrayLike<number>, dout: ArrayLike<number>, V: number, C: number): Float64Array {
  const d = new Float64Array(V * C);
  for (let n = 0; n < ids.length; n++) for (let c = 0; c < C; c++) d[ids[n]! * C + c] += dout[n * C + c]!;
  return d;
}

/** LlamaRMSNorm: x (N, C), w (C) */
export function rmsnormRef(x: ArrayLike<number>, w: ArrayLike<number>, C: number, eps: number): Float64Array {
  const N = x.length / C;
  const out = new Float64Array(x.length);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c]! ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) out[n * C + c] = x[n * C + c]! * r * w[c]!;
  }
  return out;
}

/**
 * HF LLaMA rotary embedding of x (T, H, D) at positions (T). `f32Angles` rounds inv_freq, the
 * scaled position and the angle to f32 as HF does; otherwise exact float64 math.
 */
export function ropeRef(x: ArrayLike<number>, pos: ArrayLike<number>, T: number, H: number, D: number,
  theta = 10000, posScale = 1, f32Angles = true): Float64Array {
  const f = f32Angles ? Math.fround : (v: number) => v;
  const half = D / 2;
  const out = new Float64Array(x.length);
  for (let t = 0; t < T; t++) {
    const p = f(f(pos[t]!) / f(posScale));
    for (let i = 0; i < half; i++) {
      const invFreq = f(1 / f(Math.pow(f(theta), f(f(2 * i) / f(D)))));
      const a = f(invFreq * p);
      const cos = Math.cos(a), sin = Math.sin(a);
      for (let h = 0; h < H; h++) {
        const b = (t * H + h) * D;
        const x1 = x[b + i]!, x2 = x[b + i + half]!;
        out[b + i] = x1 * cos - x2 * sin;
        out[b + i + half] = x2 * cos + x1 * sin;
      }
    }
  }
  return out;
}

/** F.silu(gate) * up */
export function swigluRef(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const out = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) out[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
  return out;
}

function lseRow(logits: ArrayLike<number>, n: number, V: number): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, logits[n * V + v]!);
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(logits[n * V + v]! - m);
  return m + Math.log(s);
}

/** Per-row F.cross_entropy(reduction='none'): 0 where ignored. */
export function crossEntropyRef(logits: ArrayLike<number>, targets: ArrayLike<number>, V: number, ignoreIndex = -100): Float64Array {
  const N = targets.length;
  const loss = new Float64Array(N);
  for (let n = 0; n < N; n++) loss[n] = targets[n] === ignoreIndex ? 0 : lseRow(logits, n, V) - logits[n * V + targets[n]!]!;
  return loss;
}

/** dlogits (N, V) = dloss[n] * (softmax - onehot), zero rows where ignored. */
export function crossEntropyBackwardRef(logits: ArrayLike<number>, targets: ArrayLike<number>, dloss: ArrayLike<number>,
  V: number, ignoreIndex = -100): Float64Array {
  const N = targets.length;
  const d = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    if (targets[n] === ignoreIndex) continue;
    const lse = lseRow(logits, n, V);
    for (let v = 0; v < V; v++) d[n * V + v] = dloss[n]! * (Math.exp(logits[n * V + v]! - lse) - (v === targets[n] ? 1 : 0));
  }
  return d;
}

/** log_softmax(logits)[n, ids[n]] */
export function logprobsRef(logits: ArrayLike<number>, ids: ArrayLike<number>, V: number): Float64Array {
  const out = new Float64Array(ids.length);
  for (let n = 0; n < ids.length; n++) out[n] = logits[n * V + ids[n]!]! - lseRow(logits, n, V);
  return out;
}

export interface AdamwRefState {
  param: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** One step of torch.optim.AdamW (_single_tensor_adamw), in float64, in place. */
export function adamwRef(s: AdamwRefState, grad: ArrayLike<number>, hp: { lr: number; beta1: number; beta2: number; eps: number;
  weightDecay: number; step: number; gradScale: number }): void {
  const bc1 = 1 - hp.beta1 ** hp.step;
  const bc2 = 1 - hp.beta2 ** hp.step;
  const stepSize = hp.lr / bc1;
  for (let i = 0; i < s.param.length; i++) {
    const g = grad[i]! * hp.gradScale;
    s.param[i] *= 1 - hp.lr * hp.weightDecay;
    s.m[i] = hp.beta1 * s.m[i]! + (1 - hp.beta1) * g;
    s.v[i] = hp.beta2 * s.v[i]! + (1 - hp.beta2) * g * g;
    s.param[i] -= (stepSize * s.m[i]!) / (Math.sqrt(s.v[i]!) / Math.sqrt(bc2) + hp.eps);
  }
}

/** Output k of SplitMix64 seeded with `seed`, top 24 bits as u in [0, 1): the dropout kernels' mask draw (native/cpu/dropout.cpp, native/cuda/dropout.cu). */
export function splitmixU(seed: number, k: number): number {
  const M = (1n << 64n) - 1n;
  let z = (BigInt(seed) + (BigInt(k) + 1n) * 0x9e3779b97f4a7c15n) & M;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
  z ^= z >> 31n;
  return Number(z >> 40n) / 2 ** 24;
}
