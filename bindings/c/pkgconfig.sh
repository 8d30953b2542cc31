#!/bin/sh
# Writes icr_app.pc (from icr_app.pc.in) into OUT_DIR, for the library in LIB_DIR and the header
# in INCLUDE_DIR (default: this directory's include/, the committed header):
#
#   sh bindings/c/pkgconfig.sh LIB_DIR OUT_DIR [INCLUDE_DIR]
#
# e.g. after `cargo build --release -p icr-app-ffi`:
#   sh bindings/c/pkgconfig.sh "$PWD/target/release" "$PWD/target/release/pkgconfig"
#   PKG_CONFIG_PATH=$PWD/target/release/pkgconfig pkg-config --cflags --libs icr_app
# For an install, copy libicr_app.* to PREFIX/lib and include/icr_app.h to PREFIX/include,
# then: sh bindings/c/pkgconfig.sh PREFIX/lib PREFIX/lib/pkgconfig PREFIX/include
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 2 ]; then
    echo "usage: pkgconfig.sh LIB_DIR OUT_DIR [INCLUDE_DIR]" >&2
    exit 2
fi
lib_dir=$(cd "$1" && pwd)
include_dir=${3:-$here/include}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/../../Cargo.toml" | head -n 1)
mkdir -p "$2"
sed -e "s|@LIBDIR@|$lib_dir|" -e "s|@INCLUDEDIR@|$include_dir|" -e "s|@VERSION@|$version|" \
    "$here/icr_app.pc.in" > "$2/icr_app.pc"
echo "wrote $2/icr_app.pc"
