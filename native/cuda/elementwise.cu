// CUDA twin of native/cpu/elementwise.cpp: residual add, axpy, triad, scale, fill, casts,
// reductions to a number (f64, as on CPU), and the pointwise math with one broadcast pattern per
// operand (ops.h). Grid-stride loops of kElementwiseThreads; the op code is a kernel argument
// (one branch per element, uniform across the grid) to keep template instantiations few.
#include "common.cuh"

namespace pg::cuda {

namespace {

#define PG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

enum class Simple : int { Add, Axpy, Triad, Scale, Fill };

// out = a + b | y += alpha x | out = a + alpha b | x *= alpha | x = alpha.
__global__ void __launch_bounds__(kElementwiseThreads) simple_kernel(float* out, const float* a, const float* b,
                                                                     float alpha, int64_t n, Simple op) {
  PG_GRID_STRIDE(i, n) {
    switch (op) {
      case Simple::Add: out[i] = a[i] + b[i]; break;
      case Simple::Axpy: out[i] += alpha * a[i]; break;
      case Simple::Triad: out[i] = a[i] + alpha * b[i]; break;
      case Simple::Scale: out[i] *= alpha; break;
      case Simple::Fill: out[i] = alpha; break;
    }
  }
}

void simple(const char* name, float* out, const float* a, const float* b, float alpha, int64_t n, Simple op) {
  if (n <= 0) return;
  simple_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, a, b, alpha, n, op);
  check_launch(describe(name, {{"n", n}}));
}

// partial[block] = sum of x (or x^2) over the block's grid-stride share, in f64.
__global__ void __launch_bounds__(kElementwiseThreads) sum_partial_kernel(double* partial, const float* x, int64_t n,
                                                                          bool squares) {
  __shared__ double shared[32];
  double acc = 0;
  PG_GRID_STRIDE(i, n) {
    const double v = x[i];
    acc += squares ? v * v : v;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// out[0] = sum of partial (count), one block.
__global__ void __launch_bounds__(kElementwiseThreads) sum_final_kernel(double* out, const double* partial,
                                                                        int64_t count) {
  __shared__ double shared[32];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) out[0] = acc;
}

double reduce(const char* name, const float* x, int64_t n, bool squares) {
  if (n <= 0) return 0.0;
  const std::string what = describe(name, {{"n", n}});
  const unsigned blocks = blocks_for(n);
  Scratch partial((blocks + 1) * sizeof(double), what);
  sum_partial_kernel<<<blocks, kElementwiseThreads, 0, st()>>>(partial.as<double>() + 1, x, n, squares);
  sum_final_kernel<<<1, kElementwiseThreads, 0, st()>>>(partial.as<double>(), partial.as<double>() + 1, blocks);
  check_launch(what);
  double total = 0;
  read_back(&total, partial.as<double>(), sizeof total, what);
  return total;
}

// ---- casts: the bit-exact conversions of the CPU kernels ----
__device__ inline uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}
__device__ inline float bf16_to_f32(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
__device__ inline uint16_t f32_to_f16(float f) {
  const uint32_t x = __float_as_uint(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    const float shifted = __fadd_rn(__uint_as_float(abs), 0.5f);  // the add rounds to nearest even
    return static_cast<uint16_t>(sign | (__float_as_uint(shifted) - 0x3f000000u));
  }
  const uint32_t mant_odd = (abs >> 13) & 1u;
  abs += 0xc8000fffu + mant_odd;
  return static_cast<uint16_t>(sign | (abs >> 13));
}
__device__ inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13);
  else if (exp != 0) bits = sign | ((exp + 112) << 23) | (mant << 13);
  else if (mant == 0) bits = sign;
  else bits = __float_as_uint(static_cast<float>(mant) * 5.9604644775390625e-8f) | sign;
  return __uint_as_float(bits);
}

enum class Cast : int { F32ToBf16, Bf16ToF32, F32ToF16, F16ToF32 };

__global__ void __launch_bounds__(kElementwiseThreads) cast_kernel(void* out, const void* x, int64_t n, Cast kind) {
  PG_GRID_STRIDE(i, n) {
    switch (kind) {
      case Cast::F32ToBf16: static_cast<uint16_t*>(out)[i] = f32_to_bf16(static_cast<const float*>(x)[i]); break;
      case Cast::Bf16ToF32: static_cast<float*>(out)[i] = bf16_to_f32(static_cast<const uint16_t*>(x)[i]); break;
      case Cast::F32ToF16: static_cast<uint16_t*>(out)[i] = f32_to_f16(static_cast<const float*>(x)[i]); break;
      case Cast::F16ToF32: static_cast<float*>(out)[i] = f16_to_f32(static_cast<const uint16_t*>(x)[i]); break;
    }
  }
}

void cast(const char* name, void* out, const void* x, int64_t n, Cast kind) {
  if (n <= 0) return;
  cast_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, x, n, kind);
  check_launch(describe(name, {{"n", n}}));
}

