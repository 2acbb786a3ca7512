// The attention tile loops compiled for AVX-512 (flags from native/CMakeLists.txt); chosen at
// run time by attention.cpp when pg::simd_level() allows.
// GCC 12 flags the intrinsics' own _mm512_undefined_ps as maybe-uninitialized (a known false alarm).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define PG_ATTN_ISA avx512
#define PG_ATTN_AVX512 1
#include "attention_tiles.h"
