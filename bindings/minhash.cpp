// Bindings of native/cpu/minhash.cpp. Arguments are plain typed arrays (text is a byte batch,
// not a tensor); every length is checked before the kernel runs.
#include <string>
#include <vector>

#include "args.h"

namespace pg {
void minhash_params(uint64_t* a, uint64_t* b, int P, uint64_t seed);
void minhash_signatures(uint32_t* sig, const uint8_t* text, const int64_t* offsets, int64_t N, int P, int k,
                        int mode, const uint64_t* a, const uint64_t* b);
}  // namespace pg

namespace pgnode {

namespace {

// minhashSignatures(sig: Uint32Array (N*P), text: Uint8Array, offsets: BigInt64Array (N+1),
//                   N, P, k, mode ('word' 0 | 'char' 1), seed)
Napi::Value MinhashSignatures(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(3, "N"), P = a.Size(4, "P"), k = a.Size(5, "k"), mode = a.Size(6, "mode");
  const int64_t seed = a.Int(7, "seed");
  if (P < 1 || P > 4096) a.Fail("P (permutations) must be in [1, 4096], got " + std::to_string(P));
  if (k < 1 || k > 32) a.Fail("k (shingle size) must be in [1, 32], got " + std::to_string(k));
  if (mode > 1) a.Fail("mode must be 0 (words) or 1 (characters)");
  uint32_t* sig = TypedArg<uint32_t>(a, info[0], napi_uint32_array, "sig", "Uint32Array", a.Mul(N, P));
  const int64_t* off = TypedArg<int64_t>(a, info[2], napi_bigint64_array, "offsets", "BigInt64Array", N + 1);
  const TextSpans text = TextArg(a, info[1], off, N);
  if (Overlap(sig, N * P, text.data, text.bytes)) a.Fail("sig must not share memory with text");
  std::vector<uint64_t> pa(P), pb(P);
  pg::minhash_params(pa.data(), pb.data(), static_cast<int>(P), static_cast<uint64_t>(seed));
  pg::minhash_signatures(sig, text.data, off, N, static_cast<int>(P), static_cast<int>(k), static_cast<int>(mode),
                         pa.data(), pb.data());
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "minhashSignatures", "minhashSignatures",
     "sig: Uint32Array, text: Uint8Array, offsets: BigInt64Array, N: size, P: size, k: size, mode: size, seed: int",
     "void", /* cpu */ MinhashSignatures, /* cuda */ nullptr},
};

}  // namespace

void RegisterMinhash(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
