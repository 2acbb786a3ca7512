// Float64 references for matmul and linear: plain triple loops over row-major arrays, written
// from the definitions (no shared code with src/) so the ops are checked against something
// independent.

export interface RefTensor {
  data: Float64Array;
  shape: number[];
}

const prod = (dims: readonly number[]): number => dims.reduce((p, d) => p * d, 1);

/**
 * op(a) @ op(b) in float64: a (..., M, K) or (..., K, M) with transA; b (..., K, N) or
 * (..., N, K) with transB, with a's batch dimensions or 2-D (shared by every batch item).
 */
export function matmulRef(
  a: ArrayLike<number>, aShape: readonly number[], b: ArrayLike<number>, bShape: readonly number[],
  transA = false, transB = false,
): RefTensor {
  const [ar, ac] = aShape.slice(-2) as [number, number];
  const [br, bc] = bShape.slice(-2) as [number, number];
  const M = transA ? ac : ar, K = transA ? ar : ac;
  const N = transB ? br : bc;
  if ((transB ? bc : br) !== K) throw new Error('matmulRef: inner dimensions differ');
  const batchDims = aShape.slice(0, -2);
  const batch = prod(batchDims);
  const bShared = bShape.length === 2;
  const out = new Float64Array(batch * M * N);
  for (let t = 0; t < batch; t++) {
    const ao = t * M * K, bo = bShared ? 0 : t * K * N, co = t * M * N;
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + (transA ? k * M + i : i * K + k)]!;
          const bv = b[bo + (transB ? j * K + k : k * N + j)]!;
          acc += av * bv;
        }
        out[co + i * N + j] = acc;
      }
  }
  return { data: out, shape: [...batchDims, M, N] };
}

/** x (..., in) @ weight (out, in)^T in float64. */
export function linearRef(x: ArrayLike<number>, xShape: readonly number[], w: ArrayLike<number>, wShape: readonly number[]): RefTensor {
  const [outF, inF] = wShape as [number, number];
  const rows = prod(xShape.slice(0, -1));
  const r = matmulRef(x, [rows, inF], w, [outF, inF], false, true);
  return { data: r.data, shape: [...xShape.slice(0, -1), outF] };
}

/** Gradients of L = sum(dy * linear(x, w)): dx = dy @ w (rows, in), dw = dy^T @ x (out, in). */
export function linearGradRef(
  x: ArrayLike<number>, xShape: readonly number[], w: ArrayLike<number>, wShape: readonly number[], dy: ArrayLike<number>,
): { dx: Float64Array; dw: Float64Array } {
  const [outF, inF] = wShape as [number, number];
  const rows = prod(xShape.slice(0, -1));
  return {
    dx: matmulRef(dy, [rows, outF], w, [outF, inF]).data,
    dw: matmulRef(dy, [rows, outF], x, [rows, inF], true, false).data,
  };
}

/** Rounds float values to bf16 (nearest even) and back, as a bf16 tensor would hold them. */
export function roundBf16(values: ArrayLike<number>): Float64Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i]!;
    const bits = u[0]!;
    u[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
    out[i] = f[0]!;
  }
  return out;
}

/** An f32 value rounded to IEEE half (nearest even, past 65504 to infinity, subnormals kept) and back, from the format's definition. */
export function roundF16(v: number): number {
  const x = Math.fround(v);
  if (!Number.isFinite(x) || x === 0) return x;
  const ax = Math.abs(x);
  if (ax >= 65520) return Math.sign(x) * Infinity; // halfway to 2^16 and beyond round up to infinity
  let e = Math.max(-14, Math.floor(Math.log2(ax))); // below 2^-14: subnormal, spacing 2^-24
  if (e > -14 && 2 ** e > ax) e--;
  if (2 ** (e + 1) <= ax) e++;
  const q = 2 ** (e - 10); // spacing of halves in [2^e, 2^(e+1))
  const r = ax / q; // exact: ax has at most 24 significant bits
  let n = Math.floor(r);
  const frac = r - n;
  if (frac > 0.5 || (frac === 0.5 && n % 2 === 1)) n++;
  return Math.sign(x) * n * q;
}

/** One matmul case of matmulCases: its shapes and transposes, and a label for failures. */
export interface MatmulCase {
  s: { batch: number[]; M: number; N: number; K: number; shareB?: boolean };
  transA: boolean;
  transB: boolean;
  aShape: number[];
  bShape: number[];
  what: string;
}

/**
 * The matmul shapes the precision tests share (odd sizes, batches, a b shared across the batch
 * whose K is `sharedK`) under every transpose; `extra` shapes go before the shared one.
 */
export function matmulCases(sharedK = 40, extra: MatmulCase['s'][] = []): MatmulCase[] {
  const shapes: MatmulCase['s'][] = [
    { batch: [], M: 37, N: 45, K: 70 },
    { batch: [2], M: 33, N: 64, K: 100 },
    ...extra,
    { batch: [3], M: 5, N: 9, K: sharedK, shareB: true },
  ];
  const cases: MatmulCase[] = [];
  for (const s of shapes)
    for (const transA of [false, true])
      for (const transB of [false, true])
        cases.push({
          s, transA, transB,
          aShape: [...s.batch, transA ? s.K : s.M, transA ? s.M : s.K],
          bShape: [...(s.shareB ? [] : s.batch), transB ? s.N : s.K, transB ? s.K : s.N],
          what: `${JSON.stringify(s)} transA ${transA} transB ${transB}`,
        });
  return cases;
}
