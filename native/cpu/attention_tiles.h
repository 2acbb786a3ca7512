// Private to native/cpu/attention*.cpp: the FlashAttention-2 tile loops, written once over a
// small vector type and compiled once per ISA (attention_avx512.cpp, attention_avx2.cpp, and
// attention.cpp for the baseline). Each includer defines PG_ATTN_ISA, the namespace its copy
// lives in, so copies built with different -m flags never meet at link time. The ISA copies use
// no standard-library templates (their inline bodies would be shared between TUs built with
// different flags); task lists and scratch come from attention.cpp.
//
// Layout conventions inside a tile: logits are kept in the log2 domain (q . k * scale * log2 e)
// so exp2 is the only transcendental; lse is stored in natural-log units (H, T).
#ifndef PG_ATTENTION_TILES_SHARED
#define PG_ATTENTION_TILES_SHARED
#include <cstdint>
#include <functional>

namespace pg {
namespace attn {

constexpr int64_t kBr = 64;  // queries per tile
constexpr int64_t kBc = 64;  // keys per tile
constexpr int64_t kKvTiles = 4;  // key tiles per backward key-side task
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Args {
  float* out;          // (T, H, D) forward output
  float* lse;          // (H, T) forward output, natural log
  float* dq;           // (T, H, D)
  float* dk;           // (T, Hkv, D)
  float* dv;           // (T, Hkv, D)
  const float* delta;  // (H, T) rowsum(dout * out), filled before the backward tile passes
  const float* dout;   // (T, H, D)
  const float* o;      // (T, H, D) forward output, read in backward
  const float* lse_in; // (H, T)
  const float* q;      // (T, H, D)
  const float* k;      // (T, Hkv, D)
  const float* v;      // (T, Hkv, D)
  const int32_t* cu;   // (nseq + 1)
  int64_t nseq, T, H, Hkv, D;
  float scale;
  bool causal;
};

// One unit of parallel work: a tile (query or key, per pass) of one head of one sequence.
struct Task {
  int32_t seq, head, tile;
  int64_t cost;
};

// Runs fn over tasks on the pool, handing them out one at a time in the given order.
void run_tasks(const Task* tasks, int64_t n, const std::function<void(const Task&)>& fn);
// This thread's attention scratch from its kernel workspace (workspace.h), 64-byte aligned and
// reserved outside the kernels for head dims up to kMaxHeadDim (attention_workspace_floats, from
// the sizes below); looked up once per task.
float* thread_scratch();

// Scratch floats of one task of each pass at head dim D, with Dp = D rounded up to the vector
// width and nj key tiles (at most kKvTiles) on the key side.
constexpr int64_t forward_scratch(int64_t D, int64_t Dp) { return D * kBr + kBc * kBr + kBr * Dp + 3 * kBr; }
constexpr int64_t backward_kv_scratch(int64_t D, int64_t Dp, int64_t nj) {
  return 2 * kBr * kBc + nj * (2 * D * kBc + 2 * kBc * Dp);
}
constexpr int64_t backward_q_scratch(int64_t D, int64_t Dp) { return 2 * D * kBr + 2 * kBc * kBr + kBr * Dp + 2 * kBr; }
constexpr int64_t kMaxVectorWidth = 16;  // floats: the widest ISA copy's W (AVX-512)

#define PG_ATTN_DECLARE(ns)                                                          \
  namespace ns {                                                                     \
  void forward(const Args& a, const Task* tasks, int64_t n);                         \
  void backward_kv(const Args& a, const Task* tasks, int64_t n, bool with_dq);       \
  void backward_q(const Args& a, const Task* tasks, int64_t n);                      \
  }
PG_ATTN_DECLARE(avx512)
PG_ATTN_DECLARE(avx2)
PG_ATTN_DECLARE(scalar)
#undef PG_ATTN_DECLARE

}  // namespace attn
}  // namespace pg
#endif  // PG_ATTENTION_TILES_SHARED

#ifdef PG_ATTN_ISA
#if defined(PG_ATTN_AVX512) || defined(PG_ATTN_AVX2)
#include <immintrin.h>
#endif
#include <cmath>

