// Binding of native/cpu/text_stats.cpp: the filter statistics of a batch of UTF-8 documents.
#include <string>

#include "args.h"

namespace pg {
void text_stats(double* out, const uint8_t* text, const int64_t* offsets, int64_t N, int64_t analyze,
                const int32_t* ngrams, int m);
}  // namespace pg

namespace pgnode {

namespace {

constexpr int64_t kFixedStats = 15;

// textStats(out: Float64Array (N*(15+m)), text: Uint8Array, offsets: BigInt64Array (N+1), N,
//           analyze (UTF-16 units), ngrams: Int32Array (m*2: n, kind 0 top | 1 dup), m)
Napi::Value TextStats(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(3, "N"), analyze = a.Size(4, "analyze"), m = a.Size(6, "m");
  if (m > 64) a.Fail("at most 64 n-gram statistics, got " + std::to_string(m));
  double* out = TypedArg<double>(a, info[0], napi_float64_array, "out", "Float64Array", a.Mul(N, kFixedStats + m));
  const int64_t* off = TypedArg<int64_t>(a, info[2], napi_bigint64_array, "offsets", "BigInt64Array", N + 1);
  const int32_t* ngrams = TypedArg<int32_t>(a, info[5], napi_int32_array, "ngrams", "Int32Array", 2 * m);
  for (int64_t g = 0; g < m; g++)
    if (ngrams[2 * g] < 1 || ngrams[2 * g] > 20 || ngrams[2 * g + 1] < 0 || ngrams[2 * g + 1] > 1)
      a.Fail("ngrams[" + std::to_string(g) + "] must be n in [1, 20] and kind 0 or 1");
  const TextSpans text = TextArg(a, info[1], off, N);
  if (Overlap(out, a.Mul(N, kFixedStats + m), text.data, text.bytes)) a.Fail("out must not share memory with text");
  pg::text_stats(out, text.data, off, N, analyze, ngrams, static_cast<int>(m));
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "textStats", "textStats",
     "out: Float64Array, text: Uint8Array, offsets: BigInt64Array, N: size, analyze: size, ngrams: Int32Array, m: size",
     "void", /* cpu */ TextStats, /* cuda */ nullptr},
};

}  // namespace

void RegisterTextStats(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
