#!/bin/bash
# One table of what a GPU buys (k-means, stage-1 training step, pipeline); see gpu_check.py.
#   bash tests/benchmarks/gpu_check.sh             # on a CUDA GPU (sized for <= 8 minutes)
#   bash tests/benchmarks/gpu_check.sh --reduced   # small sizes on the CPU (CI)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
HF_HUB_OFFLINE=1 exec "$PYTHON" tests/benchmarks/gpu_check.py "$@"
