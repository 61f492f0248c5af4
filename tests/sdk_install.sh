#!/bin/sh
# sdk_install: install the build into a temp prefix, build the hello example
# out of tree (a) with find_package(kizuna) and (b) with pkg-config + make,
# check that each hello.so exports exactly kizuna_plugin_v1, and that the
# host lists it:   kizuna plugins -c <conf>
# must print a line whose whitespace-separated columns are
#   hello  0.1.0  kizuna  MIT  ABI  1.0  <absolute path of that hello.so>
#
# usage: sh tests/sdk_install.sh <source dir> <build dir>
set -eu

src=$(cd "$1" && pwd -P)
# The ABI the packages must carry: the one kizuna/host.h defines.
ABI=$(sed -n 's/^#define KZ_ABI_MAJOR \([0-9]*\)$/\1/p' "$src/sdk/include/kizuna/host.h").$(sed -n 's/^#define KZ_ABI_MINOR \([0-9]*\)$/\1/p' "$src/sdk/include/kizuna/host.h")
build=$(cd "$2" && pwd -P)
umask 022 # the host refuses group/world-writable plugins

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kz_sdk_install.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "sdk_install: FAIL: $*" >&2
    exit 1
}
step() {
    echo "sdk_install: $*"
}

# The out-of-tree builds are plain (unsanitized) builds even when the host
# is sanitized; drop flags the parent build or ctest may have exported.
unset CFLAGS LDFLAGS CPPFLAGS CMAKE_BUILD_TYPE 2>/dev/null || true

prefix=$tmp/prefix
step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }

for f in include/kizuna/host.h include/kizuna/event.h include/kizuna/setting.h \
    include/kizuna/plugin.h include/kizuna/testing.h share/kizuna/kizuna_plugin.map; do
    [ -f "$prefix/$f" ] || fail "not installed: $f"
done
cfg=$(find "$prefix" -name kizunaConfig.cmake | head -n 1)
[ -n "$cfg" ] || fail "kizunaConfig.cmake not installed"
for f in kizunaConfigVersion.cmake kizunaTargets.cmake kizunaPlugin.cmake; do
    [ -f "$(dirname "$cfg")/$f" ] || fail "not installed next to kizunaConfig.cmake: $f"
done
pc=$(find "$prefix" -name kizuna-sdk.pc | head -n 1)
[ -n "$pc" ] || fail "kizuna-sdk.pc not installed"
pcdir=$(dirname "$pc")

# ---- pkg-config file ------------------------------------------------------
export PKG_CONFIG_PATH="$pcdir"
pkg-config --exists 'kizuna-sdk >= 1.0' || fail "pkg-config: kizuna-sdk >= 1.0 not found"
[ "$(pkg-config --modversion kizuna-sdk)" = "$ABI" ] ||
    fail "pkg-config version is $(pkg-config --modversion kizuna-sdk), want $ABI"
cflags=$(pkg-config --cflags kizuna-sdk)
inc=$(echo "$cflags" | sed -n 's/.*-I\([^ ]*\).*/\1/p')
[ -f "$inc/kizuna/plugin.h" ] || fail "pkg-config --cflags '$cflags' does not reach kizuna/plugin.h"
[ -z "$(pkg-config --libs kizuna-sdk | tr -d ' ')" ] || fail "pkg-config --libs is not empty"
ldflags=$(pkg-config --variable=plugin_ldflags kizuna-sdk)
map=$(echo "$ldflags" | sed -n 's/.*--version-script=\([^ ]*\).*/\1/p')
[ -f "$map" ] || fail "plugin_ldflags '$ldflags': version script not found"
case "$ldflags" in *-z,defs*) ;; *) fail "plugin_ldflags lacks -z defs: $ldflags" ;; esac
plugindir=$(pkg-config --variable=plugindir kizuna-sdk)
case "$plugindir" in */kizuna/plugins) ;; *) fail "plugindir is '$plugindir'" ;; esac

# ---- (a) CMake: find_package(kizuna) + kizuna_add_plugin -------------------
step "cmake out-of-tree build of sdk/examples/hello"
cmake -S "$src/sdk/examples/hello" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 &&
    cmake --build "$tmp/b" >>"$tmp/cmake.log" 2>&1 ||
    { cat "$tmp/cmake.log" >&2; fail "out-of-tree CMake build"; }
so_cmake=$tmp/b/hello.so
[ -f "$so_cmake" ] || fail "CMake build made no $so_cmake"

# ---- (b) make + pkg-config ------------------------------------------------
step "make + pkg-config build of a copy of sdk/examples/hello"
mkdir -p "$tmp/mk"
cp "$src/sdk/examples/hello/hello.c" "$src/sdk/examples/hello/Makefile" "$tmp/mk/"
make -C "$tmp/mk" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; fail "make build"; }
so_make=$tmp/mk/hello.so
[ -f "$so_make" ] || fail "make build made no $so_make"

# ---- exports: exactly kizuna_plugin_v1 -----------------------------------
for so in "$so_cmake" "$so_make"; do
    syms=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort | tr '\n' ' ')
    [ "$syms" = "kizuna_plugin_v1 " ] ||
        fail "$so exports '$syms', want exactly kizuna_plugin_v1"
done

# ---- the host lists each build --------------------------------------------
kizuna=$build/bin/kizuna
[ -x "$kizuna" ] || fail "no host binary at $kizuna"
for so in "$so_cmake" "$so_make"; do
    dir=$(dirname "$so")
    conf=$tmp/kizuna.conf
    cat >"$conf" <<CONF
kizuna: {
  plugin_path = "$dir";
  store = "sqlite:$tmp/k.db";
};
CONF
    step "kizuna plugins -c $conf (plugin_path $dir)"
    rc=0
    "$kizuna" plugins -c "$conf" >"$tmp/plugins.out" 2>"$tmp/plugins.err" || rc=$?
    [ "$rc" -eq 0 ] || {
        cat "$tmp/plugins.out" "$tmp/plugins.err" >&2
        fail "kizuna plugins exited with $rc"
    }
    line=$(awk -v path="$so" -v abi="$ABI" '$1 == "hello" && $2 == "0.1.0" && $3 == "kizuna" &&
                $4 == "MIT" && $5 == "ABI" && $6 == abi && $7 == path && NF == 7' \
        "$tmp/plugins.out")
    [ -n "$line" ] || {
        echo "--- kizuna plugins output:" >&2
        cat "$tmp/plugins.out" "$tmp/plugins.err" >&2
        fail "no line 'hello 0.1.0 kizuna MIT ABI $ABI $so'"
    }
done

step "ok"
