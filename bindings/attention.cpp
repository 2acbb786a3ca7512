// Bindings of native/cpu/attention.cpp. Every size, the head grouping and cu_seqlens itself are
// checked here, so the kernels can trust them (they index k/v rows through cu_seqlens).
#include <cmath>
#include <string>
#include <vector>

#include "args.h"
#include "cuda_index.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"
#include "patentgpt/workspace.h"
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_attention.h"
#endif

namespace pgnode {

namespace {

struct Dims {
  int64_t nseq, T, H, Hkv, D;
  float scale;
  bool causal;
};

// Reads (nseq, T, H, Hkv, D, scale, causal) starting at argument i, and checks cu_seqlens (at
// argument cu) against them: starts at 0, never decreases, ends at T. *cu_out is the tensor,
// *cu_host its values on the host (a copy in `keep` on CUDA).
Dims ReadDims(const Args& a, size_t i, size_t cu, const int32_t** cu_out, const int32_t** cu_host,
              std::vector<int32_t>& keep) {
  Dims d{a.Size(i, "nseq"), a.Size(i + 1, "T"), a.Size(i + 2, "H"), a.Size(i + 3, "Hkv"), a.Size(i + 4, "D"), 0, false};
  const double scale = a.Num(i + 5, "scale");
  d.causal = a.Bool(i + 6, "causal");
  if (d.H < 1 || d.Hkv < 1 || d.D < 1) a.Fail("H, Hkv and D must be >= 1");
  // The tile scratch in each thread's workspace is reserved for head dims up to kMaxHeadDim.
  if (d.D > pg::kMaxHeadDim)
    a.Fail("D (head dim) must be at most " + std::to_string(pg::kMaxHeadDim) + ", got " + std::to_string(d.D));
  if (d.H % d.Hkv != 0)
    a.Fail("H (" + std::to_string(d.H) + ") must be a multiple of Hkv (" + std::to_string(d.Hkv) + ")");
  if (d.T > 0x7fffffff) a.Fail("T must fit in int32 (cu_seqlens are int32)");
  if (!std::isfinite(scale) || !std::isfinite(static_cast<float>(scale))) a.Fail("scale must be finite");
  d.scale = static_cast<float>(scale);
  a.Mul(a.Mul(d.T, d.H), d.D);  // overflow checks before any pointer is sized
  *cu_out = a.Ptr<int32_t>(cu, "cuSeqlens", d.nseq + 1);
  const int32_t* c = *cu_host = HostIndex(a, *cu_out, d.nseq + 1, keep, "cuSeqlens");
  if (c[0] != 0) a.Fail("cuSeqlens[0] must be 0, got " + std::to_string(c[0]));
  for (int64_t s = 0; s < d.nseq; ++s)
    if (c[s + 1] < c[s])
      a.Fail("cuSeqlens must not decrease: cuSeqlens[" + std::to_string(s + 1) + "] = " + std::to_string(c[s + 1]) +
             " < " + std::to_string(c[s]));
  if (c[d.nseq] != d.T)
    a.Fail("cuSeqlens[" + std::to_string(d.nseq) + "] = " + std::to_string(c[d.nseq]) + " must equal T = " +
           std::to_string(d.T));
  return d;
}

// attentionForward(out, lse, q, k, v, cuSeqlens (each storage, offset), nseq, T, H, Hkv, D, scale, causal)
Napi::Value AttentionForward(const Napi::CallbackInfo& info, const Args& a) {
  const int32_t *cu = nullptr, *cu_host = nullptr;
  std::vector<int32_t> keep;
  Dims d = ReadDims(a, 12, 10, &cu, &cu_host, keep);
  const int64_t nq = d.T * d.H * d.D, nkv = d.T * d.Hkv * d.D;
  float* out = a.Ptr<float>(0, "out", nq);
  float* lse = a.Ptr<float>(2, "lse", d.H * d.T);
  const float* q = a.Ptr<float>(4, "q", nq);
  const float* k = a.Ptr<float>(6, "k", nkv);
  const float* v = a.Ptr<float>(8, "v", nkv);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    pg::cuda::attention_forward(out, lse, q, k, v, cu, cu_host, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
    return info.Env().Undefined();
  }
#endif
  pg::attention_forward(out, lse, q, k, v, cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
  return info.Env().Undefined();
}

// attentionBackward(dq, dk, dv, delta, dout, out, lse, q, k, v, cuSeqlens (each storage, offset),
//                   nseq, T, H, Hkv, D, scale, causal)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int32_t *cu = nullptr, *cu_host = nullptr;
  std::vector<int32_t> keep;
  Dims d = ReadDims(a, 22, 20, &cu, &cu_host, keep);
  const int64_t nq = d.T * d.H * d.D, nkv = d.T * d.Hkv * d.D;
  float* dq = a.Ptr<float>(0, "dq", nq);
  float* dk = a.Ptr<float>(2, "dk", nkv);
  float* dv = a.Ptr<float>(4, "dv", nkv);
  float* delta = a.Ptr<float>(6, "delta", d.H * d.T);
  const float* dout = a.Ptr<float>(8, "dout", nq);
  const float* out = a.Ptr<float>(10, "out", nq);
  const float* lse = a.Ptr<float>(12, "lse", d.H * d.T);
  const float* q = a.Ptr<float>(14, "q", nq);
  const float* k = a.Ptr<float>(16, "k", nkv);
  const float* v = a.Ptr<float>(18, "v", nkv);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    pg::cuda::attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, cu, cu_host, d.nseq, d.T, d.H, d.Hkv,
                                 d.D, d.scale, d.causal);
    return info.Env().Undefined();
  }
#endif
  pg::attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale,
                         d.causal);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "attentionForward", "attention",
     "out: f32, lse: f32, q: f32, k: f32, v: f32, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionForward, /* cuda */ PG_CUDA(AttentionForward)},
    {DeclKind::Function, "attentionBackward", "attention backward",
     "dq: f32, dk: f32, dv: f32, delta: f32, dout: f32, out: f32, lse: f32, q: f32, k: f32, v: f32, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionBackward, /* cuda */ PG_CUDA(AttentionBackward)},
};

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
