// Bindings of native/cpu/gemv.cpp and native/cpu/decode.cpp: the skinny product for a few rows
// and the fused decoder-layer pieces of the inference engine. Every index a kernel trusts (cache
// slots, positions, block tables) is checked here, and no output may share bytes with another
// output or with an input.
#include <string>
#include <vector>

#include "args.h"
#include "patentgpt/gemv.h"
#include "patentgpt/moe_experts.h"
#include "patentgpt/paged_attention.h"
#include "patentgpt/quant.h"

namespace pgnode {

// bindings/paged_attention.cpp: the caches' element type (the optional kvDtype, default f32), and
// a cache of `count` such elements at argument i.
pg::KvDType KvDTypeArg(const Napi::CallbackInfo& info, const Args& a);
uint8_t* CacheArg(const Args& a, size_t i, const char* name, pg::KvDType dtype, int64_t count);

namespace {

std::string S(int64_t v) { return std::to_string(v); }

// The projections' weight type: the optional trailing wtype (GGML's id: 8 = q8_0, 2 = q4_0, 12 =
// q4_k; default 0 = f32). Quantized weights come as i32 tensors of their rows' bytes (quant.h).
pg::QuantType WTypeArg(const Napi::CallbackInfo& info, const Args& a) {
  const Signature& sig = a.signature();
  for (size_t p = 0; p < sig.params.size(); ++p) {
    if (sig.params[p].name != "wtype") continue;
    const size_t i = static_cast<size_t>(sig.slot_of_param[p]);
    if (info.Length() <= i || info[i].IsUndefined()) break;
    const int64_t t = info[i].As<Napi::Number>().Int64Value();  // an integer (Args checked)
    if (!pg::quant_type_valid(static_cast<int32_t>(t)))
      a.Fail("wtype " + S(t) + " is not a weight type (0 = f32, 8 = q8_0, 2 = q4_0, 12 = q4_k)");
    return static_cast<pg::QuantType>(t);
  }
  return pg::QuantType::F32;
}

// 4-byte elements of a (rows, cols) weight of type t: floats, or words of quantized rows.
int64_t WeightWords(const Args& a, pg::QuantType t, int64_t rows, int64_t cols) {
  if (t == pg::QuantType::F32) return a.Mul(rows, cols);
  const int64_t rb = pg::quant_row_bytes(t, cols);
  if (rb < 0)
    a.Fail(std::string(pg::quant_type_name(t)) + " weights need rows of a multiple of " +
           S(t == pg::QuantType::Q4_K ? 256 : 64) + " values, got " + S(cols));
  return a.Mul(rows, rb / 4);
}

// Buffers of one call: outputs pairwise disjoint and disjoint from every input.
struct Buffers {
  std::vector<std::pair<const void*, int64_t>> writes, reads;  // (pointer, bytes)
  template <typename T>
  T* Out(T* p, int64_t n) {
    writes.emplace_back(p, n * static_cast<int64_t>(sizeof(T)));
    return p;
  }
  template <typename T>
  const T* In(const T* p, int64_t n) {
    reads.emplace_back(p, n * static_cast<int64_t>(sizeof(T)));
    return p;
  }
  void Check(const Args& a) const {
    const auto bytes = [](const std::pair<const void*, int64_t>& b) { return static_cast<const uint8_t*>(b.first); };
    for (size_t i = 0; i < writes.size(); ++i) {
      for (const auto& r : reads)
        if (Overlap(bytes(writes[i]), writes[i].second, bytes(r), r.second)) a.Fail("an output overlaps an input");
      for (size_t j = i + 1; j < writes.size(); ++j)
        if (Overlap(bytes(writes[i]), writes[i].second, bytes(writes[j]), writes[j].second))
          a.Fail("two outputs overlap");
    }
  }
};

// gemv(y, yO, x, xO, w, wO, M, N, K, accumulate): y (M, N) (+)= x (M, K) @ w (N, K)^T, contiguous.
Napi::Value Gemv(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t M = a.Size(6, "M"), N = a.Size(7, "N"), K = a.Size(8, "K");
  const bool accumulate = a.Bool(9, "accumulate");
  Buffers b;
  float* y = b.Out(a.Ptr<float>(0, "y", a.Mul(M, N)), M * N);
  const float* x = b.In(a.Ptr<float>(2, "x", a.Mul(M, K)), M * K);
  const float* w = b.In(a.Ptr<float>(4, "w", a.Mul(N, K)), N * K);
  b.Check(a);
  pg::gemv(y, N, x, K, w, K, M, N, K, accumulate);
  return info.Env().Undefined();
}

// Arguments 0..35, shared by decodeQkv and decodeLayer: q, k, v, h, kCache, vCache, x, normW, wq,
// wk, wv, pos, slotMapping (each storage, offset), M, C, H, Hkv, D, numBlocks, blockSize, eps,
// theta, posScale. x is an input of decodeQkv and the residual (an output) of decodeLayer. The
// caches hold kv_dtype elements (the call's trailing kvDtype).
constexpr size_t kQkvArgs = 36;
pg::DecodeQkvArgs ParseQkv(const Args& a, Buffers& b, bool x_written, int64_t& numBlocks, int64_t& blockSize,
                           pg::KvDType kv_dtype, pg::QuantType wtype = pg::QuantType::F32) {
  const int64_t M = a.Size(26, "M"), C = a.Size(27, "C"), H = a.Size(28, "H"), Hkv = a.Size(29, "Hkv"),
                D = a.Size(30, "D");
  numBlocks = a.Size(31, "numBlocks");
  blockSize = a.Size(32, "blockSize");
  const double eps = a.Num(33, "eps"), theta = a.Num(34, "theta"), posScale = a.Num(35, "posScale");
  if (H < 1 || Hkv < 1 || D < 2 || D % 2 != 0 || blockSize < 1) a.Fail("H, Hkv, blockSize must be >= 1 and D even");
  if (H % Hkv != 0) a.Fail("H (" + S(H) + ") must be a multiple of Hkv (" + S(Hkv) + ")");
  if (!(eps > 0) || !(theta > 0) || !(posScale > 0)) a.Fail("eps, theta and posScale must be > 0");
  const int64_t nq = a.Mul(a.Mul(M, H), D), nkv = a.Mul(a.Mul(M, Hkv), D), nx = a.Mul(M, C);
  const int64_t slots = a.Mul(numBlocks, blockSize), cacheSize = a.Mul(a.Mul(slots, Hkv), D);
  pg::DecodeQkvArgs q{};
  q.q = b.Out(a.Ptr<float>(0, "q", nq), nq);
  q.k = b.Out(a.Ptr<float>(2, "k", nkv), nkv);
  q.v = b.Out(a.Ptr<float>(4, "v", nkv), nkv);
  q.h = b.Out(a.Ptr<float>(6, "h", nx), nx);
  const int64_t cacheBytes = a.Mul(cacheSize, pg::kv_dtype_bytes(kv_dtype));
  q.k_cache = b.Out(CacheArg(a, 8, "kCache", kv_dtype, cacheSize), cacheBytes);
  q.v_cache = b.Out(CacheArg(a, 10, "vCache", kv_dtype, cacheSize), cacheBytes);
  q.kv_dtype = kv_dtype;
  float* x = a.Ptr<float>(12, "x", nx);
  q.x = x_written ? b.Out(x, nx) : b.In(x, nx);
  q.norm_w = b.In(a.Ptr<float>(14, "normW", C), C);
  const int64_t nwq = WeightWords(a, wtype, H * D, C), nwkv = WeightWords(a, wtype, Hkv * D, C);
  q.wq = b.In(a.Ptr<float>(16, "wq", nwq), nwq);
  q.wk = b.In(a.Ptr<float>(18, "wk", nwkv), nwkv);
  q.wv = b.In(a.Ptr<float>(20, "wv", nwkv), nwkv);
  q.wtype = wtype;
  q.pos = b.In(a.Ptr<int32_t>(22, "pos", M), M);
  q.slot_mapping = b.In(a.Ptr<int32_t>(24, "slotMapping", M), M);
  for (int64_t t = 0; t < M; ++t) {
    if (q.slot_mapping[t] >= slots || q.slot_mapping[t] < -1)
      a.Fail("slotMapping[" + S(t) + "] = " + S(q.slot_mapping[t]) + " is outside [-1, " + S(slots) +
             ") (numBlocks * blockSize)");
    if (q.pos[t] < 0) a.Fail("pos[" + S(t) + "] = " + S(q.pos[t]) + " is negative");
  }
  q.eps = static_cast<float>(eps);
  q.M = M, q.C = C, q.H = H, q.Hkv = Hkv, q.D = D;
  q.theta = static_cast<float>(theta);
  q.pos_scale = static_cast<float>(posScale);
  return q;
}

// The MLP's g, u, normW, wg, wu, wd (each storage, offset) from argument i, F at iF, eps at iEps
// (normW and eps are declared under the names `norm_name` and `eps_name`).
pg::DecodeMlpArgs ParseMlp(const Args& a, Buffers& b, size_t i, size_t iF, size_t iEps, int64_t M, int64_t C,
                           const char* norm_name = "normW", const char* eps_name = "eps",
                           pg::QuantType wtype = pg::QuantType::F32) {
  const int64_t F = a.Size(iF, "F");
  const double eps = a.Num(iEps, eps_name);
  if (!(eps > 0)) a.Fail("eps must be > 0");
  const int64_t nf = a.Mul(M, F), nw = WeightWords(a, wtype, F, C), nwd = WeightWords(a, wtype, C, F);
  pg::DecodeMlpArgs m{};
  m.wtype = wtype;
  m.g = b.Out(a.Ptr<float>(i, "g", nf), nf);
  m.u = b.Out(a.Ptr<float>(i + 2, "u", nf), nf);
  m.norm_w = b.In(a.Ptr<float>(i + 4, norm_name, C), C);
  m.wg = b.In(a.Ptr<float>(i + 6, "wg", nw), nw);
  m.wu = b.In(a.Ptr<float>(i + 8, "wu", nw), nw);
  m.wd = b.In(a.Ptr<float>(i + 10, "wd", nwd), nwd);
  m.eps = static_cast<float>(eps);
  m.M = M, m.C = C, m.F = F;
  return m;
}

// decodeQkv(<the 36 arguments of ParseQkv>)
Napi::Value DecodeQkv(const Napi::CallbackInfo& info, const Args& a) {
  Buffers b;
  int64_t numBlocks, blockSize;
  const pg::DecodeQkvArgs q = ParseQkv(a, b, false, numBlocks, blockSize, KvDTypeArg(info, a), WTypeArg(info, a));
  b.Check(a);
  pg::decode_qkv(q);
  return info.Env().Undefined();
}

// decodeSwigluMlp(x, h, g, u, normW, wg, wu, wd (each storage, offset), M, C, F, eps)
Napi::Value DecodeSwigluMlp(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t M = a.Size(16, "M"), C = a.Size(17, "C"), nx = a.Mul(M, C);
  Buffers b;
  float* x = b.Out(a.Ptr<float>(0, "x", nx), nx);
  float* h = b.Out(a.Ptr<float>(2, "h", nx), nx);
  pg::DecodeMlpArgs m = ParseMlp(a, b, 4, 18, 19, M, C, "normW", "eps", WTypeArg(info, a));
  m.h = h;
  b.Check(a);
  pg::decode_swiglu_mlp(x, m);
  return info.Env().Undefined();
}

// The attention arguments of decodeLayer and decodeLayerMoe after the 36 of ParseQkv: o, partOut,
// partStats, blockTables, cuQ, contextLens (each storage, offset), nseq, maxBlocks, partitionSize,
// maxPartitions, scale, wo (storage, offset). Returns the attention; wo into `wo`.
constexpr size_t kAttentionArgs = 19;
pg::PagedAttention ParseAttention(const Args& a, Buffers& b, const pg::DecodeQkvArgs& q, int64_t numBlocks,
                                  int64_t blockSize, const float*& wo) {
  const int64_t M = q.M, H = q.H, D = q.D, C = q.C;
  const size_t i = kQkvArgs;
  const int64_t nseq = a.Size(i + 12, "nseq"), maxBlocks = a.Size(i + 13, "maxBlocks"),
                partitionSize = a.Size(i + 14, "partitionSize"), maxPartitions = a.Size(i + 15, "maxPartitions");
  const double scale = a.Num(i + 16, "scale");
  if (partitionSize < 1 || partitionSize > pg::kPagedMaxPartition)
    a.Fail("partitionSize must be in [1, " + S(pg::kPagedMaxPartition) + "], got " + S(partitionSize));
  if (!std::isfinite(scale)) a.Fail("scale must be finite");
  const int64_t nq = a.Mul(a.Mul(M, H), D), nPart = a.Mul(a.Mul(M, H), maxPartitions);
  const bool split = maxPartitions > 1;  // partition scratch is used only then
  pg::PagedAttention attn{};
  attn.out = b.Out(a.Ptr<float>(i, "o", nq), nq);
  float* partOut = a.Ptr<float>(i + 2, "partOut", split ? a.Mul(nPart, D) : 0);
  float* partStats = a.Ptr<float>(i + 4, "partStats", split ? a.Mul(nPart, 2) : 0);
  attn.part_out = split ? b.Out(partOut, nPart * D) : nullptr;
  attn.part_stats = split ? b.Out(partStats, nPart * 2) : nullptr;
  attn.block_tables = b.In(a.Ptr<int32_t>(i + 6, "blockTables", a.Mul(nseq, maxBlocks)), nseq * maxBlocks);
  attn.cu_q = b.In(a.Ptr<int32_t>(i + 8, "cuQ", nseq + 1), nseq + 1);
  attn.context_lens = b.In(a.Ptr<int32_t>(i + 10, "contextLens", nseq), nseq);
  CheckPagedIndex(a, attn.cu_q, attn.context_lens, attn.block_tables, nseq, M, numBlocks, blockSize, maxBlocks,
                  partitionSize, maxPartitions);
  attn.q = q.q, attn.k_cache = q.k_cache, attn.v_cache = q.v_cache, attn.kv_dtype = q.kv_dtype;
  attn.nseq = nseq, attn.Tq = M, attn.H = H, attn.Hkv = q.Hkv, attn.D = D, attn.block_size = blockSize;
  attn.max_blocks = maxBlocks, attn.partition_size = partitionSize, attn.max_partitions = maxPartitions;
  attn.scale = static_cast<float>(scale);
  const int64_t nwo = WeightWords(a, q.wtype, C, H * D);
  wo = b.In(a.Ptr<float>(i + 17, "wo", nwo), nwo);
  return attn;
}

// decodeLayer(<the 36 arguments of ParseQkv, x the residual>, <the 19 of ParseAttention>, g, u,
//   mlpNormW, wg, wu, wd (each storage, offset), F, mlpEps)
// JavaScript fills these by name from the declaration below (src/tensor/ops/decode.ts).
Napi::Value DecodeLayer(const Napi::CallbackInfo& info, const Args& a) {
  Buffers b;
  int64_t numBlocks, blockSize;
  const pg::DecodeQkvArgs q = ParseQkv(a, b, true, numBlocks, blockSize, KvDTypeArg(info, a), WTypeArg(info, a));
  const float* wo = nullptr;
  const pg::PagedAttention attn = ParseAttention(a, b, q, numBlocks, blockSize, wo);
  const size_t i = kQkvArgs + kAttentionArgs;
  pg::DecodeMlpArgs m = ParseMlp(a, b, i, i + 12, i + 13, q.M, q.C, "mlpNormW", "mlpEps", q.wtype);
  m.h = q.h;
  b.Check(a);
  pg::decode_layer(a.Ptr<float>(12, "x", a.Mul(q.M, q.C)), q, attn, wo, m);
  return info.Env().Undefined();
}

// The MoE feed-forward's scratch, index, normW, gate (each storage, offset), experts (a list of
// 3 * (E + S) tensors: w1, w3, w2 of each routed expert, then of each shared one), F, E, topK, S,
// eps, from argument i (their names are declared with the prefix of the caller's declaration).
// Every expert matrix is checked in bounds; the pointers go to `ptrs`.
pg::DecodeMoeArgs ParseMoe(const Args& a, Buffers& b, size_t i, int64_t M, int64_t C, std::vector<const float*>& ptrs,
                           const char* const names[10]) {
  const int64_t F = a.Size(i + 9, names[5]), E = a.Size(i + 10, names[6]), k = a.Size(i + 11, names[7]),
                Sh = a.Size(i + 12, names[8]);
  const double eps = a.Num(i + 13, names[9]);
  // Scratch floats as pg::decode_moe_scratch_floats, each product checked: Mk < 9e15 bounds
  // decode_moe_index_ints too (no overflow below).
  const int64_t Mk = a.Mul(M, k), R = Mk + a.Mul(Sh, M);
  const double total = static_cast<double>(a.Mul(M, E)) + Mk + a.Mul(Mk, C) + 2.0 * a.Mul(R, F) + a.Mul(R, C);
  if (total > 9e15) a.Fail("size overflow");
  const int64_t nf = pg::decode_moe_scratch_floats(M, C, F, E, k, Sh), ni = pg::decode_moe_index_ints(M, E, k);
  pg::DecodeMoeArgs m{};
  m.scratch = b.Out(a.Ptr<float>(i, names[0], nf), nf);
  m.index = b.Out(a.Ptr<int32_t>(i + 2, names[1], ni), ni);
  m.norm_w = b.In(a.Ptr<float>(i + 4, names[2], C), C);
  m.gate = b.In(a.Ptr<float>(i + 6, names[3], a.Mul(E, C)), E * C);
  const int64_t nw = a.Mul(F, C);
  a.PtrList<const float>(i + 8, names[4], a.Mul(3, E + Sh), nw, ptrs);
  for (const float* w : ptrs) b.In(w, nw);
  if (!(eps > 0)) a.Fail(std::string(names[9]) + " must be > 0");
  if (E < 1 || k < 1 || k > E) a.Fail(std::string(names[7]) + " = " + S(k) + " must be in [1, E = " + S(E) + "]");
  if (Mk > INT32_MAX) a.Fail("M * topK exceeds i32 positions");
  m.experts = ptrs.data();
  m.eps = static_cast<float>(eps);
  m.M = M, m.C = C, m.F = F, m.E = E, m.k = k, m.S = Sh;
  return m;
}

// decodeMoeFfn(x, h (each storage, offset), <the MoE's arguments of ParseMoe>, M, C)
Napi::Value DecodeMoeFfn(const Napi::CallbackInfo& info, const Args& a) {
  static const char* const kNames[10] = {"scratch", "index", "normW", "gate", "experts", "F", "E", "topK", "S", "eps"};
  const int64_t M = a.Size(18, "M"), C = a.Size(19, "C"), nx = a.Mul(M, C);
  Buffers b;
  float* x = b.Out(a.Ptr<float>(0, "x", nx), nx);
  float* h = b.Out(a.Ptr<float>(2, "h", nx), nx);
  static thread_local std::vector<const float*> ptrs;  // the experts' pointers; its capacity is kept (no allocation per step)
  pg::DecodeMoeArgs m = ParseMoe(a, b, 4, M, C, ptrs, kNames);
  m.h = h;
  b.Check(a);
  pg::decode_moe_ffn(x, m);
  return info.Env().Undefined();
}

// decodeLayerMoe(<the 36 arguments of ParseQkv, x the residual>, <the 19 of ParseAttention>,
//   <the MoE's arguments of ParseMoe>): decodeLayer with the sparse MoE feed-forward.
Napi::Value DecodeLayerMoe(const Napi::CallbackInfo& info, const Args& a) {
  static const char* const kNames[10] = {"moeScratch", "moeIndex", "moeNormW", "gate", "experts",
                                         "F", "E", "topK", "S", "moeEps"};
  Buffers b;
  int64_t numBlocks, blockSize;
  const pg::DecodeQkvArgs q = ParseQkv(a, b, true, numBlocks, blockSize, KvDTypeArg(info, a));
  const float* wo = nullptr;
  const pg::PagedAttention attn = ParseAttention(a, b, q, numBlocks, blockSize, wo);
  static thread_local std::vector<const float*> ptrs;  // the experts' pointers; its capacity is kept (no allocation per step)
  pg::DecodeMoeArgs m = ParseMoe(a, b, kQkvArgs + kAttentionArgs, q.M, q.C, ptrs, kNames);
  m.h = q.h;
  b.Check(a);
  pg::decode_layer_moe(a.Ptr<float>(12, "x", a.Mul(q.M, q.C)), q, attn, wo, m);
  return info.Env().Undefined();
}

// decodeLogits(logits, h, x, normW, w (each storage, offset), M, C, V, eps)
Napi::Value DecodeLogits(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t M = a.Size(10, "M"), C = a.Size(11, "C"), V = a.Size(12, "V");
  const double eps = a.Num(13, "eps");
  if (!(eps > 0)) a.Fail("eps must be > 0");
  const int64_t nx = a.Mul(M, C), nl = a.Mul(M, V);
  Buffers b;
  float* logits = b.Out(a.Ptr<float>(0, "logits", nl), nl);
  float* h = b.Out(a.Ptr<float>(2, "h", nx), nx);
  const float* x = b.In(a.Ptr<float>(4, "x", nx), nx);
  const float* normW = b.In(a.Ptr<float>(6, "normW", C), C);
  const pg::QuantType wtype = WTypeArg(info, a);
  const int64_t nw = WeightWords(a, wtype, V, C);
  const float* w = b.In(a.Ptr<float>(8, "w", nw), nw);
  b.Check(a);
  pg::decode_logits(logits, h, x, normW, static_cast<float>(eps), w, M, C, V, wtype);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "gemv", "gemv",
     "y: f32, x: f32, w: f32, M: size, N: size, K: size, accumulate: boolean",
     "void", /* cpu */ Gemv, /* cuda */ nullptr},
    {DeclKind::Function, "decodeQkv", "decodeQkv",
     "q: f32, k: f32, v: f32, h: f32, kCache: tensor, vCache: tensor, x: f32, normW: f32, wq: tensor, wk: tensor, wv: tensor, pos: i32, slotMapping: i32, M: size, C: size, H: size, Hkv: size, D: size, numBlocks: size, blockSize: size, eps: number, theta: number, posScale: number, kvDtype?: 'f32' | 'bf16' | 'f16', wtype?: int",
     "void", /* cpu */ DecodeQkv, /* cuda */ nullptr},
    {DeclKind::Function, "decodeSwigluMlp", "decodeSwigluMlp",
     "x: f32, h: f32, g: f32, u: f32, normW: f32, wg: tensor, wu: tensor, wd: tensor, M: size, C: size, F: size, eps: number, wtype?: int",
     "void", /* cpu */ DecodeSwigluMlp, /* cuda */ nullptr},
    {DeclKind::Function, "decodeLayer", "decodeLayer",
     "q: f32, k: f32, v: f32, h: f32, kCache: tensor, vCache: tensor, x: f32, normW: f32, wq: tensor, wk: tensor, wv: tensor, pos: i32, slotMapping: i32, M: size, C: size, H: size, Hkv: size, D: size, numBlocks: size, blockSize: size, eps: number, theta: number, posScale: number, o: f32, partOut: f32, partStats: f32, blockTables: i32, cuQ: i32, contextLens: i32, nseq: size, maxBlocks: size, partitionSize: size, maxPartitions: size, scale: number, wo: tensor, g: f32, u: f32, mlpNormW: f32, wg: tensor, wu: tensor, wd: tensor, F: size, mlpEps: number, kvDtype?: 'f32' | 'bf16' | 'f16', wtype?: int",
     "void", /* cpu */ DecodeLayer, /* cuda */ nullptr},
    {DeclKind::Function, "decodeMoeFfn", "decodeMoeFfn",
     "x: f32, h: f32, scratch: f32, index: i32, normW: f32, gate: f32, experts: f32[], F: size, E: size, topK: size, S: size, eps: number, M: size, C: size",
     "void", /* cpu */ DecodeMoeFfn, /* cuda */ nullptr},
    {DeclKind::Function, "decodeLayerMoe", "decodeLayerMoe",
     "q: f32, k: f32, v: f32, h: f32, kCache: tensor, vCache: tensor, x: f32, normW: f32, wq: f32, wk: f32, wv: f32, pos: i32, slotMapping: i32, M: size, C: size, H: size, Hkv: size, D: size, numBlocks: size, blockSize: size, eps: number, theta: number, posScale: number, o: f32, partOut: f32, partStats: f32, blockTables: i32, cuQ: i32, contextLens: i32, nseq: size, maxBlocks: size, partitionSize: size, maxPartitions: size, scale: number, wo: f32, moeScratch: f32, moeIndex: i32, moeNormW: f32, gate: f32, experts: f32[], F: size, E: size, topK: size, S: size, moeEps: number, kvDtype?: 'f32' | 'bf16' | 'f16'",
     "void", /* cpu */ DecodeLayerMoe, /* cuda */ nullptr},
    {DeclKind::Function, "decodeLogits", "decodeLogits",
     "logits: f32, h: f32, x: f32, normW: f32, w: tensor, M: size, C: size, V: size, eps: number, wtype?: int",
     "void", /* cpu */ DecodeLogits, /* cuda */ nullptr},
};

}  // namespace

void RegisterGemv(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
