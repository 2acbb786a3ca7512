// The cuda column of a binding's kernel table (signature.h). An op's binding body is shared by
// both devices: it checks the arguments, then calls PG_ON(a, kernel), the CPU kernel (ops.h) or
// its CUDA twin (cuda_ops.h, same signature) by the call's device. PG_CUDA(Body) puts the body in
// the cuda slot wrapped so that a cuda::Error (a launch or device failure, device memory
// exhausted, or an index found out of range on the device) becomes a JS error with a code and
// the op's label, never an abort. Without CUDA compiled in, the slot stays empty and calls on
// cuda tensors fail with E_NATIVE_DEVICE "no cuda kernel" (they cannot exist there anyway).
#pragma once
#include "args.h"
#include "errors.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_ops.h"

namespace pgnode {

template <Kernel Body>
Napi::Value CudaEntry(const Napi::CallbackInfo& info, const Args& a) {
  try {
    return Body(info, a);
  } catch (const pg::cuda::Error& e) {
    a.Fail(e.bad_argument ? kErrArg : DeviceErrorCode(e.what()), e.what());
  }
}

inline bool OnCuda(const Args& a) { return a.device() == Device::CUDA; }

}  // namespace pgnode

#define PG_ON(a, fn) (::pgnode::OnCuda(a) ? ::pg::cuda::fn : ::pg::fn)
#define PG_CUDA(Body) (&::pgnode::CudaEntry<Body>)
#else
namespace pgnode {
inline bool OnCuda(const Args&) { return false; }
}  // namespace pgnode
#define PG_ON(a, fn) (::pg::fn)
#define PG_CUDA(Body) nullptr
#endif

// The CUDA twin of a kernel as a constant (a template argument), the CPU kernel itself without CUDA.
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#define PG_CUDA_FN(fn) (::pg::cuda::fn)
#else
#define PG_CUDA_FN(fn) (::pg::fn)
#endif
