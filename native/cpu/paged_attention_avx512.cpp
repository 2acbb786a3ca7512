// The paged attention tasks and cache stores compiled for AVX-512 (flags from native/CMakeLists.txt):
// f16 caches convert with vcvtph2ps / vcvtps2ph on zmm. Chosen at run time by paged_attention.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define PG_PAGED_ISA avx512
#define PG_PAGED_AVX512 1
#include "paged_attention_tiles.h"
