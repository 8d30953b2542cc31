#!/usr/bin/env bash
# Builds the Python package `icr-app` and runs its tests, on a machine with only Rust and Python:
# a virtual environment in bindings/python/.venv (made if missing) with maturin, pytest,
# pytest-asyncio, httpx, requests and mypy; the extension built in dev profile (pass --release
# for an optimised build) and installed into it; then pytest and `mypy --strict` on the package, the tests and
# the examples. Exits non-zero on any failure. The shared store's tests start their own
# redis-server on a free loopback port: without one on PATH they are skipped (the repository's
# ./run-tests installs it).
#
#   bash bindings/python/run-tests.sh [--release] [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

profile=()
if [[ "${1:-}" == "--release" ]]; then
    profile=(--release)
    shift
fi

python="${PYTHON:-python3}"
venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "== creating $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.icr-deps"
deps="maturin>=1.5,<2 pytest>=8 pytest-asyncio>=0.24 httpx>=0.27 requests>=2.28 types-requests mypy>=1.10"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$deps" ]]; then
    echo "== installing test dependencies"
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $deps
    echo "$deps" > "$stamp"
fi

echo "== building and installing icr-app (maturin develop ${profile[*]:-})"
# --locked: the crate's own Cargo.lock (bindings/python/Cargo.lock) decides every version.
VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --quiet --locked "${profile[@]}"

echo "== pytest"
if ! command -v redis-server >/dev/null 2>&1; then
    echo "note: redis-server is not on PATH: the shared store's tests (tests/test_shared_store.py) will be skipped" >&2
fi
"$venv/bin/python" -m pytest -q "$@"

echo "== mypy --strict (the package, its tests, the examples)"
"$venv/bin/python" -m mypy --strict python/icr_app tests examples
