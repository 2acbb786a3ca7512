// The 16-bit element types of the kernels that take them (attention, the AdamW step over 16-bit
// parameters, the loss-scale check): values are f32 in registers and shared memory; to_f32 is
// exact, from_f32 rounds to nearest even. The host passes uint16_t bit patterns (Half16,
// cuda_ops.h); as<T> views them as the device type.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace pg::cuda {

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

template <typename T>
T* as(uint16_t* p) {
  return reinterpret_cast<T*>(p);
}
template <typename T>
const T* as(const uint16_t* p) {
  return reinterpret_cast<const T*>(p);
}

}  // namespace pg::cuda
