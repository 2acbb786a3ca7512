// Bindings of native/cpu/attention.cpp (f32) and of the CUDA 16-bit attention (bf16/f16, with a CPU
// reference twin). Every size, the head grouping and cu_seqlens itself are checked, so the
// kernels can trust them (they index k/v rows through cu_seqlens): here on the CPU, on the device
// on CUDA (cuda_index_check.h: no read-back; a bad value is reported at the next sync point).
#include <cmath>
#include <string>
#include <vector>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"
#include "patentgpt/workspace.h"
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_attention.h"
#include "patentgpt/cuda_index_check.h"
#endif

namespace pgnode {

namespace {

struct Dims {
  int64_t nseq, T, H, Hkv, D;
  float scale;
  bool causal;
};

// Reads (nseq, T, H, Hkv, D, scale, causal) starting at argument i, and checks cu_seqlens (at
// argument cu) against them: starts at 0, never decreases, ends at T. *cu_out is the tensor. On
// the CPU the values are checked here; on CUDA the caller enqueues the same check on the device
// (CheckOnDevice) right before its kernels, so nothing is read back.
Dims ReadDims(const Args& a, size_t i, size_t cu, const int32_t** cu_out) {
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
  if (OnCuda(a)) return d;
  const int32_t* c = *cu_out;
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

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
// cu_seqlens checked on the device, before the op's kernels (which halt if it fails).
void CheckOnDevice(const Args& a, const int32_t* cu, const Dims& d) {
  pg::cuda::check_cu_seqlens(a.signature().label, "cuSeqlens", cu, d.nseq, d.T);
}
#endif

// attentionForward(out, lse, q, k, v, cuSeqlens (each storage, offset), nseq, T, H, Hkv, D, scale, causal)
Napi::Value AttentionForward(const Napi::CallbackInfo& info, const Args& a) {
  const int32_t* cu = nullptr;
  Dims d = ReadDims(a, 12, 10, &cu);
  const int64_t nq = d.T * d.H * d.D, nkv = d.T * d.Hkv * d.D;
  float* out = a.Ptr<float>(0, "out", nq);
  float* lse = a.Ptr<float>(2, "lse", d.H * d.T);
  const float* q = a.Ptr<float>(4, "q", nq);
  const float* k = a.Ptr<float>(6, "k", nkv);
  const float* v = a.Ptr<float>(8, "v", nkv);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    CheckOnDevice(a, cu, d);
    pg::cuda::attention_forward(out, lse, q, k, v, cu, nullptr, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
    return info.Env().Undefined();
  }
#endif
  pg::attention_forward(out, lse, q, k, v, cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
  return info.Env().Undefined();
}

// attentionBackward(dq, dk, dv, delta, dout, out, lse, q, k, v, cuSeqlens (each storage, offset),
//                   nseq, T, H, Hkv, D, scale, causal)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int32_t* cu = nullptr;
  Dims d = ReadDims(a, 22, 20, &cu);
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
    CheckOnDevice(a, cu, d);
    pg::cuda::attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, cu, nullptr, d.nseq, d.T, d.H, d.Hkv,
                                 d.D, d.scale, d.causal);
    return info.Env().Undefined();
  }
#endif
  pg::attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale,
                         d.causal);
  return info.Env().Undefined();
}

// ---- 16-bit attention (bf16 or f16 q, k, v, out and gradients; f32 lse and delta): the CUDA
// kernels of cuda_attention.h (attention_forward_16 / attention_backward_16), which the model uses
// on 'cuda' at matmul precision bf16 or fp16. The CPU twin is a reference, not a fast path: it
// widens the 16-bit inputs to f32 exactly, runs the f32 kernel and rounds each output once (to
// nearest even), which is what the device computes up to summation order. It allocates f32 copies
// here, so the model's CPU attention stays f32 at every precision (attention.ts).

// Widens n 16-bit values to f32 (exact for both formats).
template <bool Bf16>
std::vector<float> Widen(const uint16_t* x, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  if (Bf16) pg::cast_bf16_to_f32(out.data(), x, n);
  else pg::cast_f16_to_f32(out.data(), x, n);
  return out;
}
template <bool Bf16>
void Narrow(uint16_t* out, const std::vector<float>& x) {
  if (Bf16) pg::cast_f32_to_bf16(out, x.data(), static_cast<int64_t>(x.size()));
  else pg::cast_f32_to_f16(out, x.data(), static_cast<int64_t>(x.size()));
}

