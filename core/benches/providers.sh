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
#
# Then ROUNDS (default 7) paired rounds, for a machine whose load changes: each round runs
# `openssl speed -seconds 2 rsa2048` and the interleaved part of each build (no criterion), one
# right after the other, and the medians of the per-round figures and ratios are printed last.
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

rounds=${ROUNDS:-7}
log=$(mktemp)
for round in $(seq 1 "$rounds"); do
  stamp "paired round $round of $rounds" | tee -a "$log"
  openssl speed -seconds 2 rsa2048 2>/dev/null |
    awk '/^rsa 2048/ { printf "openssl: %.1f µs per RSA-2048 signature\n", 1e6 / $6 }' | tee -a "$log"
  cargo bench -q -p icr-app-core --bench jwt --locked -- '^$' 2>/dev/null | grep 'per JWT' | tee -a "$log"
  cargo bench -q -p icr-app-core --bench jwt --locked --features aws-lc-rs -- '^$' 2>/dev/null |
    grep 'per JWT' | tee -a "$log"
done
python3 - "$log" <<'PY'
import re, statistics, sys
rounds, cur = [], None
for line in open(sys.argv[1], encoding="utf-8"):
    if "paired round" in line:
        cur = {}
        rounds.append(cur)
    elif line.startswith("openssl:"):
        cur["openssl"] = float(line.split()[1])
    elif "per JWT" in line:
        for name, us in re.findall(r"(ours \([a-z-]+\)|ring raw|aws-lc-rs raw|jsonwebtoken) ([0-9.]+) µs", line):
            cur.setdefault(name, float(us))
def med(f):
    return statistics.median(f(r) for r in rounds)
print(f"paired rounds: {len(rounds)}; medians of the per-round figures:")
for name in ["openssl", "ours (ring)", "ring raw", "ours (aws-lc-rs)", "aws-lc-rs raw", "jsonwebtoken"]:
    print(f"  {name}: {med(lambda r: r[name]):.1f} µs")
for a, b in [("ours (aws-lc-rs)", "openssl"), ("aws-lc-rs raw", "openssl"), ("ours (ring)", "openssl"),
             ("ours (ring)", "ours (aws-lc-rs)")]:
    print(f"  {a} / {b} = {med(lambda r: r[a] / r[b]):.3f}")
PY
rm -f "$log"
stamp "done"
