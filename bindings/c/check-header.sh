#!/bin/sh
# Regenerates include/icr_app.h with the pinned cbindgen and fails on any difference from the
# committed header. `--write` writes it instead.
set -eu
PIN=0.29.4
here=$(cd "$(dirname "$0")" && pwd)
version=$(cbindgen --version 2>/dev/null | awk '{print $2}') || version=
if [ "$version" != "$PIN" ]; then
    echo "check-header.sh: cbindgen $PIN is needed (found '${version:-none}'): cargo install cbindgen --version $PIN --locked" >&2
    exit 2
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cbindgen --quiet --config "$here/cbindgen.toml" --crate icr-app-ffi --output "$out" "$here"
if [ "${1:-}" = "--write" ]; then
    cp "$out" "$here/include/icr_app.h"
    echo "wrote $here/include/icr_app.h"
    exit 0
fi
if ! diff -u "$here/include/icr_app.h" "$out"; then
    echo "check-header.sh: include/icr_app.h differs from what cbindgen $PIN generates; run bindings/c/check-header.sh --write and commit" >&2
    exit 1
fi
echo "include/icr_app.h is up to date (cbindgen $PIN)"
