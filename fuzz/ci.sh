#!/usr/bin/env bash
# CI's fuzz step (called by .ci/run): every cargo-fuzz target for FUZZ_SECONDS (default 20) each,
# from its committed seeds, on a scratch corpus that is thrown away.
#
# cargo-fuzz passes `-Z` flags to rustc; with no nightly toolchain here, RUSTC_BOOTSTRAP=1 lets
# stable rustc accept them. When cargo-fuzz cannot be installed or the targets cannot be built,
# the same target bodies run as proptest cases on stable instead (core/tests/fuzz_corpus.rs),
# and this says so.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
targets=(keys responses error_body webhook time)

fallback() {
  echo "fuzz: $1; running the same targets as proptest cases on stable instead (not libFuzzer)"
  (cd .. && PROPTEST_CASES="${FUZZ_PROPTEST_CASES:-100000}" cargo test -p icr-app-core --locked --test fuzz_corpus)
}

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz"
  if ! cargo install --locked cargo-fuzz; then
    fallback "cargo-fuzz could not be installed"
    exit 0
  fi
fi

export RUSTC_BOOTSTRAP=1
sanitizer=address
if ! cargo fuzz build -O -a -s "$sanitizer"; then
  echo "fuzz: the build with the address sanitizer failed; trying without a sanitizer (-s none)"
  sanitizer=none
  if ! cargo fuzz build -O -a -s "$sanitizer"; then
    fallback "cargo fuzz build failed"
    exit 0
  fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  if ! cargo fuzz run -O -a -s "$sanitizer" "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$work/$t.log" 2>&1; then
    tail -n 80 "$work/$t.log"
    echo "fuzz: target $t failed; the input is in fuzz/artifacts/$t/ (and as Base64 above)" >&2
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log")"
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$work/$t.log" | tail -n 1)"
  echo "fuzz: $t clean for ${seconds} s (sanitizer $sanitizer): ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-?}"
done
