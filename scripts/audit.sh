#!/usr/bin/env bash
# The main job for a newcomer: make .venv, install everything, run the quick audit of every claim.
# Extra arguments go to `verify run` (e.g. --budget full, 'softmax.*').
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
PYTHON=python bash scripts/install.sh
exec verify run "$@"
