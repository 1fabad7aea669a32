#!/usr/bin/env bash
# Every GPU check in one go, printed as one table (see bench/gpu.py): bfloat16, float16 and
# float32, sdpa and eager attention, torch.compile; 1, 64 and 128 requests at once against a
# padded static generate; one request's latency for 100 tokens; the first token of a /continue on
# a 900-token story with and without the stored context. About 5 minutes on one GPU.
#
#   bash bench/gpu.sh [--json gpu.json]
#
# Run from a checkout whose Python has a CUDA build of torch (the README's install on a GPU
# machine); PYTHON picks another interpreter. Nothing in CI needs a GPU: `--device cpu --tiny`
# is the smoke run the tests make.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
HF_HUB_OFFLINE=1 exec "$PYTHON" -m bench.gpu --device cuda "$@"
