// CUDA twin of native/cpu/embedding.cpp: out (N, C) = table (V, C) rows at ids (N); backward
// adds dout rows into dtable (+=) with atomicAdd (the order of additions to a row shared by
// several positions may vary between runs). Ids live on the device, so the kernels check them
// against V and the launcher reports the first one out of range (an argument error).
#include "common.cuh"

namespace pg::cuda {

namespace {

__global__ void __launch_bounds__(kElementwiseThreads) embedding_forward_kernel(float* out, const int32_t* ids,
                                                                                const float* table, int64_t N,
                                                                                int64_t C, int64_t V,
                                                                                unsigned long long* bad) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i - n * C;
    const int32_t id = ids[n];
    if (id < 0 || id >= V) {
      if (c == 0) report_bad(bad, n);
      out[i] = 0.0f;
      continue;
    }
    out[i] = table[static_cast<int64_t>(id) * C + c];
  }
}

__global__ void __launch_bounds__(kElementwiseThreads) embedding_backward_kernel(float* dtable, const float* dout,
                                                                                 const int32_t* ids, int64_t N,
                                                                                 int64_t C, int64_t V,
                                                                                 unsigned long long* bad) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i - n * C;
    const int32_t id = ids[n];
    if (id < 0 || id >= V) {
      if (c == 0) report_bad(bad, n);
      continue;
    }
    atomicAdd(dtable + static_cast<int64_t>(id) * C + c, dout[i]);
  }
}

void id_error(IndexCheck& check, const int32_t* ids, int64_t V) {
  const int64_t bad = check.first_bad();
  if (bad < 0) return;
  throw Error("id " + std::to_string(check.value_at(ids, bad)) + " at position " + std::to_string(bad) +
                  " is outside [0, V = " + std::to_string(V) + ")",
              true);
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C, int64_t V) {
  if (N <= 0 || C <= 0) return;
  const std::string what = describe("embedding_forward", {{"N", N}, {"V", V}, {"C", C}});
  IndexCheck check(what);
  embedding_forward_kernel<<<blocks_for(N * C), kElementwiseThreads, 0, st()>>>(out, ids, table, N, C, V, check.flag());
  check_launch(what);
  id_error(check, ids, V);
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t C, int64_t V) {
  if (N <= 0 || C <= 0) return;
  const std::string what = describe("embedding_backward", {{"N", N}, {"V", V}, {"C", C}});
  IndexCheck check(what);
  embedding_backward_kernel<<<blocks_for(N * C), kElementwiseThreads, 0, st()>>>(dtable, dout, ids, N, C, V,
                                                                                  check.flag());
  check_launch(what);
  id_error(check, ids, V);
}

}  // namespace pg::cuda