namespace pg {
namespace attn {
namespace PG_ATTN_ISA {

// ---- the vector type: W lanes, a mask for a partial last vector, exp2 ----
// 2^f for |f| <= 1/2: degree-7 polynomial coefficients, highest degree first (Horner).
constexpr float kExp2Poly[8] = {1.5252734e-05f, 1.5403530e-04f, 1.3333558e-03f, 9.6181291e-03f,
                                5.5504109e-02f, 2.4022651e-01f, 6.9314718e-01f, 1.0f};

#if defined(PG_ATTN_AVX512)
struct V {
  using T = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static M mask(int n) { return static_cast<M>((1u << n) - 1u); }
  static T loadm(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void storem(float* p, T x, M m) { _mm512_mask_storeu_ps(p, m, x); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  // 2^x: x = n + f with |f| <= 1/2, 2^f by a degree-7 polynomial, scalef applies 2^n. Below
  // 2^-125 (masked -inf logits among them) the result is exactly 0 by a lane mask: letting
  // scalef underflow cost a microcode assist per vector (no FTZ), which made the causal
  // diagonal tiles' exponentials half of the forward's time.
  static T exp2(T x) {
    const M live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-125.0f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-125.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(128.0f));
    T n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    T f = _mm512_sub_ps(x, n);
    T p = _mm512_set1_ps(kExp2Poly[0]);
    for (int i = 1; i < 8; ++i) p = fma(p, f, _mm512_set1_ps(kExp2Poly[i]));
    return _mm512_maskz_scalef_ps(live, p, n);
  }
};
constexpr int kMR = 6, kNV = 4;  // 24 accumulators of 32 zmm
#elif defined(PG_ATTN_AVX2)
struct V {
  using T = __m256;
  using M = __m256i;
  static constexpr int W = 8;
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static M mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static T loadm(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static void storem(float* p, T x, M m) { _mm256_maskstore_ps(p, m, x); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T exp2(T x) {  // exactly 0 below 2^-125 without a denormal product (see the AVX-512 copy)
    T under = _mm256_cmp_ps(x, _mm256_set1_ps(-125.0f), _CMP_LT_OQ);
    x = _mm256_max_ps(x, _mm256_set1_ps(-125.0f));
    x = _mm256_min_ps(x, _mm256_set1_ps(127.0f));
    T n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    T f = _mm256_sub_ps(x, n);
    T p = _mm256_set1_ps(kExp2Poly[0]);
    for (int i = 1; i < 8; ++i) p = fma(p, f, _mm256_set1_ps(kExp2Poly[i]));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
  }
};
constexpr int kMR = 6, kNV = 2;  // 12 accumulators of 16 ymm
#else
struct V {
  using T = float;
  using M = int;
  static constexpr int W = 1;
  static T zero() { return 0.0f; }
  static T set1(float x) { return x; }
  static T load(const float* p) { return *p; }
  static void store(float* p, T x) { *p = x; }
  static M mask(int n) { return n; }
  static T loadm(const float* p, M m) { return m > 0 ? *p : 0.0f; }
  static void storem(float* p, T x, M m) {
    if (m > 0) *p = x;
  }
  static T fma(T a, T b, T c) { return a * b + c; }
  static T add(T a, T b) { return a + b; }
  static T sub(T a, T b) { return a - b; }
  static T mul(T a, T b) { return a * b; }
  static T max(T a, T b) { return a > b ? a : b; }
  static T exp2(T x) { return std::exp2(x); }
};
constexpr int kMR = 4, kNV = 4;
#endif

using VT = V::T;
constexpr int W = V::W;
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// ---- the tile product ----
// C (MR, NV*W) (+)= A (MR, K) B (K, NV*W). A[m, k] = a[m * am + k * ak] is broadcast, so any
// layout of A works (row-major, transposed, a strided tensor); B row k is b + k * ldb (a packed
// tile or tensor rows). The last vector of each B and C row holds `tail` columns.
template <int MR, int NV, bool Accum, bool Tail>
inline void micro(float* c, int64_t ldc, const float* a, int64_t am, int64_t ak, const float* b,
                  int64_t ldb, int64_t K, int tail) {
  const V::M m_tail = V::mask(Tail ? tail : W);
  VT acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) {
      if (!Accum) acc[m][n] = V::zero();
      else if (Tail && n == NV - 1) acc[m][n] = V::loadm(c + m * ldc + n * W, m_tail);
      else acc[m][n] = V::load(c + m * ldc + n * W);
    }
  for (int64_t k = 0; k < K; ++k) {
    const float* bk = b + k * ldb;
    const float* ak_ = a + k * ak;
    VT bv[NV];
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) bv[n] = (Tail && n == NV - 1) ? V::loadm(bk + n * W, m_tail) : V::load(bk + n * W);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      VT av = V::set1(ak_[m * am]);
#pragma GCC unroll 8
      for (int n = 0; n < NV; ++n) acc[m][n] = V::fma(av, bv[n], acc[m][n]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int n = 0; n < NV; ++n) {
      if (Tail && n == NV - 1) V::storem(c + m * ldc + n * W, acc[m][n], m_tail);
      else V::store(c + m * ldc + n * W, acc[m][n]);
    }
}

template <int NV, bool Accum, bool Tail>
inline void gemm_panel(float* c, int64_t ldc, const float* a, int64_t am, int64_t ak, const float* b,
                       int64_t ldb, int64_t M, int64_t K, int tail) {
  int64_t m0 = 0;
  for (; m0 + kMR <= M; m0 += kMR)
    micro<kMR, NV, Accum, Tail>(c + m0 * ldc, ldc, a + m0 * am, am, ak, b, ldb, K, tail);
  float* cm = c + m0 * ldc;
  const float* amp = a + m0 * am;
  switch (M - m0) {
    case 5: if constexpr (kMR > 5) micro<5, NV, Accum, Tail>(cm, ldc, amp, am, ak, b, ldb, K, tail); break;
    case 4: if constexpr (kMR > 4) micro<4, NV, Accum, Tail>(cm, ldc, amp, am, ak, b, ldb, K, tail); break;
    case 3: micro<3, NV, Accum, Tail>(cm, ldc, amp, am, ak, b, ldb, K, tail); break;
    case 2: micro<2, NV, Accum, Tail>(cm, ldc, amp, am, ak, b, ldb, K, tail); break;
    case 1: micro<1, NV, Accum, Tail>(cm, ldc, amp, am, ak, b, ldb, K, tail); break;
    default: break;
  }
}

// C (M, N) (+)= A (M, K) B (K, N) over panels of kNV vectors of columns.
template <bool Accum>
void gemm(float* c, int64_t ldc, const float* a, int64_t am, int64_t ak, const float* b, int64_t ldb,
          int64_t M, int64_t N, int64_t K) {
  constexpr int64_t panel = kNV * W;
  for (int64_t n0 = 0; n0 < N; n0 += panel) {
    const int64_t cols = imin(panel, N - n0);
    const int nv = static_cast<int>((cols + W - 1) / W);
    const int tail = static_cast<int>(cols - (nv - 1) * W);
    float* cp = c + n0;
    const float* bp = b + n0;
#define PG_PANEL(NVV)                                                                   \
  case NVV:                                                                             \
    if constexpr (NVV <= kNV) {                                                         \
      if (tail == W) gemm_panel<NVV, Accum, false>(cp, ldc, a, am, ak, bp, ldb, M, K, tail); \
      else gemm_panel<NVV, Accum, true>(cp, ldc, a, am, ak, bp, ldb, M, K, tail);       \
    }                                                                                   \
    break;
    switch (nv) {
      PG_PANEL(1)
      PG_PANEL(2)
      PG_PANEL(3)
      PG_PANEL(4)
      default: break;
    }
#undef PG_PANEL
  }
}

// dst (D, ld) = src rows (n, D) transposed and multiplied by mul; columns n..ld are zeroed.
inline void pack_transposed(float* dst, int64_t ld, const float* src, int64_t lds, int64_t n, int64_t D,
                            float mul) {
  for (int64_t r = 0; r < n; ++r) {
    const float* s = src + r * lds;
    for (int64_t d = 0; d < D; ++d) dst[d * ld + r] = s[d] * mul;
  }
  for (int64_t d = 0; d < D; ++d)
    for (int64_t r = n; r < ld; ++r) dst[d * ld + r] = 0.0f;
}

inline void zero(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.0f;
}

// ---- forward: one query tile of one head, looping over key tiles with an online softmax ----
inline void forward_tile(const Args& p, int64_t s0, int64_t len, int64_t h, int64_t i) {
  const int64_t D = p.D, Dp = round_up(D, W), G = p.H / p.Hkv, g = h / G;
  const int64_t ldq = p.H * D, ldk = p.Hkv * D;
  const int64_t q0 = i * kBr, nq = imin(kBr, len - q0);
  float* qt = thread_scratch();  // forward_scratch(D, Dp) floats
  float* st = qt + D * kBr;    // (Bc, Br) logits, then probabilities: keys by queries
  float* o = st + kBc * kBr;   // (Br, Dp) unnormalised output
  float* mx = o + kBr * Dp;    // (Br) running max (log2 domain)
  float* l = mx + kBr;         // (Br) running sum
  float* alpha = l + kBr;      // (Br) rescale of the previous tiles
  const float* qrow = p.q + (s0 + q0) * ldq + h * D;
  pack_transposed(qt, kBr, qrow, ldq, nq, D, p.scale * kLog2e);  // (D, Br)
  for (int64_t r = 0; r < kBr; ++r) mx[r] = -INFINITY, l[r] = 0.0f;
  zero(o, kBr * Dp);
  const float* kb = p.k + s0 * ldk + g * D;
  const float* vb = p.v + s0 * ldk + g * D;
  const int64_t nkt = p.causal ? (q0 + nq - 1) / kBc + 1 : (len + kBc - 1) / kBc;
  for (int64_t j = 0; j < nkt; ++j) {
    const int64_t k0 = j * kBc, nk = imin(kBc, len - k0);
    gemm<false>(st, kBr, kb + k0 * ldk, ldk, 1, qt, kBr, nk, kBr, D);  // S^T = K Q^T
    if (p.causal && k0 + nk - 1 > q0) {  // the diagonal: key k0 + c is hidden from queries before it
      for (int64_t c = 0; c < nk; ++c)
        for (int64_t r = 0; r < imin(kBr, k0 + c - q0); ++r) st[c * kBr + r] = -INFINITY;
    }
    for (int64_t r = 0; r < kBr; r += W) {
      VT m_old = V::load(mx + r), m_new = m_old;
      for (int64_t c = 0; c < nk; ++c) m_new = V::max(m_new, V::load(st + c * kBr + r));
      VT sum = V::zero();
      for (int64_t c = 0; c < nk; ++c) {
        VT e = V::exp2(V::sub(V::load(st + c * kBr + r), m_new));
        V::store(st + c * kBr + r, e);
        sum = V::add(sum, e);
      }
      VT a = V::exp2(V::sub(m_old, m_new));
      V::store(alpha + r, a);
      V::store(l + r, V::fma(V::load(l + r), a, sum));
      V::store(mx + r, m_new);
    }
    if (j > 0)
      for (int64_t r = 0; r < nq; ++r) {
        VT a = V::set1(alpha[r]);
        for (int64_t d = 0; d < Dp; d += W) V::store(o + r * Dp + d, V::mul(V::load(o + r * Dp + d), a));
      }
    gemm<true>(o, Dp, st, 1, kBr, vb + k0 * ldk, ldk, nq, D, nk);  // O += P V
  }
  for (int64_t r = 0; r < nq; ++r) {
    const float inv = 1.0f / l[r];
    float* out = p.out + (s0 + q0 + r) * ldq + h * D;
    for (int64_t d = 0; d < D; ++d) out[d] = o[r * Dp + d] * inv;
    p.lse[h * p.T + s0 + q0 + r] = (mx[r] + std::log2(l[r])) * kLn2;
  }
}

void forward(const Args& p, const Task* tasks, int64_t n) {
  run_tasks(tasks, n, [&](const Task& t) {
    const int64_t s0 = p.cu[t.seq], len = p.cu[t.seq + 1] - s0;
    forward_tile(p, s0, len, t.head, t.tile);
  });
}

// ---- backward, key side: a block of up to kKvTiles key tiles of one kv head, over every query
// tile and every query head of its group. Writes dk, dv; with_dq also accumulates dq (the
// caller zeroed it and owns the whole (sequence, kv head) in one task, so no other task touches
// those dq rows). The block's dK/dV accumulators stay in L2 while each query tile (q, dO, dq
// rows) is read once per block rather than once per key tile: at long T those rows no longer
// fit in the last-level cache. ----
inline void backward_kv_block(const Args& p, int64_t s0, int64_t len, int64_t g, int64_t jb, bool with_dq) {
  const int64_t D = p.D, Dp = round_up(D, W), G = p.H / p.Hkv;
  const int64_t ldq = p.H * D, ldk = p.Hkv * D;
  const int64_t kb0 = jb * kKvTiles * kBc;
  const int64_t nj = imin(kKvTiles, (len - kb0 + kBc - 1) / kBc);
  float* ws = thread_scratch();  // backward_kv_scratch(D, Dp, nj) floats
  float* s = ws;               // (Br, Bc) logits, then P
  float* dp = s + kBr * kBc;   // (Br, Bc) dP, then dS
  float* tiles = dp + kBr * kBc;
  const int64_t per_tile = 2 * D * kBc + 2 * kBc * Dp;
  // Per key tile t of the block: kt (D, Bc) scaled keys transposed, vt (D, Bc), dka and dva (Bc, Dp).
  auto kt = [&](int64_t t) { return tiles + t * per_tile; };
  auto vt = [&](int64_t t) { return tiles + t * per_tile + D * kBc; };
  auto dka = [&](int64_t t) { return tiles + t * per_tile + 2 * D * kBc; };
  auto dva = [&](int64_t t) { return tiles + t * per_tile + 2 * D * kBc + kBc * Dp; };
  for (int64_t t = 0; t < nj; ++t) {
    const int64_t k0 = kb0 + t * kBc, nk = imin(kBc, len - k0);
    pack_transposed(kt(t), kBc, p.k + (s0 + k0) * ldk + g * D, ldk, nk, D, p.scale * kLog2e);
    pack_transposed(vt(t), kBc, p.v + (s0 + k0) * ldk + g * D, ldk, nk, D, 1.0f);
    zero(dka(t), 2 * kBc * Dp);
  }
  const int64_t i_start = p.causal ? kb0 / kBr : 0, nqt = (len + kBr - 1) / kBr;
  for (int64_t h = g * G; h < (g + 1) * G; ++h) {
    for (int64_t i = i_start; i < nqt; ++i) {
      const int64_t q0 = i * kBr, nq = imin(kBr, len - q0);
      const float* qrows = p.q + (s0 + q0) * ldq + h * D;
      const float* dorows = p.dout + (s0 + q0) * ldq + h * D;
      const float* lse = p.lse_in + h * p.T + s0 + q0;
      const float* delta = p.delta + h * p.T + s0 + q0;
      for (int64_t t = 0; t < nj; ++t) {
        const int64_t k0 = kb0 + t * kBc, nk = imin(kBc, len - k0);
        if (p.causal && k0 > q0 + nq - 1) break;  // this and later key tiles are after every query
        gemm<false>(s, kBc, qrows, ldq, 1, kt(t), kBc, nq, kBc, D);    // S = Q K^T (log2 domain)
        gemm<false>(dp, kBc, dorows, ldq, 1, vt(t), kBc, nq, kBc, D);  // dP = dO V^T
        for (int64_t r = 0; r < nq; ++r) {
          const VT L = V::set1(lse[r] * kLog2e), dl = V::set1(delta[r]), sc = V::set1(p.scale);
          for (int64_t c = 0; c < kBc; c += W) {
            VT pv = V::exp2(V::sub(V::load(s + r * kBc + c), L));
            V::store(s + r * kBc + c, pv);
            V::store(dp + r * kBc + c, V::mul(V::mul(pv, V::sub(V::load(dp + r * kBc + c), dl)), sc));
          }
        }
        if (p.causal && k0 + nk - 1 > q0)  // the diagonal: key k0 + c is hidden from queries before it
          for (int64_t r = 0; r < nq; ++r)
            for (int64_t c = q0 + r - k0 + 1 < 0 ? 0 : q0 + r - k0 + 1; c < nk; ++c) s[r * kBc + c] = dp[r * kBc + c] = 0.0f;
        gemm<true>(dva(t), Dp, s, 1, kBc, dorows, ldq, nk, D, nq);  // dV += P^T dO
        gemm<true>(dka(t), Dp, dp, 1, kBc, qrows, ldq, nk, D, nq);  // dK += dS^T Q
        if (with_dq)                                                // dQ += dS K
          gemm<true>(p.dq + (s0 + q0) * ldq + h * D, ldq, dp, kBc, 1, p.k + (s0 + k0) * ldk + g * D, ldk, nq, D, nk);
      }
    }
  }
  for (int64_t t = 0; t < nj; ++t) {
    const int64_t k0 = kb0 + t * kBc, nk = imin(kBc, len - k0);
    for (int64_t c = 0; c < nk; ++c) {
      float* dk = p.dk + (s0 + k0 + c) * ldk + g * D;
      float* dv = p.dv + (s0 + k0 + c) * ldk + g * D;
      const float* ka = dka(t) + c * Dp;
      const float* va = dva(t) + c * Dp;
      for (int64_t d = 0; d < D; ++d) dk[d] = ka[d], dv[d] = va[d];
    }
  }
}

void backward_kv(const Args& p, const Task* tasks, int64_t n, bool with_dq) {
  run_tasks(tasks, n, [&](const Task& t) {
    const int64_t s0 = p.cu[t.seq], len = p.cu[t.seq + 1] - s0;
    const int64_t G = p.H / p.Hkv, ldq = p.H * p.D, block = kKvTiles * kBc;
    if (!with_dq) {
      backward_kv_block(p, s0, len, t.head, t.tile, false);
      return;
    }
    // Fused: the task is a whole (sequence, kv head); it owns these dq rows.
    for (int64_t r = 0; r < len; ++r) zero(p.dq + (s0 + r) * ldq + t.head * G * p.D, G * p.D);
    for (int64_t jb = 0; jb < (len + block - 1) / block; ++jb) backward_kv_block(p, s0, len, t.head, jb, true);
  });
}

// ---- backward, query side: one query tile of one head, over its key tiles; writes dq ----
inline void backward_q_tile(const Args& p, int64_t s0, int64_t len, int64_t h, int64_t i) {
  const int64_t D = p.D, Dp = round_up(D, W), G = p.H / p.Hkv, g = h / G;
  const int64_t ldq = p.H * D, ldk = p.Hkv * D;
  const int64_t q0 = i * kBr, nq = imin(kBr, len - q0);
  float* qt = thread_scratch();  // backward_q_scratch(D, Dp) floats
  float* dot = qt + D * kBr;    // (D, Br) dO^T
  float* st = dot + D * kBr;    // (Bc, Br) S^T, then P^T
  float* dpt = st + kBc * kBr;  // (Bc, Br) dP^T, then dS^T
  float* dqa = dpt + kBc * kBr; // (Br, Dp)
  float* L = dqa + kBr * Dp;    // (Br) lse, log2 domain
  float* dl = L + kBr;          // (Br) delta
  const float* qrows = p.q + (s0 + q0) * ldq + h * D;
  pack_transposed(qt, kBr, qrows, ldq, nq, D, p.scale * kLog2e);
  pack_transposed(dot, kBr, p.dout + (s0 + q0) * ldq + h * D, ldq, nq, D, 1.0f);
  for (int64_t r = 0; r < kBr; ++r) {
    L[r] = r < nq ? p.lse_in[h * p.T + s0 + q0 + r] * kLog2e : 0.0f;
    dl[r] = r < nq ? p.delta[h * p.T + s0 + q0 + r] : 0.0f;
  }
  zero(dqa, kBr * Dp);
  const float* kb = p.k + s0 * ldk + g * D;
  const float* vb = p.v + s0 * ldk + g * D;
  const VT sc = V::set1(p.scale);
  const int64_t nkt = p.causal ? (q0 + nq - 1) / kBc + 1 : (len + kBc - 1) / kBc;
  for (int64_t j = 0; j < nkt; ++j) {
    const int64_t k0 = j * kBc, nk = imin(kBc, len - k0);
    gemm<false>(st, kBr, kb + k0 * ldk, ldk, 1, qt, kBr, nk, kBr, D);    // S^T = K Q^T
    gemm<false>(dpt, kBr, vb + k0 * ldk, ldk, 1, dot, kBr, nk, kBr, D);  // dP^T = V dO^T
    for (int64_t c = 0; c < nk; ++c)
      for (int64_t r = 0; r < kBr; r += W) {
        VT pv = V::exp2(V::sub(V::load(st + c * kBr + r), V::load(L + r)));
        VT ds = V::mul(V::mul(pv, V::sub(V::load(dpt + c * kBr + r), V::load(dl + r))), sc);
        V::store(dpt + c * kBr + r, ds);
      }
    if (p.causal && k0 + nk - 1 > q0)
      for (int64_t c = 0; c < nk; ++c)
        for (int64_t r = 0; r < imin(kBr, k0 + c - q0); ++r) dpt[c * kBr + r] = 0.0f;
    gemm<true>(dqa, Dp, dpt, 1, kBr, kb + k0 * ldk, ldk, nq, D, nk);  // dQ += dS K
  }
  for (int64_t r = 0; r < nq; ++r) {
    float* dq = p.dq + (s0 + q0 + r) * ldq + h * D;
    for (int64_t d = 0; d < D; ++d) dq[d] = dqa[r * Dp + d];
  }
}

void backward_q(const Args& p, const Task* tasks, int64_t n) {
  run_tasks(tasks, n, [&](const Task& t) {
    const int64_t s0 = p.cu[t.seq], len = p.cu[t.seq + 1] - s0;
    backward_q_tile(p, s0, len, t.head, t.tile);
  });
}

}  // namespace PG_ATTN_ISA
}  // namespace attn
}  // namespace pg
#endif  // PG_ATTN_ISA
