// Plain float64 softmax attention over packed sequences with grouped-query heads: the reference
// the fused kernels are checked against. Materialises each row's probabilities; small shapes only.

export interface AttentionRefInput {
  q: ArrayLike<number>; // (T, H, D)
  k: ArrayLike<number>; // (T, Hkv, D)
  v: ArrayLike<number>; // (T, Hkv, D)
  T: number;
  H: number;
  Hkv: number;
  D: number;
  cuSeqlens: readonly number[];
  causal: boolean;
  scale: number;
}

export interface AttentionRefResult {
  out: Float64Array; // (T, H, D)
  lse: Float64Array; // (H, T)
  dq?: Float64Array; // (T, H, D), when dout was given
  dk?: Float64Array; // (T, Hkv, D)
  dv?: Float64Array; // (T, Hkv, D)
}

export function attentionRef(x: AttentionRefInput, dout?: ArrayLike<number>): AttentionRefResult {
  const { q, k, v, T, H, Hkv, D, cuSeqlens, causal, scale } = x;
  const G = H / Hkv;
  const out = new Float64Array(T * H * D);
  const lse = new Float64Array(H * T);
  const dq = new Float64Array(T * H * D);
  const dk = new Float64Array(T * Hkv * D);
  const dv = new Float64Array(T * Hkv * D);
  const qi = (t: number, h: number, d: number): number => (t * H + h) * D + d;
  const ki = (t: number, g: number, d: number): number => (t * Hkv + g) * D + d;
  for (let s = 0; s + 1 < cuSeqlens.length; s++) {
    const s0 = cuSeqlens[s]!;
    const len = cuSeqlens[s + 1]! - s0;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / G);
      for (let i = 0; i < len; i++) {
        const nk = causal ? i + 1 : len;
        const p = new Float64Array(nk);
        let mx = -Infinity;
        for (let j = 0; j < nk; j++) {
          let acc = 0;
          for (let d = 0; d < D; d++) acc += q[qi(s0 + i, h, d)]! * k[ki(s0 + j, g, d)]!;
          p[j] = acc * scale;
          mx = Math.max(mx, p[j]!);
        }
        let sum = 0;
        for (let j = 0; j < nk; j++) sum += p[j] = Math.exp(p[j]! - mx);
        for (let j = 0; j < nk; j++) p[j]! /= sum;
        lse[h * T + s0 + i] = mx + Math.log(sum);
        for (let d = 0; d < D; d++) {
          let o = 0;
          for (let j = 0; j < nk; j++) o += p[j]! * v[ki(s0 + j, g, d)]!;
          out[qi(s0 + i, h, d)] = o;
        }
        if (!dout) continue;
        let delta = 0;
        for (let d = 0; d < D; d++) delta += dout[qi(s0 + i, h, d)]! * out[qi(s0 + i, h, d)]!;
        for (let j = 0; j < nk; j++) {
          let dp = 0;
          for (let d = 0; d < D; d++) dp += dout[qi(s0 + i, h, d)]! * v[ki(s0 + j, g, d)]!;
          const ds = p[j]! * (dp - delta) * scale;
          for (let d = 0; d < D; d++) {
            dv[ki(s0 + j, g, d)]! += p[j]! * dout[qi(s0 + i, h, d)]!;
            dk[ki(s0 + j, g, d)]! += ds * q[qi(s0 + i, h, d)]!;
            dq[qi(s0 + i, h, d)]! += ds * k[ki(s0 + j, g, d)]!;
          }
        }
      }
    }
  }
  return dout ? { out, lse, dq, dk, dv } : { out, lse };
}
