#!/bin/sh
# The C tests: builds icr-app-ffi (and the CLI, whose `icr-app mock` serves the fake registry),
# compiles the header as C99 and as C++ with every warning an error, then:
#   - tests/sans_io.c (the sans-IO layer against a canned registry written in C, and a shared
#     token store in memory that two apps use, written in C too) and
#     tests/client.c (the blocking client against `icr-app mock` over loopback HTTP; its signer
#     signs with the `openssl` command; two of its clients share a redis-server started here),
#     and tests/proxy.c (the blocking client through a real CONNECT proxy to an HTTPS registry
#     that only the proxy resolves, against two `icr-app-testnet` processes of testkit, one
#     whose proxy requires credentials),
#     each as C99 with every warning an error, under
#     AddressSanitizer and UndefinedBehaviorSanitizer, then again under Valgrind (no error, no
#     leak);
#   - the examples, compiled exactly as the README says, run against the mock:
#     examples/installation_token.c (the sans-IO layer over libcurl; the cases it shares with
#     core/examples/std_driver.rs run in tests/tests/std_driver.rs) and examples/client.c;
#   - pkg-config: icr_app.pc generated for this build (see pkgconfig.sh), and a program built
#     with `pkg-config --cflags --libs icr_app` alone.
# Run from anywhere; CC and CXX may be set. Needs cc, c++, valgrind, openssl, pkg-config and
# libcurl's headers (libcurl4-openssl-dev), which ./run-tests installs when missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CC=${CC:-cc}
CXX=${CXX:-c++}
target=${CARGO_TARGET_DIR:-$root/target}/debug
key="$root/core/tests/fixtures/keys/rsa2048-pkcs8.pem"
out=$(mktemp -d)
mock_pid=
redis_pid=
testnet_pids=
cleanup() {
    if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; fi
    for pid in $testnet_pids; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
    rm -rf "$out"
}
trap cleanup EXIT

echo "== cargo build -p icr-app-ffi -p icr-app-cli"
(cd "$root" && cargo build -p icr-app-ffi -p icr-app-cli)
echo "== cargo build -p icr-app-testkit --features testnet --bin icr-app-testnet"
(cd "$root" && cargo build -p icr-app-testkit --features testnet --bin icr-app-testnet)

link="-L$target -Wl,-rpath,$target -licr_app"
warn="-std=c99 -Wall -Wextra -Werror -pedantic"
asan="-g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
grind="valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible"

echo "== the header as C99 and as C++"
echo '#include "icr_app.h"' > "$out/header.c"
$CC $warn -fsyntax-only -I"$here/include" "$out/header.c"
$CXX -x c++ -fsyntax-only -Wall -Wextra -Werror -pedantic -I"$here/include" "$out/header.c"

echo "== tests/sans_io.c with AddressSanitizer and UndefinedBehaviorSanitizer"
$CC $warn $asan -I"$here/include" "$here/tests/sans_io.c" -o "$out/sans_io_asan" $link
"$out/sans_io_asan" "$key"

echo "== tests/sans_io.c under Valgrind"
$CC $warn -g -I"$here/include" "$here/tests/sans_io.c" -o "$out/sans_io" $link
$grind --suppressions="$here/valgrind.supp" "$out/sans_io" "$key"

echo "== the fake registry: icr-app mock"
"$target/icr-app" mock --port 0 > "$out/mock.txt" 2>&1 &
mock_pid=$!
tries=0
until grep -q '^export ' "$out/mock.txt" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ] || ! kill -0 "$mock_pid" 2>/dev/null; then
        echo "icr-app mock did not start:" >&2
        cat "$out/mock.txt" >&2
        exit 1
    fi
    sleep 0.1
done
# ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY (the demo key's path), ICR_INSTALLATION_ID and
# ICR_ORGANIZATION_ID.
eval "$(grep '^export ' "$out/mock.txt")"

# A Redis of the test's own for the shared store (redis-server, installed by ./run-tests), on a
# port the system found free (asked through python3, which every machine here has); the test is
# left out when redis-server is missing.
if command -v redis-server >/dev/null 2>&1; then
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$out" > "$out/redis.log" 2>&1 &
    redis_pid=$!
    tries=0
    until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ] || ! kill -0 "$redis_pid" 2>/dev/null; then
            echo "redis-server did not start:" >&2
            cat "$out/redis.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    export ICR_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
