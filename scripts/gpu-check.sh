#!/usr/bin/env bash
# The GPU side of the checks in one command, for a machine with an NVIDIA GPU, nvcc, CMake, Node
# (node_modules installed) and python3 with PyTorch (transformers for the training peer); no
# network. In order, each phase under a share of an 8-minute budget:
#   1. builds the addon with CUDA for this GPU's architecture (PATENTGPT_CUDA=ON);
#   2. `patentgpt info`: what the binary found (GPU, cuBLASLt);
#   3. the native C++ tests (ctest), the ptxas resource check among them; every test_cuda_*.cpp runs
#      its kernels on the GPU against the CPU: attention in f32, bf16 and fp16
#      (test_cuda_attention16), AdamW over bf16/fp16 parameters with f32 master weights
#      (test_cuda_adamw_master), fp16 dynamic loss scaling (test_cuda_loss_scale), index checks on
#      the device without a read-back (test_cuda_index_check), and the others;
#   4. the TypeScript op suites, which run every op on 'cuda' against its reference and the CPU
#      (--full: the whole vitest suite instead);
#   5. the CUDA benches beside PyTorch (scripts/bench/cuda.ts, scripts/cuda-bench-torch.py).
# It ends with one table: each phase's result, then every bench figure with its ratio and target.
# Usage: scripts/gpu-check.sh [--full] [--skip-build] [bench args, e.g. --skip train]
# Exit status: 0 when every phase passed (bench targets are reported, not enforced).
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET=${PG_GPU_CHECK_SECONDS:-470}
START=$(date +%s)
FULL=0
BUILD=1
BENCH_ARGS=()
for a in "$@"; do
  case "$a" in
    --full) FULL=1 ;;
    --skip-build) BUILD=0 ;;
    *) BENCH_ARGS+=("$a") ;;
  esac
done

LOG=${PG_GPU_CHECK_LOG:-build-gpu-check}
mkdir -p "$LOG"
PHASES=()   # "name|status|seconds|note" per phase, for the table

left() { echo $((BUDGET - ($(date +%s) - START))); }
# phase NAME CAP_SECONDS COMMAND...: runs COMMAND with its output in $LOG/NAME.log (and on the
# terminal), under min(CAP, what is left of the budget).
phase() {
  local name=$1 cap=$2
  shift 2
  local limit
  limit=$(left)
  [ "$limit" -gt "$cap" ] && limit=$cap
  if [ "$limit" -le 5 ]; then
    PHASES+=("$name|skipped|0|out of time (budget ${BUDGET}s)")
    return 1
  fi
  echo "== $name (at most ${limit}s)"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOG/$name.log"
  rc=${PIPESTATUS[0]}
  local secs=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then PHASES+=("$name|ok|$secs|")
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then PHASES+=("$name|TIMEOUT|$secs|over ${limit}s; see $LOG/$name.log")
  else PHASES+=("$name|FAILED|$secs|exit $rc; see $LOG/$name.log"); fi
  return "$rc"
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi missing or failing); nothing to check on a GPU."
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
if [ ! -d node_modules ]; then
  echo "gpu-check: node_modules is missing; install them first (npm ci) where there is network"
  exit 1
fi
# Machine code for this GPU only (the release build carries sm_80..sm_90 + PTX): a faster build.
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
export PATENTGPT_CUDA=ON
ARCHS=${PATENTGPT_CUDA_ARCHS:-${CAP}-real}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
export PATENTGPT_REQUIRE_PEERS=${PATENTGPT_REQUIRE_PEERS:-0}

ok=1
if [ "$BUILD" = 1 ]; then
  phase build 300 npx cmake-js compile --CDCMAKE_BUILD_TYPE=Release --CDPATENTGPT_CUDA=ON "--CDCMAKE_CUDA_ARCHITECTURES=$ARCHS" || ok=0
fi
phase info 30 npx tsx src/cli/main.ts info || ok=0
phase ctest 120 bash -c "cmake -S native -B build-native-gpu -DCMAKE_BUILD_TYPE=Release -DPATENTGPT_CUDA=ON '-DCMAKE_CUDA_ARCHITECTURES=$ARCHS' >/dev/null && \
  cmake --build build-native-gpu -j ${CMAKE_BUILD_PARALLEL_LEVEL} >/dev/null && \
  ctest --test-dir build-native-gpu --output-on-failure -j 8" || ok=0
if [ "$FULL" = 1 ]; then
  phase vitest 300 npx vitest run || ok=0
else
  phase vitest 200 npx vitest run test/ops test/cuda-attention-moe.test.ts test/cuda-backend.test.ts test/cuda-memory.test.ts \
    test/cuda-stream.test.ts test/train/loss-scale.test.ts test/cuda-index-check.test.ts \
    test/tensor-device.test.ts || ok=0
fi

# The bench prints the table; the phases above go in as its first rows.
export PG_CHECK_PHASES
PG_CHECK_PHASES=$(printf '%s\n' "${PHASES[@]}")
if ! phase bench 240 npx tsx scripts/bench.ts cuda ${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"}; then
  ok=0
  # No table from the bench: the phases' own.
  echo
  printf '%-8s  %-8s  %6s  %s\n' phase result seconds note
  for p in "${PHASES[@]}"; do IFS='|' read -r n r t w <<<"$p"; printf '%-8s  %-8s  %6s  %s\n' "$n" "$r" "$t" "$w"; done
fi
echo "gpu-check: $([ "$ok" = 1 ] && echo 'every phase passed' || echo 'a phase failed (see the table and its log)') in $(($(date +%s) - START))s; logs in $LOG/"
[ "$ok" = 1 ]
gpu_ok=$?

# ---- NCCL (src/distributed/nccl.ts), after the table, under its own limit (not the budget above):
# a 1-rank NCCL communicator on this GPU (world size 1 is valid for NCCL): all-reduce (sum, mean),
# reduce-scatter, all-gather and broadcast over CUDA tensors, reduce and a group on the comm stream
# ordered by events; then 1-rank data-parallel pretrains through NCCL (buckets overlapped with
# backward on NCCL's stream; and ZeRO-2) against the single-process trainer, same losses
# (scripts/nccl-check.ts). The communicator's set-up is bounded (non-blocking init). libnccl
# comes from PATENTGPT_NCCL, the system (libnccl2), or python3's nvidia-nccl-cu13/-cu12 wheel
# (PyTorch's CUDA builds bring one). Without NCCL the check says why and counts as skipped.
if [ -z "${PATENTGPT_NCCL:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
  whl=$(python3 -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null)
  if [ -n "$whl" ] && [ -f "$whl" ]; then export PATENTGPT_NCCL=$whl; fi
fi
echo "== nccl (at most ${PG_NCCL_CHECK_SECONDS:-300}s; library: ${PATENTGPT_NCCL:-libnccl.so.2})"
timeout --kill-after=10 "${PG_NCCL_CHECK_SECONDS:-300}" npx tsx scripts/nccl-check.ts all 2>&1 | tee "$LOG/nccl.log"
nccl_rc=${PIPESTATUS[0]}
case "$nccl_rc" in
  0) echo "gpu-check: nccl passed (1-rank collectives, overlapped and ZeRO-2 data-parallel pretrain through NCCL)" ;;
  2) echo "gpu-check: nccl SKIPPED: $(tail -1 "$LOG/nccl.log")"; nccl_rc=0 ;;
  *) echo "gpu-check: nccl FAILED (exit $nccl_rc; see $LOG/nccl.log)" ;;
esac
[ "$gpu_ok" = 0 ] && [ "$nccl_rc" = 0 ]
