// Elementwise ops and reductions: residual add, accumulate, STREAM's triad, fill, scale, dtype
// casts, sums; pointwise math (binary ops with one broadcast pattern per operand, unary ops,
// where) forward and backward. All gradients here are activation gradients: written (=).
// Memory-bound loops: written plainly, vectorised by the compiler (PG_CLONES), split over the pool.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "half.h"
#include "simd.h"

namespace pg {

namespace {

PG_CLONES void add_range(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
PG_CLONES void axpy_range(float* y, const float* x, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
PG_CLONES void triad_range(float* out, const float* a, const float* b, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + alpha * b[i];
}
PG_CLONES void scale_range(float* x, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}
// Blocks of 256 summed in 16 f32 lanes (vectorisable, each lane adds 16 values), folded into
// f64: vector speed with error far below a plain f32 running sum.
template <bool kSquare>
inline double blocked_sum(const float* x, int64_t n) {
  double total = 0;
  int64_t i = 0;
  for (; i + 256 <= n; i += 256) {
    float lanes[16] = {};
    for (int64_t j = 0; j < 256; j += 16)
      for (int l = 0; l < 16; ++l) lanes[l] += kSquare ? x[i + j + l] * x[i + j + l] : x[i + j + l];
    double block = 0;
    for (int l = 0; l < 16; ++l) block += lanes[l];
    total += block;
  }
  for (; i < n; ++i) total += kSquare ? static_cast<double>(x[i]) * x[i] : x[i];
  return total;
}
PG_CLONES double sum_range(const float* x, int64_t n) { return blocked_sum<false>(x, n); }
PG_CLONES double sum_squares_range(const float* x, int64_t n) { return blocked_sum<true>(x, n); }

double parallel_sum(const float* x, int64_t n, double (*range)(const float*, int64_t)) {
  // Fixed chunking (independent of the thread count) keeps the result bit-identical
  // whatever num_threads() is.
  const int64_t chunk = kElementwiseGrain;
  int64_t nchunks = (n + chunk - 1) / chunk;
  if (nchunks <= 1) return range(x, n);
  std::vector<double> partial(static_cast<size_t>(nchunks));
  parallel_for(nchunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
      partial[c] = range(x + lo, hi - lo);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

using half::bf16_to_f32;
using half::f16_to_f32;
using half::f32_to_bf16;
using half::f32_to_f16;

template <typename Fn>
void parallel_elementwise(int64_t n, Fn fn) {
  parallel_for(n, kElementwiseGrain, [&](int64_t begin, int64_t end) { fn(begin, end); });
}

}  // namespace

void add_forward(float* out, const float* a, const float* b, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { add_range(out + s, a + s, b + s, e - s); });
}

void axpy(float* y, const float* x, float alpha, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { axpy_range(y + s, x + s, alpha, e - s); });
}

void triad(float* out, const float* a, const float* b, float alpha, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { triad_range(out + s, a + s, b + s, alpha, e - s); });
}

void scale_inplace(float* x, float alpha, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { scale_range(x + s, alpha, e - s); });
}

void fill(float* x, float value, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { std::fill(x + s, x + e, value); });
}

double sum(const float* x, int64_t n) { return parallel_sum(x, n, sum_range); }
double sum_squares(const float* x, int64_t n) { return parallel_sum(x, n, sum_squares_range); }

namespace {
// Range bodies of the casts, cloned per ISA so the compiler vectorises them (the bf16 rounding is
// branch-free but for NaN, which becomes a select): the bf16 matmul path casts every activation.
PG_CLONES void f32_to_bf16_range(uint16_t* out, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}
PG_CLONES void bf16_to_f32_range(float* out, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(x[i]);
}
PG_CLONES void f32_to_f16_range(uint16_t* out, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}
PG_CLONES void f16_to_f32_range(float* out, const uint16_t* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(x[i]);
}
}  // namespace

void cast_f32_to_bf16(uint16_t* out, const float* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { f32_to_bf16_range(out + s, x + s, e - s); });
}
void cast_bf16_to_f32(float* out, const uint16_t* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { bf16_to_f32_range(out + s, x + s, e - s); });
}
void cast_f32_to_f16(uint16_t* out, const float* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { f32_to_f16_range(out + s, x + s, e - s); });
}
void cast_f16_to_f32(float* out, const uint16_t* x, int64_t n) {
  parallel_elementwise(n, [&](int64_t s, int64_t e) { f16_to_f32_range(out + s, x + s, e - s); });
}

// ---- pointwise math with broadcasting ----

