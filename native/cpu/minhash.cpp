// MinHash signatures of documents for near-duplicate detection (Broder 1997), as used by the
// data-prep dedup step: shingles of k tokens (words, or characters for CJK text), each hashed
// to 64 bits, then P universal hashes h_p(x) = (a_p * x + b_p) >> 32 (multiply-shift, a_p odd)
// and the minimum per p. Tokens are found on the fly (a ring of the last k token hashes), so the
// kernel needs no scratch. Documents are independent: parallel over documents.
#include <cstdint>
#include <cstring>

#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

inline uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: full avalanche of 64 bits
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL, kFnvPrime = 0x100000001b3ULL;
constexpr uint64_t kShingleSeed = 0x243f6a8885a308d3ULL;
constexpr int kMaxShingle = 32;

// sig[p] = min(sig[p], (a[p] * h + b[p]) >> 32): the hot loop, vectorised over p.
PG_CLONES void update_min(uint32_t* sig, const uint64_t* a, const uint64_t* b, uint64_t h, int P) {
  for (int p = 0; p < P; p++) {
    const uint32_t v = static_cast<uint32_t>((a[p] * h + b[p]) >> 32);
    sig[p] = v < sig[p] ? v : sig[p];
  }
}

inline bool is_space(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// One document: text (n bytes) -> sig (P). mode 0: tokens are runs of non-space bytes;
// mode 1: tokens are UTF-8 code points other than spaces.
void signature_one(uint32_t* sig, const uint8_t* text, int64_t n, int k, int mode, const uint64_t* a,
                   const uint64_t* b, int P) {
  for (int p = 0; p < P; p++) sig[p] = 0xffffffffu;
  uint64_t ring[kMaxShingle];
  int64_t count = 0;  // tokens seen
  auto push = [&](uint64_t t) {
    ring[count % k] = t;
    count++;
    if (count >= k) {
      uint64_t h = kShingleSeed;
      for (int j = 0; j < k; j++) h = mix64(h ^ ring[(count - k + j) % k]);
      update_min(sig, a, b, h, P);
    }
  };
  int64_t i = 0;
  while (i < n) {
    if (is_space(text[i])) {
      i++;
      continue;
    }
    uint64_t t = kFnvOffset;
    if (mode == 0) {
      while (i < n && !is_space(text[i])) t = (t ^ text[i++]) * kFnvPrime;
    } else {
      // one code point: a lead byte and its continuation bytes (10xxxxxx)
      t = (t ^ text[i++]) * kFnvPrime;
      while (i < n && (text[i] & 0xc0) == 0x80) t = (t ^ text[i++]) * kFnvPrime;
    }
    push(t);
  }
  if (count > 0 && count < k) {
    // shorter than one shingle: the whole document is its only shingle
    uint64_t h = kShingleSeed;
    for (int64_t j = 0; j < count; j++) h = mix64(h ^ ring[j]);
    update_min(sig, a, b, h, P);
  }
}

}  // namespace

// a, b (P): the permutation parameters drawn from seed (a odd), the same on every machine.
void minhash_params(uint64_t* a, uint64_t* b, int P, uint64_t seed) {
  uint64_t s = seed;
  for (int p = 0; p < P; p++) {
    s += 0x9e3779b97f4a7c15ULL;
    a[p] = mix64(s) | 1ULL;
    s += 0x9e3779b97f4a7c15ULL;
    b[p] = mix64(s);
  }
}

// sig (N, P): signatures of N documents packed in text, document d = text[offsets[d], offsets[d+1]).
// Empty documents get all-ones signatures. k in [1, 32], mode 0 (words) or 1 (characters).
void minhash_signatures(uint32_t* sig, const uint8_t* text, const int64_t* offsets, int64_t N, int P, int k,
                        int mode, const uint64_t* a, const uint64_t* b) {
  parallel_for(N, 1, [&](int64_t d0, int64_t d1) {
    for (int64_t d = d0; d < d1; d++)
      signature_one(sig + d * P, text + offsets[d], offsets[d + 1] - offsets[d], k, mode, a, b, P);
  });
}

}  // namespace pg
