#!/usr/bin/env bash
# Installs the reference implementations the live comparisons use (../shared/PEERS.md):
# PyTorch, transformers, sentencepiece in .venv-ref (from the machine's local Python index),
# and node-llama-cpp in build-peers/. Optional: tests skip with a message where a peer is absent,
# so a failure here is reported and does not stop the run.
set -u
cd "$(dirname "$0")/.."
index="${PIP_INDEX_URL:-file:///opt/pypi/simple}"
if command -v python3 >/dev/null && [ -d "${index#file://}" ]; then
  { python3 -m venv .venv-ref &&
    PIP_INDEX_URL="$index" .venv-ref/bin/pip install -q torch numpy safetensors transformers sentencepiece protobuf; } ||
    echo "install-peers: Python peers not installed; live comparisons will skip"
  # lm-evaluation-harness (the eval parity test): some of its declared dependencies are not in the
  # local index and are not needed for local JSON tasks on an HF model, so --no-deps and the rest
  # by hand; torchmetrics and scipy make the metric fixtures (scripts/eval-metrics-fixture.py).
  { PIP_INDEX_URL="$index" .venv-ref/bin/pip install -q --no-deps lm-eval &&
    PIP_INDEX_URL="$index" .venv-ref/bin/pip install -q accelerate sacrebleu more_itertools zstandard dill scikit-learn numexpr pybind11 datasets nltk torchmetrics scipy; } ||
    echo "install-peers: lm-eval not installed; the lm-eval parity test will skip"
else
  echo "install-peers: no python3 or no local Python index at $index; live comparisons will skip"
fi
{ mkdir -p build-peers && cd build-peers && [ -f package.json ] || echo '{"private":true}' > package.json; } &&
  NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --ignore-scripts --no-audit --no-fund --prefix . node-llama-cpp >/dev/null 2>&1 ||
  echo "install-peers: node-llama-cpp not installed; the GGUF parity test will skip"
exit 0
