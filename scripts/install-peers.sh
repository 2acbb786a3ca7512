#!/usr/bin/env bash
# Installs the reference implementations the live comparisons use (../shared/PEERS.md):
# PyTorch, transformers, PEFT, TRL, sentencepiece, lm-eval in .venv-ref (from the machine's local Python
# index), and node-llama-cpp in build-peers/.
#
# With PATENTGPT_REQUIRE_PEERS=1 (CI sets it) a peer that fails to install fails this script, and
# the tests fail instead of skipping where a peer is missing. Without it, a failure is reported
# and the live comparisons skip with a message.
set -u
cd "$(dirname "$0")/.."
index="${PIP_INDEX_URL:-file:///opt/pypi/simple}"
failed=()
# Open MPI, the CPU engine of data-parallel training (src/distributed), and pg_mpi.node built over it
# (scripts/build-mpi.sh: npm ci built the addon before MPI was here). apt only where it is missing,
# as root, non-interactive; elsewhere a message says what to install.
if ! command -v mpirun >/dev/null || ! command -v mpicxx >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenmpi-dev openmpi-bin >/dev/null 2>&1 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenmpi-dev openmpi-bin >/dev/null 2>&1; }; } ||
      failed+=("Open MPI (apt-get install libopenmpi-dev openmpi-bin failed)")
  else
    failed+=("Open MPI (not root or no apt-get: install libopenmpi-dev and openmpi-bin, or your system's MPI, by hand)")
  fi
fi
if command -v mpicxx >/dev/null; then
  bash scripts/build-mpi.sh || failed+=("pg_mpi.node (scripts/build-mpi.sh)")
fi
if command -v python3 >/dev/null && [ -d "${index#file://}" ]; then
  { python3 -m venv .venv-ref &&
    PIP_INDEX_URL="$index" .venv-ref/bin/pip install -q torch numpy safetensors transformers sentencepiece protobuf peft; } ||
    failed+=("Python peers (torch, transformers, sentencepiece, peft)")
  # TRL (SFTTrainer: the SFT parity test, scripts/trl-parity.py); its dependencies (accelerate,
  # datasets) come from the same index and leave torch and transformers as they are.
  PIP_INDEX_URL="$index" .venv-ref/bin/pip install -q trl || failed+=("trl")
  # lm-evaluation-harness (the eval parity test): some of its declared dependencies are not in the
  # local index and are not needed for local JSON tasks on an HF model, so --no-deps and the rest
  # by hand; torchmetrics and scipy make the metric fixtures (scripts/eval-metrics-fixture.py).
  { PIP_INDEX_URL="$index" .venv-ref/bin/pip install -q --no-deps lm-eval &&
    PIP_INDEX_URL="$index" .venv-ref/bin/pip install -q accelerate sacrebleu more_itertools zstandard dill scikit-learn numexpr pybind11 datasets nltk torchmetrics scipy; } ||
    failed+=("lm-eval")
else
  failed+=("Python peers (no python3 or no local Python index at $index)")
fi
{ mkdir -p build-peers && cd build-peers && { [ -f package.json ] || echo '{"private":true}' > package.json; } &&
  NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --ignore-scripts --no-audit --no-fund --prefix . node-llama-cpp >/dev/null 2>&1; } ||
  failed+=("node-llama-cpp")
# Chromium for the demo report's browser test (test/demo/demo.test.ts drives it with puppeteer-core).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  sudo_=$([ "$(id -u)" = 0 ] || echo sudo)
  { command -v apt-get >/dev/null && { $sudo_ apt-get install -y -q chromium >/dev/null 2>&1 ||
    { $sudo_ apt-get update -q >/dev/null 2>&1 && $sudo_ apt-get install -y -q chromium >/dev/null 2>&1; }; }; } ||
    failed+=("chromium (apt-get install chromium)")
fi
[ ${#failed[@]} -eq 0 ] && { echo "install-peers: all peers installed"; exit 0; }
for f in "${failed[@]}"; do echo "install-peers: not installed: $f" >&2; done
if [ "${PATENTGPT_REQUIRE_PEERS:-}" = 1 ]; then
  echo "install-peers: PATENTGPT_REQUIRE_PEERS=1, so a missing peer is a failure" >&2
  exit 1
fi
echo "install-peers: the live comparisons that need these peers will skip" >&2
exit 0
