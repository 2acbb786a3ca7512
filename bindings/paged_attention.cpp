// Bindings of native/cpu/paged_attention.cpp. Slot mappings, block tables, cu_q and context
// lengths are checked before any kernel runs (the kernels index the caches with them unchecked):
// here on the CPU; on CUDA by a check enqueued on the device (cuda_index_check.h), no read-back.
#include <cmath>
#include <string>
#include <vector>

#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/paged_attention.h"
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_index_check.h"
#include "patentgpt/cuda_paged_attention.h"
#endif

namespace pgnode {

namespace {

std::string S(int64_t v) { return std::to_string(v); }

}  // namespace

void CheckPagedIndex(const Args& a, const int32_t* cu, const int32_t* ctx, const int32_t* tables, int64_t nseq,
                     int64_t Tq, int64_t numBlocks, int64_t blockSize, int64_t maxBlocks, int64_t partitionSize,
                     int64_t maxPartitions) {
  if (cu[0] != 0) a.Fail("cuQ[0] must be 0, got " + S(cu[0]));
  if (cu[nseq] != Tq) a.Fail("cuQ[" + S(nseq) + "] = " + S(cu[nseq]) + " must equal Tq = " + S(Tq));
  for (int64_t s = 0; s < nseq; ++s) {
    const int64_t qlen = static_cast<int64_t>(cu[s + 1]) - cu[s];
    if (qlen < 0) a.Fail("cuQ must not decrease at index " + S(s + 1));
    const int64_t len = ctx[s];
    if (len < qlen) a.Fail("contextLens[" + S(s) + "] = " + S(len) + " is less than its " + S(qlen) + " query rows");
    if (len > a.Mul(maxBlocks, blockSize))
      a.Fail("contextLens[" + S(s) + "] = " + S(len) + " exceeds maxBlocks * blockSize = " + S(maxBlocks * blockSize));
    if ((len + partitionSize - 1) / partitionSize > maxPartitions)
      a.Fail("contextLens[" + S(s) + "] = " + S(len) + " needs more than maxPartitions = " + S(maxPartitions) +
             " partitions of " + S(partitionSize));
    if (qlen == 0) continue;
    for (int64_t b = 0; b < (len + blockSize - 1) / blockSize; ++b) {
      const int32_t blk = tables[s * maxBlocks + b];
      if (blk < 0 || blk >= numBlocks)
        a.Fail("blockTables[" + S(s) + "][" + S(b) + "] = " + S(blk) + " is outside [0, " + S(numBlocks) + ")");
    }
  }
}

pg::KvDType KvDTypeArg(const Napi::CallbackInfo& info, const Args& a) {
  const Signature& sig = a.signature();
  for (size_t p = 0; p < sig.params.size(); ++p) {
    if (sig.params[p].name != "kvDtype") continue;
    const size_t i = static_cast<size_t>(sig.slot_of_param[p]);
    if (info.Length() <= i || info[i].IsUndefined()) break;
    const std::string t = info[i].As<Napi::String>().Utf8Value();  // one of the declared three (Args checked)
    return t == "bf16" ? pg::KvDType::BF16 : t == "f16" ? pg::KvDType::F16 : pg::KvDType::F32;
  }
  return pg::KvDType::F32;
}

uint8_t* CacheArg(const Args& a, size_t i, const char* name, pg::KvDType dtype, int64_t count) {
  if (dtype == pg::KvDType::F32) return reinterpret_cast<uint8_t*>(a.Ptr<float>(i, name, count));
  return reinterpret_cast<uint8_t*>(a.Ptr<uint16_t>(i, name, count));
}

namespace {

// pagedKvStore(kCache, vCache, k, v, slotMapping (each storage, offset), T, Hkv, D, numBlocks, blockSize,
//   kvDtype?): the caches hold kvDtype elements (default f32).
Napi::Value PagedKvStore(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t T = a.Size(10, "T"), Hkv = a.Size(11, "Hkv"), D = a.Size(12, "D");
  const int64_t numBlocks = a.Size(13, "numBlocks"), blockSize = a.Size(14, "blockSize");
  const pg::KvDType dtype = KvDTypeArg(info, a);
  if (Hkv < 1 || D < 1 || blockSize < 1) a.Fail("Hkv, D and blockSize must be >= 1");
  const int64_t slots = a.Mul(numBlocks, blockSize), cacheSize = a.Mul(a.Mul(slots, Hkv), D);
  const int64_t cacheBytes = a.Mul(cacheSize, pg::kv_dtype_bytes(dtype));
  uint8_t* kc = CacheArg(a, 0, "kCache", dtype, cacheSize);
  uint8_t* vc = CacheArg(a, 2, "vCache", dtype, cacheSize);
  const float* k = a.Ptr<float>(4, "k", a.Mul(a.Mul(T, Hkv), D));
  const float* v = a.Ptr<float>(6, "v", T * Hkv * D);
  const int32_t* slot = a.Ptr<int32_t>(8, "slotMapping", T);
  if (Overlap(kc, cacheBytes, slot, T) || Overlap(vc, cacheBytes, slot, T)) a.Fail("slotMapping overlaps a cache");
  if (Overlap(kc, cacheBytes, vc, cacheBytes)) a.Fail("kCache and vCache overlap");
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  // On CUDA the same check runs on the device, before the store (cuda_index_check.h).
  if (OnCuda(a)) {
    pg::cuda::check_kv_slots(a.signature().label, slot, T, slots);
    pg::cuda::paged_kv_store(kc, vc, dtype, k, v, slot, T, Hkv, D);
    return info.Env().Undefined();
  }
#endif
  for (int64_t t = 0; t < T; ++t)
    if (slot[t] >= slots || slot[t] < -1)
      a.Fail("slotMapping[" + S(t) + "] = " + S(slot[t]) + " is outside [-1, " + S(slots) + ") (numBlocks * blockSize)");
  pg::paged_kv_store(kc, vc, dtype, k, v, slot, T, Hkv, D);
  return info.Env().Undefined();
}

// pagedAttentionForward(out, partOut, partStats, q, kCache, vCache, blockTables, cuQ, contextLens
//   (each storage, offset), nseq, Tq, H, Hkv, D, numBlocks, blockSize, maxBlocks, partitionSize,
//   maxPartitions, scale, kvDtype?)
Napi::Value PagedAttentionForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t nseq = a.Size(18, "nseq"), Tq = a.Size(19, "Tq"), H = a.Size(20, "H"), Hkv = a.Size(21, "Hkv"),
                D = a.Size(22, "D"), numBlocks = a.Size(23, "numBlocks"), blockSize = a.Size(24, "blockSize"),
                maxBlocks = a.Size(25, "maxBlocks"), partitionSize = a.Size(26, "partitionSize"),
                maxPartitions = a.Size(27, "maxPartitions");
  const double scale = a.Num(28, "scale");
  if (H < 1 || Hkv < 1 || D < 1 || blockSize < 1) a.Fail("H, Hkv, D and blockSize must be >= 1");
  if (H % Hkv != 0) a.Fail("H (" + S(H) + ") must be a multiple of Hkv (" + S(Hkv) + ")");
  if (partitionSize < 1 || partitionSize > pg::kPagedMaxPartition)
    a.Fail("partitionSize must be in [1, " + S(pg::kPagedMaxPartition) + "], got " + S(partitionSize));
  if (!std::isfinite(scale)) a.Fail("scale must be finite");
  if (Tq > 0x7fffffff) a.Fail("Tq must fit in int32");
  const int64_t nq = a.Mul(a.Mul(Tq, H), D), nPart = a.Mul(a.Mul(Tq, H), maxPartitions);
  const int64_t cacheSize = a.Mul(a.Mul(a.Mul(numBlocks, blockSize), Hkv), D);
  float* out = a.Ptr<float>(0, "out", nq);
  // Partition scratch is used only when a row may span several partitions.
  const bool split = maxPartitions > 1;
  float* partOut = a.Ptr<float>(2, "partOut", split ? a.Mul(nPart, D) : 0);
  float* partStats = a.Ptr<float>(4, "partStats", split ? a.Mul(nPart, 2) : 0);
  const float* q = a.Ptr<float>(6, "q", nq);
  const pg::KvDType dtype = KvDTypeArg(info, a);
  const uint8_t* kc = CacheArg(a, 8, "kCache", dtype, cacheSize);
  const uint8_t* vc = CacheArg(a, 10, "vCache", dtype, cacheSize);
  const int32_t* tables = a.Ptr<int32_t>(12, "blockTables", a.Mul(nseq, maxBlocks));
  const int32_t* cu = a.Ptr<int32_t>(14, "cuQ", nseq + 1);
  const int32_t* ctx = a.Ptr<int32_t>(16, "contextLens", nseq);
  // Nothing the kernel writes may share bytes with an index it trusts.
  const int64_t sizes[3] = {nq, split ? nPart * D : 0, split ? nPart * 2 : 0};
  const float* outs[3] = {out, partOut, partStats};
  for (int i = 0; i < 3; ++i)
    if (Overlap(outs[i], sizes[i], tables, nseq * maxBlocks) || Overlap(outs[i], sizes[i], cu, nseq + 1) ||
        Overlap(outs[i], sizes[i], ctx, nseq))
      a.Fail("an output overlaps blockTables, cuQ or contextLens");
  const pg::PagedAttention call{out, split ? partOut : nullptr, split ? partStats : nullptr, q, kc, vc, tables, cu, ctx,
                                nseq, Tq, H, Hkv, D, blockSize, maxBlocks, partitionSize, maxPartitions,
                                static_cast<float>(scale), dtype};
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  // On CUDA the indices are checked on the device, in the same order, before the kernels (which
  // halt if it fails; the split-K plan then assumes the longest context the arguments allow).
  if (OnCuda(a)) {
    pg::cuda::check_paged(a.signature().label, cu, ctx, tables, nseq, Tq, numBlocks, blockSize, maxBlocks,
                          partitionSize, maxPartitions);
    pg::cuda::paged_attention_forward(call, nullptr, nullptr);
    return info.Env().Undefined();
  }
#endif
  CheckPagedIndex(a, cu, ctx, tables, nseq, Tq, numBlocks, blockSize, maxBlocks, partitionSize, maxPartitions);
  pg::paged_attention_forward(call);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "pagedKvStore", "pagedKvStore",
     "kCache: tensor, vCache: tensor, k: f32, v: f32, slotMapping: i32, T: size, Hkv: size, D: size, numBlocks: size, blockSize: size, kvDtype?: 'f32' | 'bf16' | 'f16'",
     "void", /* cpu */ PagedKvStore, /* cuda */ PG_CUDA(PagedKvStore)},
    {DeclKind::Function, "pagedAttentionForward", "pagedAttention",
     "out: f32, partOut: f32, partStats: f32, q: f32, kCache: tensor, vCache: tensor, blockTables: i32, cuQ: i32, contextLens: i32, nseq: size, Tq: size, H: size, Hkv: size, D: size, numBlocks: size, blockSize: size, maxBlocks: size, partitionSize: size, maxPartitions: size, scale: number, kvDtype?: 'f32' | 'bf16' | 'f16'",
     "void", /* cpu */ PagedAttentionForward, /* cuda */ PG_CUDA(PagedAttentionForward)},
};

}  // namespace

void RegisterPagedAttention(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
