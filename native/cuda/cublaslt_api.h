// Our own declarations of the few cuBLASLt C entry points, enums and handle types that gemm.cu
// calls. The library is opened at run time (cuda_host.h: dlopen of libcublasLt.so.13 / .12), so
// neither cublasLt.h nor libcublasLt is needed to build, and the binary loads without them.
// The values are those of cublasLt.h / cublas_api.h (a stable C ABI since CUDA 11).
#pragma once
#include <cuda_runtime.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>

namespace pg::cuda::lt {

using Status = int;  // cublasStatus_t; 0 is CUBLAS_STATUS_SUCCESS
constexpr Status kSuccess = 0;

struct Context;
using Handle = Context*;              // cublasLtHandle_t
struct MatmulDescOpaque;
using MatmulDesc = MatmulDescOpaque*;  // cublasLtMatmulDesc_t
struct LayoutOpaque;
using Layout = LayoutOpaque*;          // cublasLtMatrixLayout_t
struct PreferenceOpaque;
using Preference = PreferenceOpaque*;  // cublasLtMatmulPreference_t

struct Algo {  // cublasLtMatmulAlgo_t
  uint64_t data[8];
};
struct HeuristicResult {  // cublasLtMatmulHeuristicResult_t
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// cublasComputeType_t
constexpr int kCompute32F = 68;
// cublasOperation_t
constexpr int32_t kOpN = 0, kOpT = 1;
// cublasLtMatmulDescAttributes_t
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
// cublasLtMatrixLayoutAttribute_t
constexpr int kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
// cublasLtMatmulPreferenceAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1, kPrefMinAlignA = 5, kPrefMinAlignB = 6, kPrefMinAlignC = 7,
              kPrefMinAlignD = 8;
// cublasLtEpilogue_t
constexpr uint32_t kEpilogueDefault = 1, kEpilogueRelu = 2, kEpilogueBias = 4, kEpilogueReluBias = 6,
                   kEpilogueGelu = 32, kEpilogueGeluBias = 36;

using CreateFn = Status (*)(Handle*);
using DestroyFn = Status (*)(Handle);
using GetVersionFn = size_t (*)();
using DescCreateFn = Status (*)(MatmulDesc*, int /*cublasComputeType_t*/, cudaDataType_t /*scale type*/);
using DescDestroyFn = Status (*)(MatmulDesc);
using DescSetFn = Status (*)(MatmulDesc, int, const void*, size_t);
using LayoutCreateFn = Status (*)(Layout*, cudaDataType_t, uint64_t rows, uint64_t cols, int64_t ld);
using LayoutDestroyFn = Status (*)(Layout);
using LayoutSetFn = Status (*)(Layout, int, const void*, size_t);
using PrefCreateFn = Status (*)(Preference*);
using PrefDestroyFn = Status (*)(Preference);
using PrefSetFn = Status (*)(Preference, int, const void*, size_t);
using HeuristicFn = Status (*)(Handle, MatmulDesc, Layout A, Layout B, Layout C, Layout D, Preference, int requested,
                               HeuristicResult* results, int* returned);
using MatmulFn = Status (*)(Handle, MatmulDesc, const void* alpha, const void* A, Layout, const void* B, Layout,
                            const void* beta, const void* C, Layout, void* D, Layout, const Algo*, void* workspace,
                            size_t workspace_bytes, cudaStream_t);

}  // namespace pg::cuda::lt
