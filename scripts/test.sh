#!/usr/bin/env bash
# The test command (what CI runs): install into .venv, then the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
PYTHON=python bash scripts/install.sh
exec python -m pytest -q "$@"
