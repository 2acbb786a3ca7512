// Bindings of native/cpu/attention.cpp (f32) and of the CUDA 16-bit attention (bf16/f16, with a CPU
// reference twin). Every size, the head grouping and cu_seqlens itself are checked, so the
// kernels can trust them (they index k/v rows through cu_seqlens): here on the CPU, on the device
// on CUDA (cuda_index_check.h: no read-back; a bad value is reported at the next sync point).
#include <cmath>
#include <string>
#include <type_traits>
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

// The element type of q, k, v, the output and the gradients (lse and delta are f32 always). The
// 16-bit forms are the CUDA kernels of cuda_attention.h (attention_*_16), which the model uses on
// 'cuda' at matmul precision bf16 or fp16. Their CPU twin is a reference, not a fast path: it
// widens the inputs to f32 exactly, runs the f32 kernel and rounds each output once (to nearest
// even), which is what the device computes up to summation order; the model's CPU attention stays
// f32 at every precision (attention.ts).
enum class Elem { F32, Bf16, F16 };
template <Elem E>
using ElemT = std::conditional_t<E == Elem::F32, float, uint16_t>;

// What the CPU kernel reads: an f32 tensor itself, or a 16-bit one widened into `keep`.
template <Elem E>
const float* ReadF32(const ElemT<E>* x, int64_t n, std::vector<float>& keep) {
  if constexpr (E == Elem::F32) {
    return x;
  } else {
    keep.resize(static_cast<size_t>(n));
    if constexpr (E == Elem::Bf16) pg::cast_bf16_to_f32(keep.data(), x, n);
    else pg::cast_f16_to_f32(keep.data(), x, n);
    return keep.data();
  }
}
// Where the CPU kernel writes: an f32 tensor itself, or `keep`, which Store then rounds into it.
template <Elem E>
float* WriteF32(ElemT<E>* x, int64_t n, std::vector<float>& keep) {
  if constexpr (E == Elem::F32) {
    return x;
  } else {
    keep.resize(static_cast<size_t>(n));
    return keep.data();
  }
}
template <Elem E>
void Store(ElemT<E>* x, const std::vector<float>& keep) {
  if constexpr (E == Elem::Bf16) pg::cast_f32_to_bf16(x, keep.data(), static_cast<int64_t>(keep.size()));
  else if constexpr (E == Elem::F16) pg::cast_f32_to_f16(x, keep.data(), static_cast<int64_t>(keep.size()));
}

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
constexpr pg::cuda::Half16 Half(Elem e) { return e == Elem::Bf16 ? pg::cuda::Half16::BF16 : pg::cuda::Half16::F16; }
#endif

// attentionForward{,Bf16,F16}(out, lse, q, k, v, cuSeqlens (each storage, offset), nseq, T, H, Hkv, D, scale, causal)
template <Elem E>
Napi::Value AttentionForward(const Napi::CallbackInfo& info, const Args& a) {
  using T = ElemT<E>;
  const int32_t* cu = nullptr;
  Dims d = ReadDims(a, 12, 10, &cu);
  const int64_t nq = d.T * d.H * d.D, nkv = d.T * d.Hkv * d.D;
  T* out = a.Ptr<T>(0, "out", nq);
  float* lse = a.Ptr<float>(2, "lse", d.H * d.T);
  const T* q = a.Ptr<T>(4, "q", nq);
  const T* k = a.Ptr<T>(6, "k", nkv);
  const T* v = a.Ptr<T>(8, "v", nkv);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    CheckOnDevice(a, cu, d);
    if constexpr (E == Elem::F32)
      pg::cuda::attention_forward(out, lse, q, k, v, cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
    else
      pg::cuda::attention_forward_16(Half(E), out, lse, q, k, v, cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale,
                                     d.causal);
    return info.Env().Undefined();
  }
#endif
  std::vector<float> o, qf, kf, vf;
  pg::attention_forward(WriteF32<E>(out, nq, o), lse, ReadF32<E>(q, nq, qf), ReadF32<E>(k, nkv, kf),
                        ReadF32<E>(v, nkv, vf), cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale, d.causal);
  Store<E>(out, o);
  return info.Env().Undefined();
}

