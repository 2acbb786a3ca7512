#!/usr/bin/env bash
# Runs the GPU side of the checks in one go on a machine with an NVIDIA GPU: builds with CUDA,
# prints what the binary found, runs the native tests and the TypeScript suite (which runs every
# op on every device present), then the benches. Usage: scripts/gpu-check.sh [bench names...]
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi not available"
[ -d node_modules ] || npm ci --ignore-scripts
PATENTGPT_CUDA=ON npx cmake-js compile --CDCMAKE_BUILD_TYPE=Release
npx tsc -p tsconfig.json
node dist/src/cli/main.js info
PATENTGPT_CUDA=ON npm run test:native
npx vitest run
for b in "${@:-gemm attention}"; do npm run bench -- $b; done