else
    echo "redis-server is missing: the client test's Redis case is left out (./run-tests installs it)"
fi

echo "== tests/client.c with AddressSanitizer and UndefinedBehaviorSanitizer"
$CC $warn $asan -pthread -I"$here/include" "$here/tests/client.c" -o "$out/client_asan" $link
"$out/client_asan"
[ -n "$redis_pid" ] && redis-cli -p "$port" flushall > /dev/null

echo "== tests/client.c under Valgrind"
$CC $warn -g -pthread -I"$here/include" "$here/tests/client.c" -o "$out/client" $link
$grind --suppressions="$here/valgrind.supp" "$out/client"

# The network of tests/proxy.c: `icr-app-testnet` prints one line of JSON (its URLs, the demo
# app, the CA file, the files the proxy records to) and serves until killed. Two: the second's
# proxy requires credentials.
start_testnet() {
    file=$1
    shift
    "$target/icr-app-testnet" "$@" > "$file" 2> "$file.err" &
    testnet_pids="$testnet_pids $!"
    tries=0
    until grep -q '^{' "$file" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 300 ] || ! kill -0 "$!" 2>/dev/null; then
            echo "icr-app-testnet did not start:" >&2
            cat "$file.err" >&2
            exit 1
        fi
        sleep 0.1
    done
}
echo "== the network of tests/proxy.c: icr-app-testnet, twice"
start_testnet "$out/testnet.json"
start_testnet "$out/testnet-auth.json" --proxy-user icr-proxy-user --proxy-password 'Pr0xy-Secret-c'

echo "== tests/proxy.c with AddressSanitizer and UndefinedBehaviorSanitizer"
$CC $warn $asan -pthread -I"$here/include" "$here/tests/proxy.c" -o "$out/proxy_asan" $link
"$out/proxy_asan" "$out/testnet.json" "$out/testnet-auth.json"

echo "== tests/proxy.c under Valgrind"
$CC $warn -g -pthread -I"$here/include" "$here/tests/proxy.c" -o "$out/proxy" $link
$grind --num-callers=40 --suppressions="$here/valgrind.supp" "$out/proxy" "$out/testnet.json" "$out/testnet-auth.json"

echo "== examples/installation_token.c (the sans-IO layer over libcurl), built as the README says"
(cd "$root" && $CC -std=c99 -I bindings/c/include bindings/c/examples/installation_token.c -L "$target" -licr_app -lcurl \
    -o "$out/installation_token")
$CC $warn -I"$here/include" "$here/examples/installation_token.c" -o "$out/installation_token_strict" $link -lcurl
LD_LIBRARY_PATH="$target" "$out/installation_token" | grep -q '"token":"crs_'
LD_LIBRARY_PATH="$target" "$out/installation_token" --installation 00000000-0000-4000-8000-000000000000 \
    2> "$out/err.txt" && { echo "installation_token: an unknown installation succeeded" >&2; exit 1; }
grep -q '^error: 404 Not Found' "$out/err.txt"

echo "== examples/client.c (the blocking client), built as the README says"
(cd "$root" && $CC -std=c99 -I bindings/c/include bindings/c/examples/client.c -L "$target" -licr_app \
    -o "$out/client_example")
$CC $warn -I"$here/include" "$here/examples/client.c" -o "$out/client_example_strict" $link
LD_LIBRARY_PATH="$target" "$out/client_example"

echo "== pkg-config: icr_app.pc"
sh "$here/pkgconfig.sh" "$target" "$out/pkgconfig"
cflags=$(PKG_CONFIG_PATH="$out/pkgconfig" pkg-config --cflags icr_app)
libs=$(PKG_CONFIG_PATH="$out/pkgconfig" pkg-config --libs icr_app)
$CC $warn $cflags "$here/examples/client.c" -o "$out/client_pc" $libs -Wl,-rpath,"$target"
"$out/client_pc" > /dev/null

echo "== C tests passed"
