// Bindings of native/cpu/gemv.cpp and native/cpu/decode.cpp: the skinny product for a few rows
// and the fused decoder-layer pieces of the inference engine.
#include <string>

#include "args.h"
#include "patentgpt/gemv.h"

namespace pgnode {

namespace {

std::string S(int64_t v) { return std::to_string(v); }

// Writes (w, n floats) must not share bytes with any of the reads.
void NoOverlap(const Args& a, const char* what, const float* w, int64_t n,
               std::initializer_list<std::pair<const float*, int64_t>> reads) {
  for (const auto& r : reads)
    if (Overlap(w, n, r.first, r.second)) a.Fail(std::string(what) + " overlaps an input");
}

// gemv(y, yO, x, xO, w, wO, M, N, K, accumulate): y (M, N) (+)= x (M, K) @ w (N, K)^T, contiguous.
Napi::Value Gemv(const Napi::CallbackInfo& info) {
  Args a(info, "gemv", 10);
  const int64_t M = a.Size(6, "M"), N = a.Size(7, "N"), K = a.Size(8, "K");
  const bool accumulate = a.Bool(9, "accumulate");
  float* y = a.Ptr<float>(0, "y", a.Mul(M, N));
  const float* x = a.Ptr<float>(2, "x", a.Mul(M, K));
  const float* w = a.Ptr<float>(4, "w", a.Mul(N, K));
  NoOverlap(a, "y", y, M * N, {{x, M * K}, {w, N * K}});
  pg::gemv(y, N, x, K, w, K, M, N, K, accumulate);
  return info.Env().Undefined();
}

// decodeQkv(q, k, v, h, kCache, vCache, x, normW, wq, wk, wv, pos, slotMapping (each storage, offset),
//   M, C, H, Hkv, D, numBlocks, blockSize, eps, theta, posScale)
Napi::Value DecodeQkv(const Napi::CallbackInfo& info) {
  Args a(info, "decodeQkv", 36);
  const int64_t M = a.Size(26, "M"), C = a.Size(27, "C"), H = a.Size(28, "H"), Hkv = a.Size(29, "Hkv"),
                D = a.Size(30, "D"), numBlocks = a.Size(31, "numBlocks"), blockSize = a.Size(32, "blockSize");
  const double eps = a.Num(33, "eps"), theta = a.Num(34, "theta"), posScale = a.Num(35, "posScale");
  if (H < 1 || Hkv < 1 || D < 2 || D % 2 != 0 || blockSize < 1) a.Fail("H, Hkv, blockSize must be >= 1 and D even");
  if (!(eps > 0) || !(theta > 0) || !(posScale > 0)) a.Fail("eps, theta and posScale must be > 0");
  const int64_t nq = a.Mul(a.Mul(M, H), D), nkv = a.Mul(a.Mul(M, Hkv), D), nx = a.Mul(M, C);
  const int64_t slots = a.Mul(numBlocks, blockSize), cacheSize = a.Mul(a.Mul(slots, Hkv), D);
  float* q = a.Ptr<float>(0, "q", nq);
  float* k = a.Ptr<float>(2, "k", nkv);
  float* v = a.Ptr<float>(4, "v", nkv);
  float* h = a.Ptr<float>(6, "h", nx);
  float* kc = a.Ptr<float>(8, "kCache", cacheSize);
  float* vc = a.Ptr<float>(10, "vCache", cacheSize);
  const float* x = a.Ptr<float>(12, "x", nx);
  const float* nw = a.Ptr<float>(14, "normW", C);
  const float* wq = a.Ptr<float>(16, "wq", a.Mul(H * D, C));
  const float* wk = a.Ptr<float>(18, "wk", a.Mul(Hkv * D, C));
  const float* wv = a.Ptr<float>(20, "wv", a.Mul(Hkv * D, C));
  const int32_t* pos = a.Ptr<int32_t>(22, "pos", M);
  const int32_t* slot = a.Ptr<int32_t>(24, "slotMapping", M);
  const std::pair<const float*, int64_t> reads[] = {{x, nx}, {nw, C}, {wq, H * D * C}, {wk, Hkv * D * C},
                                                     {wv, Hkv * D * C}};
  const std::pair<float*, int64_t> writes[] = {{q, nq}, {k, nkv}, {v, nkv}, {h, nx}, {kc, cacheSize}, {vc, cacheSize}};
  for (size_t i = 0; i < 6; ++i) {
    for (const auto& r : reads)
      if (Overlap(writes[i].first, writes[i].second, r.first, r.second)) a.Fail("an output overlaps an input");
    for (size_t j = i + 1; j < 6; ++j)
      if (Overlap(writes[i].first, writes[i].second, writes[j].first, writes[j].second)) a.Fail("two outputs overlap");
    if (Overlap(writes[i].first, writes[i].second, pos, M) || Overlap(writes[i].first, writes[i].second, slot, M))
      a.Fail("an output overlaps pos or slotMapping");
  }
  for (int64_t t = 0; t < M; ++t) {
    if (slot[t] >= slots || slot[t] < -1)
      a.Fail("slotMapping[" + S(t) + "] = " + S(slot[t]) + " is outside [-1, " + S(slots) + ") (numBlocks * blockSize)");
    if (pos[t] < 0) a.Fail("pos[" + S(t) + "] = " + S(pos[t]) + " is negative");
  }
  pg::decode_qkv(q, k, v, h, kc, vc, x, nw, static_cast<float>(eps), wq, wk, wv, pos, slot, M, C, H, Hkv, D,
                 static_cast<float>(theta), static_cast<float>(posScale));
  return info.Env().Undefined();
}

// decodeSwigluMlp(x, h, g, u, normW, wg, wu, wd (each storage, offset), M, C, F, eps)
Napi::Value DecodeSwigluMlp(const Napi::CallbackInfo& info) {
  Args a(info, "decodeSwigluMlp", 20);
  const int64_t M = a.Size(16, "M"), C = a.Size(17, "C"), F = a.Size(18, "F");
  const double eps = a.Num(19, "eps");
  if (!(eps > 0)) a.Fail("eps must be > 0");
  const int64_t nx = a.Mul(M, C), nf = a.Mul(M, F), nw = a.Mul(F, C);
  float* x = a.Ptr<float>(0, "x", nx);
  float* h = a.Ptr<float>(2, "h", nx);
  float* g = a.Ptr<float>(4, "g", nf);
  float* u = a.Ptr<float>(6, "u", nf);
  const float* normW = a.Ptr<float>(8, "normW", C);
  const float* wg = a.Ptr<float>(10, "wg", nw);
  const float* wu = a.Ptr<float>(12, "wu", nw);
  const float* wd = a.Ptr<float>(14, "wd", nw);
  const std::pair<float*, int64_t> writes[] = {{x, nx}, {h, nx}, {g, nf}, {u, nf}};
  for (size_t i = 0; i < 4; ++i) {
    NoOverlap(a, "an output", writes[i].first, writes[i].second, {{normW, C}, {wg, nw}, {wu, nw}, {wd, nw}});
    for (size_t j = i + 1; j < 4; ++j)
      if (Overlap(writes[i].first, writes[i].second, writes[j].first, writes[j].second)) a.Fail("two outputs overlap");
  }
  pg::decode_swiglu_mlp(x, h, g, u, normW, static_cast<float>(eps), wg, wu, wd, M, C, F);
  return info.Env().Undefined();
}

}  // namespace

void RegisterGemv(Napi::Env env, Napi::Object exports) {
  exports.Set("gemv", Napi::Function::New(env, Gemv, "gemv"));
  exports.Set("decodeQkv", Napi::Function::New(env, DecodeQkv, "decodeQkv"));
  exports.Set("decodeSwigluMlp", Napi::Function::New(env, DecodeSwigluMlp, "decodeSwigluMlp"));
}

}  // namespace pgnode
