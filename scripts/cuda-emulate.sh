#!/usr/bin/env bash
# Runs the CUDA kernels of attention (f32, bf16, fp16), paged attention, MoE, AdamW (f32 and over
# 16-bit parameters), the loss-scale check and the device index checks on the CPU, for a machine without a GPU:
# native/cuda/{attention,paged_attention,moe,adamw,loss_scale,index_check}.cu are rewritten to C++ (launches, shared
# memory; native/test/cuda_emu/transform.py) and run under a small emulator that executes each
# block's threads as fibers with real __syncthreads / __syncwarp barriers and warp shuffles
# (native/test/cuda_emu/cuda_emu.h), by the same tests that run on a GPU
# (native/test/test_cuda_attention_moe.cpp, test_cuda_attention16.cpp, test_cuda_paged_attention.cpp,
# test_cuda_adamw_master.cpp, test_cuda_loss_scale.cpp, test_cuda_index_check.cpp) against the CPU kernels.
# It checks the kernels' indexing, masking, tiling, reductions and synchronisation logic, not
# their speed nor CUDA's memory model. A few minutes on 2 cores.
# Usage: scripts/cuda-emulate.sh [test_name ...]   (default: every test above)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${PG_EMU_DIR:-build-emu}
EMU=native/test/cuda_emu
# The CPU kernels (the reference) without CUDA.
mkdir -p "$OUT"
if ! { cmake -S native -B "$OUT/lib" -DCMAKE_BUILD_TYPE=Release -DPATENTGPT_CUDA=OFF -DPATENTGPT_NATIVE_TESTS=OFF &&
  cmake --build "$OUT/lib" -j 2; } >"$OUT/lib-build.log" 2>&1; then
  tail -40 "$OUT/lib-build.log"
  exit 1
fi
mkdir -p "$OUT/gen" "$OUT/inc"
for h in cuda_runtime.h cuda_bf16.h cuda_fp16.h; do printf '#pragma once\n#include "cuda_emu.h"\n' >"$OUT/inc/$h"; done
cp "$EMU/cuda_emu.h" "$OUT/inc/"
cp "$EMU/common.cuh" native/cuda/attention_common.cuh native/cuda/half16.cuh "$OUT/gen/"
KERNELS=(attention paged_attention moe adamw loss_scale index_check)
for f in "${KERNELS[@]}"; do python3 "$EMU/transform.py" "native/cuda/$f.cu" "$OUT/gen/$f.cpp"; done
# Device memory is host memory: the tests' allocations and copies go to the harness.
flags=(-std=c++20 -O2 -DPG_WITH_CUDA=1 -Dcuda_alloc=emu_alloc -Dcuda_free=emu_free -Dcuda_memcpy=emu_memcpy
  -Dcuda_devices=emu_devices -I "$OUT/inc" -I "$OUT/gen" -I native/include -I native/test)
objs=()
srcs=()
for f in "${KERNELS[@]}"; do srcs+=("$OUT/gen/$f.cpp"); done
for f in "${srcs[@]}" "$EMU/harness.cpp"; do
  o="$OUT/$(basename "$f" .cpp).o"
  g++ "${flags[@]}" -c "$f" -o "$o"
  objs+=("$o")
done
rc=0
TESTS=(test_cuda_attention_moe test_cuda_attention16 test_cuda_paged_attention test_cuda_adamw_master test_cuda_loss_scale
  test_cuda_index_check)
[ $# -gt 0 ] && TESTS=("$@")
for t in "${TESTS[@]}"; do
  g++ "${flags[@]}" "native/test/$t.cpp" "${objs[@]}" "$OUT/lib/libpgcore.a" -lpthread -ldl -o "$OUT/$t"
  echo "== $t (emulated)"
  "$OUT/$t" || rc=1
done
exit $rc
