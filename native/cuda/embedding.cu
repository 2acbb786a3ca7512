// CUDA twin of native/cpu/embedding.cpp: out (N, C) = table (V, C) rows at ids (N); backward
// adds dout rows into dtable (+=) with atomicAdd (the order of additions to a row shared by
// several positions may vary between runs). Ids live on the device, so the kernels check them
// against V and the launcher reports the first one out of range (an argument error).
#include "common.cuh"

namespace pg::cuda {

namespace {

// Grid-stride over the N x C elements of the rows at ids: in_range(i, t) where ids[n] is in [0, V)
// (t: the element's index in the table), else out_of_range(i), the row's position reported once.
template <typename InRange, typename OutOfRange>
__device__ __forceinline__ void for_each_id(const int32_t* ids, int64_t N, int64_t C, int64_t V,
                                            unsigned long long* bad, InRange in_range, OutOfRange out_of_range) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i - n * C;
    const int32_t id = ids[n];
    if (id < 0 || id >= V) {
      if (c == 0) report_bad(bad, n);
      out_of_range(i);
      continue;
    }
    in_range(i, static_cast<int64_t>(id) * C + c);
  }
}

__global__ void __launch_bounds__(kElementwiseThreads) embedding_forward_kernel(float* out, const int32_t* ids,
                                                                                const float* table, int64_t N,
                                                                                int64_t C, int64_t V,
                                                                                unsigned long long* bad) {
  for_each_id(
      ids, N, C, V, bad, [&](int64_t i, int64_t t) { out[i] = table[t]; }, [&](int64_t i) { out[i] = 0.0f; });
}

__global__ void __launch_bounds__(kElementwiseThreads) embedding_backward_kernel(float* dtable, const float* dout,
                                                                                 const int32_t* ids, int64_t N,
                                                                                 int64_t C, int64_t V,
                                                                                 unsigned long long* bad) {
  for_each_id(
      ids, N, C, V, bad, [&](int64_t i, int64_t t) { atomicAdd(dtable + t, dout[i]); }, [](int64_t) {});
}

void id_error(IndexCheck& check, const int32_t* ids, int64_t V) {
  const int64_t bad = check.first_bad();
  if (bad < 0) return;
  throw Error("id " + std::to_string(check.value_at(ids, bad)) + " at position " + std::to_string(bad) +
                  " is outside [0, V = " + std::to_string(V) + ")",
              true);
}

// Runs launch(flag) under an id check named for the op and its sizes; throws on the first id out of range.
template <typename Launch>
void with_id_check(const char* name, const int32_t* ids, int64_t N, int64_t C, int64_t V, Launch launch) {
  if (N <= 0 || C <= 0) return;
  const std::string what = describe(name, {{"N", N}, {"V", V}, {"C", C}});
  IndexCheck check(what);
  launch(check.flag());
  check_launch(what);
  id_error(check, ids, V);
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C, int64_t V) {
  with_id_check("embedding_forward", ids, N, C, V, [&](unsigned long long* bad) {
    embedding_forward_kernel<<<blocks_for(N * C), kElementwiseThreads, 0, st()>>>(out, ids, table, N, C, V, bad);
  });
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t C, int64_t V) {
  with_id_check("embedding_backward", ids, N, C, V, [&](unsigned long long* bad) {
    embedding_backward_kernel<<<blocks_for(N * C), kElementwiseThreads, 0, st()>>>(dtable, dout, ids, N, C, V, bad);
  });
}

}  // namespace pg::cuda