namespace {

// Walks an operand's broadcast index (i / inner) % size from element `begin` one step at a time,
// so the inner loops need no division.
struct Bcast {
  int64_t size, inner, pos, count;
  Bcast(int64_t size_, int64_t inner_, int64_t begin)
      : size(size_), inner(inner_), pos((begin / inner_) % size_), count(begin % inner_) {}
  inline int64_t next() {
    int64_t p = pos;
    if (++count == inner) {
      count = 0;
      if (++pos == size) pos = 0;
    }
    return p;
  }
};

template <BinaryOp op>
inline float apply(float a, float b) {
  if constexpr (op == BinaryOp::Add) return a + b;
  if constexpr (op == BinaryOp::Sub) return a - b;
  if constexpr (op == BinaryOp::Mul) return a * b;
  if constexpr (op == BinaryOp::Div) return a / b;
  if constexpr (op == BinaryOp::Minimum) return (a != a || b != b) ? a + b : (a < b ? a : b);  // NaN propagates
  if constexpr (op == BinaryOp::Maximum) return (a != a || b != b) ? a + b : (a > b ? a : b);
  return 0.0f;
}

template <BinaryOp op>
PG_CLONES void binary_same(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = apply<op>(a[i], b[i]);
}
// b a trailing-shape operand of size m (a full): the common bias / scale case, vectorised rows.
template <BinaryOp op>
PG_CLONES void binary_rows_b(float* out, const float* a, const float* b, int64_t rows, int64_t m) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < m; ++j) out[r * m + j] = apply<op>(a[r * m + j], b[j]);
}

template <BinaryOp op>
void binary_typed(float* out, const float* a, const float* b, int64_t n, int64_t as, int64_t ai, int64_t bs,
                  int64_t bi) {
  const bool a_full = as == n && ai == 1, b_full = bs == n && bi == 1;
  if (a_full && b_full) {
    parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) { binary_same<op>(out + s, a + s, b + s, e - s); });
    return;
  }
  if (a_full && bi == 1 && bs > 0 && n % bs == 0) {
    const int64_t rows = n / bs;
    parallel_for(rows, std::max<int64_t>(1, kElementwiseGrain / bs), [&](int64_t s, int64_t e) {
      binary_rows_b<op>(out + s * bs, a + s * bs, b, e - s, bs);
    });
    return;
  }
  parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
    Bcast ia(as, ai, s), ib(bs, bi, s);
    for (int64_t i = s; i < e; ++i) out[i] = apply<op>(a[ia.next()], b[ib.next()]);
  });
}

template <BinaryOp op>
void binary_backward_typed(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n,
                           int64_t as, int64_t ai, int64_t bs, int64_t bi) {
  parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
    Bcast ia(as, ai, s), ib(bs, bi, s);
    for (int64_t i = s; i < e; ++i) {
      const float g = dout[i], x = a[ia.next()], y = b[ib.next()];
      float ga = 0, gb = 0;
      if constexpr (op == BinaryOp::Add) ga = g, gb = g;
      if constexpr (op == BinaryOp::Sub) ga = g, gb = -g;
      if constexpr (op == BinaryOp::Mul) ga = g * y, gb = g * x;
      if constexpr (op == BinaryOp::Div) ga = g / y, gb = -g * x / (y * y);
      if constexpr (op == BinaryOp::Minimum || op == BinaryOp::Maximum) {
        const bool a_wins = op == BinaryOp::Minimum ? x < y : x > y;
        const bool b_wins = op == BinaryOp::Minimum ? y < x : y > x;
        ga = a_wins ? g : (b_wins ? 0.0f : 0.5f * g);
        gb = b_wins ? g : (a_wins ? 0.0f : 0.5f * g);
      }
      if (da) da[i] = ga;
      if (db) db[i] = gb;
    }
  });
}

template <typename Fn>
void with_binary_op(BinaryOp op, Fn fn) {
  switch (op) {
    case BinaryOp::Add: fn(std::integral_constant<BinaryOp, BinaryOp::Add>{}); break;
    case BinaryOp::Sub: fn(std::integral_constant<BinaryOp, BinaryOp::Sub>{}); break;
    case BinaryOp::Mul: fn(std::integral_constant<BinaryOp, BinaryOp::Mul>{}); break;
    case BinaryOp::Div: fn(std::integral_constant<BinaryOp, BinaryOp::Div>{}); break;
    case BinaryOp::Minimum: fn(std::integral_constant<BinaryOp, BinaryOp::Minimum>{}); break;
    case BinaryOp::Maximum: fn(std::integral_constant<BinaryOp, BinaryOp::Maximum>{}); break;
  }
}

inline float sigmoid(float x) {
  // Stable on both sides: exp of a non-positive number only.
  if (x >= 0) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}
inline float log_sigmoid(float x) { return std::min(x, 0.0f) - std::log1p(std::exp(-std::fabs(x))); }

template <UnaryOp op>
PG_CLONES void unary_range(float* out, const float* x, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if constexpr (op == UnaryOp::Neg) out[i] = -v;
    if constexpr (op == UnaryOp::Exp) out[i] = std::exp(v);
    if constexpr (op == UnaryOp::Log) out[i] = std::log(v);
    if constexpr (op == UnaryOp::Sigmoid) out[i] = sigmoid(v);
    if constexpr (op == UnaryOp::LogSigmoid) out[i] = log_sigmoid(v);
    if constexpr (op == UnaryOp::Clamp) out[i] = v != v ? v : std::min(std::max(v, lo), hi);
  }
}

