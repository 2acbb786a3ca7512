// Index tensors the bindings check on the host before a kernel trusts them (cu_seqlens, block
// tables, context lengths): on the CPU the tensor itself; on CUDA its values read back into a
// host vector (a copy that waits for the stream), so the same checks run on the same values.
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
    a.Fail(DeviceErrorCode(err), std::string("reading ") + name + " back from the device: " + err);
  return keep.data();
}

}  // namespace pgnode