// ---- pointwise math (ops.h: an operand reads x[(i / inner) % size]) ----
struct Pattern {
  int64_t size, inner;
};
__device__ inline int64_t at(int64_t i, Pattern p) { return (i / p.inner) % p.size; }

__device__ inline float binary(float a, float b, BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Minimum: return (a != a || b != b) ? a + b : (a < b ? a : b);  // NaN propagates
    case BinaryOp::Maximum: return (a != a || b != b) ? a + b : (a > b ? a : b);
  }
  return 0.0f;
}

__global__ void __launch_bounds__(kElementwiseThreads) binary_forward_kernel(float* out, const float* a, const float* b,
                                                                             int64_t n, Pattern pa, Pattern pb,
                                                                             BinaryOp op) {
  PG_GRID_STRIDE(i, n) out[i] = binary(a[at(i, pa)], b[at(i, pb)], op);
}

__global__ void __launch_bounds__(kElementwiseThreads) binary_backward_kernel(float* da, float* db, const float* dout,
                                                                              const float* a, const float* b,
                                                                              int64_t n, Pattern pa, Pattern pb,
                                                                              BinaryOp op) {
  PG_GRID_STRIDE(i, n) {
    const float g = dout[i], x = a[at(i, pa)], y = b[at(i, pb)];
    float ga = 0.0f, gb = 0.0f;
    switch (op) {
      case BinaryOp::Add: ga = g, gb = g; break;
      case BinaryOp::Sub: ga = g, gb = -g; break;
      case BinaryOp::Mul: ga = g * y, gb = g * x; break;
      case BinaryOp::Div: ga = g / y, gb = -g * x / (y * y); break;
      case BinaryOp::Minimum:
      case BinaryOp::Maximum: {
        const bool a_wins = op == BinaryOp::Minimum ? x < y : x > y;
        const bool b_wins = op == BinaryOp::Minimum ? y < x : y > x;
        ga = a_wins ? g : b_wins ? 0.0f : 0.5f * g;
        gb = b_wins ? g : a_wins ? 0.0f : 0.5f * g;
        break;
      }
    }
    if (da) da[i] = ga;
    if (db) db[i] = gb;
  }
}

// out[k] = sum over (o, j) of x[(o * size + k) * inner + j], one block per k, f64 accumulation.
__global__ void __launch_bounds__(kRowThreads) sum_broadcast_kernel(float* out, const float* x, int64_t outer,
                                                                    int64_t size, int64_t inner) {
  __shared__ double shared[32];
  const int64_t k = blockIdx.x;
  double acc = 0;
  const int64_t count = outer * inner;
  for (int64_t t = threadIdx.x; t < count; t += blockDim.x) {
    const int64_t o = t / inner, j = t - o * inner;
    acc += x[(o * size + k) * inner + j];
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) out[k] = static_cast<float>(acc);
}

__device__ inline float sigmoid(float x) {
  if (x >= 0) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

__global__ void __launch_bounds__(kElementwiseThreads) unary_forward_kernel(float* out, const float* x, int64_t n,
                                                                            UnaryOp op, float lo, float hi) {
  PG_GRID_STRIDE(i, n) {
    const float v = x[i];
    float r = 0.0f;
    switch (op) {
      case UnaryOp::Neg: r = -v; break;
      case UnaryOp::Exp: r = expf(v); break;
      case UnaryOp::Log: r = logf(v); break;
      case UnaryOp::Sigmoid: r = sigmoid(v); break;
      case UnaryOp::LogSigmoid: r = fminf(v, 0.0f) - log1pf(expf(-fabsf(v))); break;
      case UnaryOp::Clamp: r = v != v ? v : fminf(fmaxf(v, lo), hi); break;
    }
    out[i] = r;
  }
}

__global__ void __launch_bounds__(kElementwiseThreads) unary_backward_kernel(float* dx, const float* dout,
                                                                             const float* x, const float* out,
                                                                             int64_t n, UnaryOp op, float lo,
                                                                             float hi) {
  PG_GRID_STRIDE(i, n) {
    const float g = dout[i];
    float r = 0.0f;
    switch (op) {
      case UnaryOp::Neg: r = -g; break;
      case UnaryOp::Exp: r = g * out[i]; break;
      case UnaryOp::Log: r = g / x[i]; break;
      case UnaryOp::Sigmoid: r = g * out[i] * (1.0f - out[i]); break;
      case UnaryOp::LogSigmoid: r = g * sigmoid(-x[i]); break;
      case UnaryOp::Clamp: r = (x[i] >= lo && x[i] <= hi) ? g : 0.0f; break;
    }
    dx[i] = r;
  }
}

__global__ void __launch_bounds__(kElementwiseThreads) where_forward_kernel(float* out, const int32_t* cond,
                                                                            const float* a, const float* b, int64_t n,
                                                                            Pattern pa, Pattern pb) {
  PG_GRID_STRIDE(i, n) out[i] = cond[i] != 0 ? a[at(i, pa)] : b[at(i, pb)];
}

__global__ void __launch_bounds__(kElementwiseThreads) where_backward_kernel(float* da, float* db, const float* dout,
                                                                             const int32_t* cond, int64_t n) {
  PG_GRID_STRIDE(i, n) {
    const bool c = cond[i] != 0;
    if (da) da[i] = c ? dout[i] : 0.0f;
    if (db) db[i] = c ? 0.0f : dout[i];
  }
}

}  // namespace

