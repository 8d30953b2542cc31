#!/usr/bin/env bash
# Builds the extension optimised (--release) into bindings/python/.venv and runs the benchmark.
#   bash bindings/python/benchmarks/run.sh [--quick]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" "httpx>=0.27" pyjwt cryptography
VIRTUAL_ENV="$here/.venv" .venv/bin/maturin develop --quiet --locked --release
.venv/bin/python benchmarks/bench.py "$@"