// attentionForward{Bf16,F16}(out, lse, q, k, v, cuSeqlens (each storage, offset), nseq, T, H, Hkv, D, scale, causal)
template <bool Bf16>
Napi::Value AttentionForward16(const Napi::CallbackInfo& info, const Args& a) {
  const int32_t* cu = nullptr;
  Dims d = ReadDims(a, 12, 10, &cu);
  const int64_t nq = d.T * d.H * d.D, nkv = d.T * d.Hkv * d.D;
  uint16_t* out = a.Ptr<uint16_t>(0, "out", nq);
  float* lse = a.Ptr<float>(2, "lse", d.H * d.T);
  const uint16_t* q = a.Ptr<uint16_t>(4, "q", nq);
  const uint16_t* k = a.Ptr<uint16_t>(6, "k", nkv);
  const uint16_t* v = a.Ptr<uint16_t>(8, "v", nkv);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    CheckOnDevice(a, cu, d);
    pg::cuda::attention_forward_16(Bf16 ? pg::cuda::Half16::BF16 : pg::cuda::Half16::F16, out, lse, q, k, v, cu,
                                   nullptr, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
    return info.Env().Undefined();
  }
#endif
  std::vector<float> o(static_cast<size_t>(nq));
  const std::vector<float> qf = Widen<Bf16>(q, nq), kf = Widen<Bf16>(k, nkv), vf = Widen<Bf16>(v, nkv);
  pg::attention_forward(o.data(), lse, qf.data(), kf.data(), vf.data(), cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale,
                        d.causal);
  Narrow<Bf16>(out, o);
  return info.Env().Undefined();
}

// attentionBackward{Bf16,F16}(dq, dk, dv, delta, dout, out, lse, q, k, v, cuSeqlens (each storage,
//                              offset), nseq, T, H, Hkv, D, scale, causal)
template <bool Bf16>
Napi::Value AttentionBackward16(const Napi::CallbackInfo& info, const Args& a) {
  const int32_t* cu = nullptr;
  Dims d = ReadDims(a, 22, 20, &cu);
  const int64_t nq = d.T * d.H * d.D, nkv = d.T * d.Hkv * d.D;
  uint16_t* dq = a.Ptr<uint16_t>(0, "dq", nq);
  uint16_t* dk = a.Ptr<uint16_t>(2, "dk", nkv);
  uint16_t* dv = a.Ptr<uint16_t>(4, "dv", nkv);
  float* delta = a.Ptr<float>(6, "delta", d.H * d.T);
  const uint16_t* dout = a.Ptr<uint16_t>(8, "dout", nq);
  const uint16_t* out = a.Ptr<uint16_t>(10, "out", nq);
  const float* lse = a.Ptr<float>(12, "lse", d.H * d.T);
  const uint16_t* q = a.Ptr<uint16_t>(14, "q", nq);
  const uint16_t* k = a.Ptr<uint16_t>(16, "k", nkv);
  const uint16_t* v = a.Ptr<uint16_t>(18, "v", nkv);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    CheckOnDevice(a, cu, d);
    pg::cuda::attention_backward_16(Bf16 ? pg::cuda::Half16::BF16 : pg::cuda::Half16::F16, dq, dk, dv, delta, dout,
                                    out, lse, q, k, v, cu, nullptr, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
    return info.Env().Undefined();
  }
#endif
  std::vector<float> dqf(static_cast<size_t>(nq)), dkf(static_cast<size_t>(nkv)), dvf(static_cast<size_t>(nkv));
  const std::vector<float> gf = Widen<Bf16>(dout, nq), of = Widen<Bf16>(out, nq), qf = Widen<Bf16>(q, nq),
                           kf = Widen<Bf16>(k, nkv), vf = Widen<Bf16>(v, nkv);
  pg::attention_backward(dqf.data(), dkf.data(), dvf.data(), delta, gf.data(), of.data(), lse, qf.data(), kf.data(),
                         vf.data(), cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
  Narrow<Bf16>(dq, dqf);
  Narrow<Bf16>(dk, dkf);
  Narrow<Bf16>(dv, dvf);
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
    {DeclKind::Function, "attentionForwardBf16", "attention (bf16)",
     "out: bf16, lse: f32, q: bf16, k: bf16, v: bf16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionForward16<true>, /* cuda */ PG_CUDA(AttentionForward16<true>)},
    {DeclKind::Function, "attentionBackwardBf16", "attention backward (bf16)",
     "dq: bf16, dk: bf16, dv: bf16, delta: f32, dout: bf16, out: bf16, lse: f32, q: bf16, k: bf16, v: bf16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionBackward16<true>, /* cuda */ PG_CUDA(AttentionBackward16<true>)},
    {DeclKind::Function, "attentionForwardF16", "attention (f16)",
     "out: f16, lse: f32, q: f16, k: f16, v: f16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionForward16<false>, /* cuda */ PG_CUDA(AttentionForward16<false>)},
    {DeclKind::Function, "attentionBackwardF16", "attention backward (f16)",
     "dq: f16, dk: f16, dv: f16, delta: f32, dout: f16, out: f16, lse: f32, q: f16, k: f16, v: f16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionBackward16<false>, /* cuda */ PG_CUDA(AttentionBackward16<false>)},
};

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