void add_forward(float* out, const float* a, const float* b, int64_t n) { simple("add", out, a, b, 0.0f, n, Simple::Add); }
void axpy(float* y, const float* x, float alpha, int64_t n) { simple("axpy", y, x, nullptr, alpha, n, Simple::Axpy); }
void triad(float* out, const float* a, const float* b, float alpha, int64_t n) {
  simple("triad", out, a, b, alpha, n, Simple::Triad);
}
void scale_inplace(float* x, float alpha, int64_t n) { simple("scale", x, nullptr, nullptr, alpha, n, Simple::Scale); }
void fill(float* x, float value, int64_t n) { simple("fill", x, nullptr, nullptr, value, n, Simple::Fill); }
double sum(const float* x, int64_t n) { return reduce("sum", x, n, false); }
double sum_squares(const float* x, int64_t n) { return reduce("sumSquares", x, n, true); }

void cast_f32_to_bf16(uint16_t* out, const float* x, int64_t n) { cast("cast f32 -> bf16", out, x, n, Cast::F32ToBf16); }
void cast_bf16_to_f32(float* out, const uint16_t* x, int64_t n) { cast("cast bf16 -> f32", out, x, n, Cast::Bf16ToF32); }
void cast_f32_to_f16(uint16_t* out, const float* x, int64_t n) { cast("cast f32 -> f16", out, x, n, Cast::F32ToF16); }
void cast_f16_to_f32(float* out, const uint16_t* x, int64_t n) { cast("cast f16 -> f32", out, x, n, Cast::F16ToF32); }

void binary_forward(float* out, const float* a, const float* b, int64_t n, int64_t a_size, int64_t a_inner,
                    int64_t b_size, int64_t b_inner, BinaryOp op) {
  if (n <= 0) return;
  binary_forward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, a, b, n, {a_size, a_inner},
                                                                         {b_size, b_inner}, op);
  check_launch(describe("binaryForward", {{"n", n}, {"op", static_cast<int64_t>(op)}}));
}

void binary_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n,
                     int64_t a_size, int64_t a_inner, int64_t b_size, int64_t b_inner, BinaryOp op) {
  if (n <= 0 || (!da && !db)) return;
  binary_backward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(da, db, dout, a, b, n, {a_size, a_inner},
                                                                          {b_size, b_inner}, op);
  check_launch(describe("binaryBackward", {{"n", n}, {"op", static_cast<int64_t>(op)}}));
}

void sum_broadcast(float* out, const float* x, int64_t n, int64_t size, int64_t inner) {
  if (n <= 0 || size <= 0) return;
  const int64_t outer = n / (size * inner);
  // One block per output element; a grid dimension holds 2^31 - 1 blocks, more than any operand here.
  sum_broadcast_kernel<<<static_cast<unsigned>(size), kRowThreads, 0, st()>>>(out, x, outer, size, inner);
  check_launch(describe("sumBroadcast", {{"n", n}, {"size", size}, {"inner", inner}}));
}

void unary_forward(float* out, const float* x, int64_t n, UnaryOp op, float lo, float hi) {
  if (n <= 0) return;
  unary_forward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, x, n, op, lo, hi);
  check_launch(describe("unaryForward", {{"n", n}, {"op", static_cast<int64_t>(op)}}));
}

void unary_backward(float* dx, const float* dout, const float* x, const float* out, int64_t n, UnaryOp op, float lo,
                    float hi) {
  if (n <= 0) return;
  unary_backward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(dx, dout, x, out, n, op, lo, hi);
  check_launch(describe("unaryBackward", {{"n", n}, {"op", static_cast<int64_t>(op)}}));
}

void where_forward(float* out, const int32_t* cond, const float* a, const float* b, int64_t n, int64_t a_size,
                   int64_t a_inner, int64_t b_size, int64_t b_inner) {
  if (n <= 0) return;
  where_forward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(out, cond, a, b, n, {a_size, a_inner},
                                                                        {b_size, b_inner});
  check_launch(describe("whereForward", {{"n", n}}));
}

void where_backward(float* da, float* db, const float* dout, const int32_t* cond, int64_t n) {
  if (n <= 0 || (!da && !db)) return;
  where_backward_kernel<<<blocks_for(n), kElementwiseThreads, 0, st()>>>(da, db, dout, cond, n);
  check_launch(describe("whereBackward", {{"n", n}}));
}

}  // namespace pg::cuda