// attentionBackward{,Bf16,F16}(dq, dk, dv, delta, dout, out, lse, q, k, v, cuSeqlens (each storage,
//                              offset), nseq, T, H, Hkv, D, scale, causal)
template <Elem E>
Napi::Value AttentionBackward(const Napi::CallbackInfo& info, const Args& a) {
  using T = ElemT<E>;
  const int32_t* cu = nullptr;
  Dims d = ReadDims(a, 22, 20, &cu);
  const int64_t nq = d.T * d.H * d.D, nkv = d.T * d.Hkv * d.D;
  T* dq = a.Ptr<T>(0, "dq", nq);
  T* dk = a.Ptr<T>(2, "dk", nkv);
  T* dv = a.Ptr<T>(4, "dv", nkv);
  float* delta = a.Ptr<float>(6, "delta", d.H * d.T);
  const T* dout = a.Ptr<T>(8, "dout", nq);
  const T* out = a.Ptr<T>(10, "out", nq);
  const float* lse = a.Ptr<float>(12, "lse", d.H * d.T);
  const T* q = a.Ptr<T>(14, "q", nq);
  const T* k = a.Ptr<T>(16, "k", nkv);
  const T* v = a.Ptr<T>(18, "v", nkv);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    CheckOnDevice(a, cu, d);
    if constexpr (E == Elem::F32)
      pg::cuda::attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, cu, d.nseq, d.T, d.H, d.Hkv,
                                   d.D, d.scale, d.causal);
    else
      pg::cuda::attention_backward_16(Half(E), dq, dk, dv, delta, dout, out, lse, q, k, v, cu, d.nseq, d.T,
                                      d.H, d.Hkv, d.D, d.scale, d.causal);
    return info.Env().Undefined();
  }
#endif
  std::vector<float> dqf, dkf, dvf, gf, of, qf, kf, vf;
  pg::attention_backward(WriteF32<E>(dq, nq, dqf), WriteF32<E>(dk, nkv, dkf), WriteF32<E>(dv, nkv, dvf), delta,
                         ReadF32<E>(dout, nq, gf), ReadF32<E>(out, nq, of), lse, ReadF32<E>(q, nq, qf),
                         ReadF32<E>(k, nkv, kf), ReadF32<E>(v, nkv, vf), cu, d.nseq, d.T, d.H, d.Hkv, d.D, d.scale,
                         d.causal);
  Store<E>(dq, dqf);
  Store<E>(dk, dkf);
  Store<E>(dv, dvf);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "attentionForward", "attention",
     "out: f32, lse: f32, q: f32, k: f32, v: f32, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionForward<Elem::F32>, /* cuda */ PG_CUDA(AttentionForward<Elem::F32>)},
    {DeclKind::Function, "attentionBackward", "attention backward",
     "dq: f32, dk: f32, dv: f32, delta: f32, dout: f32, out: f32, lse: f32, q: f32, k: f32, v: f32, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionBackward<Elem::F32>, /* cuda */ PG_CUDA(AttentionBackward<Elem::F32>)},
    {DeclKind::Function, "attentionForwardBf16", "attention (bf16)",
     "out: bf16, lse: f32, q: bf16, k: bf16, v: bf16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionForward<Elem::Bf16>, /* cuda */ PG_CUDA(AttentionForward<Elem::Bf16>)},
    {DeclKind::Function, "attentionBackwardBf16", "attention backward (bf16)",
     "dq: bf16, dk: bf16, dv: bf16, delta: f32, dout: bf16, out: bf16, lse: f32, q: bf16, k: bf16, v: bf16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionBackward<Elem::Bf16>, /* cuda */ PG_CUDA(AttentionBackward<Elem::Bf16>)},
    {DeclKind::Function, "attentionForwardF16", "attention (f16)",
     "out: f16, lse: f32, q: f16, k: f16, v: f16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionForward<Elem::F16>, /* cuda */ PG_CUDA(AttentionForward<Elem::F16>)},
    {DeclKind::Function, "attentionBackwardF16", "attention backward (f16)",
     "dq: f16, dk: f16, dv: f16, delta: f32, dout: f16, out: f16, lse: f32, q: f16, k: f16, v: f16, cuSeqlens: i32, nseq: size, T: size, H: size, Hkv: size, D: size, scale: number, causal: boolean",
     "void", /* cpu */ AttentionBackward<Elem::F16>, /* cuda */ PG_CUDA(AttentionBackward<Elem::F16>)},
};

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
