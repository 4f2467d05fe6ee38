#!/usr/bin/env bash
# Install the verifier, its test tools and Dask (the "distributed" extra, so that CI runs the scale-out
# tests) into the active Python environment (a venv is recommended).
# torch: when absent, install the 2.13.0 CPU build first (users with GPUs bring their own CUDA build;
# pyproject accepts any torch >= 2.1, < 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[test,distributed]"
# The third paper ships as a plugin package of its own (examples/linear_icl), installed like any other plugin.
"$PY" -m pip install --quiet --no-deps -e examples/linear_icl
