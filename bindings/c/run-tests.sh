#!/bin/sh
# The C tests of the sans-IO layer: builds icr-app-ffi, compiles tests/sans_io.c as C99 with
# every warning an error under AddressSanitizer and UndefinedBehaviorSanitizer and runs it, then
# again without sanitizers under Valgrind (no error, no leak), and compiles the header as C++.
# Run from anywhere; CC and CXX may be set. Needs cc, c++ and valgrind.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CC=${CC:-cc}
CXX=${CXX:-c++}
target=${CARGO_TARGET_DIR:-$root/target}/debug
key="$root/core/tests/fixtures/keys/rsa2048-pkcs8.pem"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== cargo build -p icr-app-ffi"
(cd "$root" && cargo build -p icr-app-ffi)

link="-L$target -Wl,-rpath,$target -licr_app"
warn="-std=c99 -Wall -Wextra -Werror -pedantic"

echo "== the header as C99 and as C++"
echo '#include "icr_app.h"' > "$out/header.c"
$CC $warn -fsyntax-only -I"$here/include" "$out/header.c"
$CXX -x c++ -fsyntax-only -Wall -Wextra -Werror -pedantic -I"$here/include" "$out/header.c"

echo "== tests/sans_io.c with AddressSanitizer and UndefinedBehaviorSanitizer"
$CC $warn -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    -I"$here/include" "$here/tests/sans_io.c" -o "$out/sans_io_asan" $link
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$out/sans_io_asan" "$key"

echo "== tests/sans_io.c under Valgrind"
$CC $warn -g -I"$here/include" "$here/tests/sans_io.c" -o "$out/sans_io" $link
valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible \
    "$out/sans_io" "$key"

echo "== C tests passed"