template <UnaryOp op>
PG_CLONES void unary_backward_range(float* dx, const float* dout, const float* x, const float* out, int64_t n,
                                    float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = dout[i];
    if constexpr (op == UnaryOp::Neg) dx[i] = -g;
    if constexpr (op == UnaryOp::Exp) dx[i] = g * out[i];
    if constexpr (op == UnaryOp::Log) dx[i] = g / x[i];
    if constexpr (op == UnaryOp::Sigmoid) dx[i] = g * out[i] * (1.0f - out[i]);
    if constexpr (op == UnaryOp::LogSigmoid) dx[i] = g * sigmoid(-x[i]);
    if constexpr (op == UnaryOp::Clamp) dx[i] = (x[i] >= lo && x[i] <= hi) ? g : 0.0f;
  }
}

template <typename Fn>
void with_unary_op(UnaryOp op, Fn fn) {
  switch (op) {
    case UnaryOp::Neg: fn(std::integral_constant<UnaryOp, UnaryOp::Neg>{}); break;
    case UnaryOp::Exp: fn(std::integral_constant<UnaryOp, UnaryOp::Exp>{}); break;
    case UnaryOp::Log: fn(std::integral_constant<UnaryOp, UnaryOp::Log>{}); break;
    case UnaryOp::Sigmoid: fn(std::integral_constant<UnaryOp, UnaryOp::Sigmoid>{}); break;
    case UnaryOp::LogSigmoid: fn(std::integral_constant<UnaryOp, UnaryOp::LogSigmoid>{}); break;
    case UnaryOp::Clamp: fn(std::integral_constant<UnaryOp, UnaryOp::Clamp>{}); break;
  }
}

}  // namespace

void binary_forward(float* out, const float* a, const float* b, int64_t n, int64_t a_size, int64_t a_inner,
                    int64_t b_size, int64_t b_inner, BinaryOp op) {
  if (n == 0) return;
  with_binary_op(op, [&](auto k) { binary_typed<decltype(k)::value>(out, a, b, n, a_size, a_inner, b_size, b_inner); });
}

void binary_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n,
                     int64_t a_size, int64_t a_inner, int64_t b_size, int64_t b_inner, BinaryOp op) {
  if (n == 0 || (!da && !db)) return;
  with_binary_op(op, [&](auto k) {
    binary_backward_typed<decltype(k)::value>(da, db, dout, a, b, n, a_size, a_inner, b_size, b_inner);
  });
}

void sum_broadcast(float* out, const float* x, int64_t n, int64_t size, int64_t inner) {
  if (size == 0) return;
  if (size == 1) {  // a scalar operand: one f64 total, bit-identical whatever the thread count
    out[0] = static_cast<float>(sum(x, n));
    return;
  }
  const int64_t outer = n / (size * inner);
  // Each chunk owns out[k0, k1): no two threads write one element, and the order of additions
  // is fixed (deterministic).
  parallel_for(size, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, outer * inner)),
               [&](int64_t k0, int64_t k1) {
                 for (int64_t k = k0; k < k1; ++k) {
                   double acc = 0;
                   for (int64_t o = 0; o < outer; ++o) {
                     const float* row = x + (o * size + k) * inner;
                     for (int64_t j = 0; j < inner; ++j) acc += row[j];
                   }
                   out[k] = static_cast<float>(acc);
                 }
               });
}

void unary_forward(float* out, const float* x, int64_t n, UnaryOp op, float lo, float hi) {
  with_unary_op(op, [&](auto k) {
    parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
      unary_range<decltype(k)::value>(out + s, x + s, e - s, lo, hi);
    });
  });
}

void unary_backward(float* dx, const float* dout, const float* x, const float* out, int64_t n, UnaryOp op,
                    float lo, float hi) {
  with_unary_op(op, [&](auto k) {
    parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
      unary_backward_range<decltype(k)::value>(dx + s, dout + s, x ? x + s : nullptr, out ? out + s : nullptr,
                                               e - s, lo, hi);
    });
  });
}

void where_forward(float* out, const int32_t* cond, const float* a, const float* b, int64_t n, int64_t a_size,
                   int64_t a_inner, int64_t b_size, int64_t b_inner) {
  if (n == 0) return;
  parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
    Bcast ia(a_size, a_inner, s), ib(b_size, b_inner, s);
    for (int64_t i = s; i < e; ++i) {
      const float va = a[ia.next()], vb = b[ib.next()];
      out[i] = cond[i] != 0 ? va : vb;
    }
  });
}

void where_backward(float* da, float* db, const float* dout, const int32_t* cond, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      const bool c = cond[i] != 0;
      if (da) da[i] = c ? dout[i] : 0.0f;
      if (db) db[i] = c ? 0.0f : dout[i];
    }
  });
}

}  // namespace pg
