# Sourced by the shell tests (cli.sh, clock.sh): failures are counted, not
# fatal, so one run reports every difference. Needs $T, a scratch folder.
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
# expect NAME WANTED_EXIT WANTED_OUTPUT_FILE -- command...
expect() {
    name=$1 want_rc=$2 want=$3
    shift 4
    "$@" >"$T/out" 2>&1
    rc=$?
    [ "$rc" = "$want_rc" ] || fail "$name: exit $rc, wanted $want_rc"
    if ! diff -u "$want" "$T/out" >"$T/diff"; then
        fail "$name: output differs"
        cat "$T/diff"
    fi
}
