// The attention tile loops compiled for AVX2 + FMA (flags from native/CMakeLists.txt); chosen at
// run time by attention.cpp when pg::simd_level() allows.
#define PG_ATTN_ISA avx2
#define PG_ATTN_AVX2 1
#include "attention_tiles.h"
