// Index tensors the bindings read on the host: on the CPU the tensor itself; on CUDA its values
// read back into a host vector (a copy that waits for the stream). Only the MoE GEMMs still do
// this on CUDA (their expert offsets size the launches); attention, paged attention and the other
// MoE ops check their indices on the device without a read-back (patentgpt/cuda_index_check.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "cuda_slot.h"
#include "errors.h"
#include "patentgpt/runtime.h"

namespace pgnode {

inline const int32_t* HostIndex(const Args& a, const int32_t* p, int64_t n, std::vector<int32_t>& keep,
                                const char* name) {
  if (!OnCuda(a) || n == 0) return p;
  keep.resize(static_cast<size_t>(n));
  std::string err;
  if (!pg::cuda_memcpy(keep.data(), p, static_cast<size_t>(n) * sizeof(int32_t), 1, err))
    // The copy is a sync point: an earlier call's failed device index check is reported here.
    a.Fail(DeviceErrorCode(err), std::string("reading ") + name + " back from the device: " + err);
  return keep.data();
}

}  // namespace pgnode
