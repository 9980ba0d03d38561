#!/bin/sh
# Installs dsv4 into a temporary prefix, then builds and runs a consumer with find_package(dsv4) and with
# pkg-config.
set -eu
build=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src/tests/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/consumer" > "$work/build.log"
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/consumer/consumer"
if ! command -v pkg-config >/dev/null; then echo "install consumer: 1 passed, 0 failed (no pkg-config here)"; exit 0; fi
libdir=$(ls -d "$work"/prefix/lib*/pkgconfig | head -n 1)
flags=$(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs dsv4)
cc -o "$work/pc_consumer" "$src/tests/consumer/main.c" $flags
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/pc_consumer"
echo "install consumer: 1 passed, 0 failed"
