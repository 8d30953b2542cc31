#!/usr/bin/env bash
# Builds the Node.js package `icr-app` and runs its tests, on a machine with Rust and Node.js 20.17
# or later: the npm dev dependencies installed (`npm ci`, from package-lock.json: @napi-rs/cli,
# typescript, @types/node, jsonwebtoken for the benchmark's hand-written client), the addon
# built with `napi build` (dev profile; pass --release for an optimised build), the tests run
# with Node's own runner (`node --test`, against the project's fake registry over loopback),
# the TypeScript example and the package's types checked with `tsc --strict --noEmit`; then
# `npm pack` (a release build) and the tarball installed offline into a fresh project, whose
# CommonJS and ESM entries are used against the fake registry with no Rust toolchain involved.
# Exits non-zero on any failure.
#
#   bash bindings/node/run-tests.sh [--release] [--no-pack]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

profile=()
pack=1
for arg in "$@"; do
    case "$arg" in
        --release) profile=(--release) ;;
        --no-pack) pack=0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if ! command -v node >/dev/null 2>&1; then
    echo "node is not on PATH: install Node.js 20.17 or later" >&2
    exit 1
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 17) ? 0 : 1)'; then
    echo "Node.js $(node --version) is too old: @napi-rs/cli 3 and this package need 20.17 or later (https://nodejs.org, or NodeSource's packages)" >&2
    exit 1
fi

if [[ ! -d node_modules/@napi-rs/cli ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    echo "== npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi

echo "== napi build ${profile[*]:-} (the addon, bindings/node/icr-app.*.node)"
npx napi build --platform "${profile[@]}" --js native.js --dts native.d.ts

echo "== node --test"
node --test test/*.test.mjs

echo "== tsc --strict --noEmit (index.d.ts, testing.d.ts, examples/quickstart.ts)"
npx tsc --strict --noEmit --target ES2022 --module nodenext --moduleResolution nodenext index.d.ts testing.d.ts
npx tsc -p examples/tsconfig.json

if [[ "$pack" == 1 ]]; then
    echo "== npm pack, then the tarball installed offline in a fresh project"
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    npm pack --pack-destination "$scratch" --loglevel=error >/dev/null
    tarball="$(ls "$scratch"/icr-app-*.tgz)"
    mkdir "$scratch/project"
    (
        cd "$scratch/project"
        npm init -y >/dev/null
        npm install --offline --no-audit --no-fund --loglevel=error "$tarball"
        cp "$here/examples/smoke.cjs" "$here/examples/smoke.mjs" .
        node smoke.cjs
        node smoke.mjs
    )
fi
echo "== node: all passed"
