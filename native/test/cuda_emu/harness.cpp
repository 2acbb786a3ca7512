// Device memory and the CUDA entry points outside the emulated kernels, for scripts/cuda-emulate.sh:
// the tests' cuda_alloc / cuda_memcpy / cuda_devices are renamed to these (-D), so "device"
// memory is host memory and one emulated device is present. No cuBLASLt: the MoE GEMMs take
// their tiled kernel.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "patentgpt/cuda_index_check.h"
#include "patentgpt/cuda_ops.h"
#include "patentgpt/runtime.h"
namespace pg {
void* emu_alloc(size_t bytes, std::string&) { return std::calloc(bytes ? bytes : 1, 1); }
void emu_free(void* p) { std::free(p); }
bool emu_memcpy(void* d, const void* s, size_t n, int, std::string&) { std::memcpy(d, s, n); return true; }
std::string emu_devices(std::vector<CudaDeviceInfo>& devices) {
  devices.clear();
  devices.push_back({0, "emulated", 9, 0, uint64_t{1} << 34});
  return "";
}
namespace cuda {
// As device.cu's: the stream is done (launches ran in place); a recorded index violation is thrown.
void synchronize(const char*) {
  const std::string v = take_index_violation();
  if (!v.empty()) throw Error(v, /*bad_argument=*/true);
}
std::string cublaslt_status() { return "emulated: no cuBLASLt"; }
void gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, int64_t, const float*, int64_t, int64_t,
          float, float*, int64_t, int64_t, int64_t) {
  throw Error("emulated: no cuBLASLt");
}
}  // namespace cuda
}  // namespace pg
