// The paged attention tasks and cache stores compiled for AVX2 + FMA + F16C (flags from
// native/CMakeLists.txt). Chosen at run time by paged_attention.cpp.
#define PG_PAGED_ISA avx2
#define PG_PAGED_AVX2 1
#include "paged_attention_tiles.h"
