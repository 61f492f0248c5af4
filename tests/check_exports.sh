#!/bin/sh
# check_exports.sh DIR_OR_SO...
#
# Fails unless every plugin exports exactly one dynamic symbol,
# kizuna_plugin_v1 (plugin-hosts.md, recommendation 23). A directory stands
# for every *.so in it and must hold at least one; a file must exist, so an
# unbuilt plugin fails the check instead of passing it.
set -u
status=0
checked=0

check() {
    syms=$(nm -D --defined-only "$1" 2>&1 | awk 'NF >= 3 { print $3 } NF == 2 { print $2 }')
    if [ "$syms" = "kizuna_plugin_v1" ]; then
        echo "ok: $1"
    else
        echo "FAIL: $1 must export exactly kizuna_plugin_v1, exports:" $syms
        status=1
    fi
    checked=$((checked + 1))
}

for arg in "$@"; do
    if [ -d "$arg" ]; then
        found=0
        for so in "$arg"/*.so; do
            [ -e "$so" ] || continue
            found=1
            check "$so"
        done
        if [ "$found" = 0 ]; then
            echo "FAIL: no plugin (*.so) in $arg; build first"
            status=1
        fi
    elif [ -f "$arg" ]; then
        check "$arg"
    else
        echo "FAIL: $arg does not exist; build first"
        status=1
    fi
done

if [ "$checked" = 0 ]; then
    echo "FAIL: nothing checked"
    status=1
fi
exit $status
