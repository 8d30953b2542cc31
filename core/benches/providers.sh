#!/usr/bin/env bash
# The app JWT signed with each crypto provider beside OpenSSL, in one run (issue 15, item 4):
#
#   bash core/benches/providers.sh
#
# Builds the `jwt` bench twice first (ring, the default; then `--features aws-lc-rs`), then
# measures back to back: `openssl speed -seconds 3 rsa2048`, the bench with ring, the bench with
# aws-lc-rs, and OpenSSL again (to show how much the machine drifted during the run). Each step
# prints the UTC time and the load average. Criterion's figure is the middle of `time: [...]`;
# the `jwt/interleaved` lines are the ratios measured within one process.
set -euo pipefail
cd "$(dirname "$0")/../.."

CRITERION=(--warm-up-time 1 --measurement-time 5)
stamp() { echo "== $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg): $*"; }
openssl_rsa2048() {
  stamp "openssl speed -seconds 3 rsa2048 ($(openssl version))"
  local out
  out=$(openssl speed -seconds 3 rsa2048 2>/dev/null | tail -n 2)
  echo "$out"
  echo "$out" | awk '/^rsa 2048/ { printf "openssl: %.1f µs per RSA-2048 signature (%s sign/s)\n", 1e6 / $6, $6 }'
}

cargo bench -p icr-app-core --bench jwt --locked --no-run
cargo bench -p icr-app-core --bench jwt --locked --features aws-lc-rs --no-run

openssl_rsa2048
stamp "cargo bench -p icr-app-core --bench jwt --locked -- ${CRITERION[*]} (ring)"
cargo bench -p icr-app-core --bench jwt --locked -- "${CRITERION[@]}"
stamp "cargo bench -p icr-app-core --bench jwt --locked --features aws-lc-rs -- ${CRITERION[*]} (aws-lc-rs)"
cargo bench -p icr-app-core --bench jwt --locked --features aws-lc-rs -- "${CRITERION[@]}"
openssl_rsa2048
stamp "done"
