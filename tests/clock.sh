#!/bin/sh
# The virtual clock of a running daemon from the command line: `kizuna serve
# --clock virtual:TIME`, `kizuna sandbox clock` and `kizuna sandbox advance`
# (through the admin API), with a broadcast scheduled with --at that goes
# out when the walk reaches its time, in the sandbox's inbox as soon as the
# advance returns.
# usage: clock.sh KIZUNA
set -u
K=$1
T=$(cd "$(mktemp -d)" && pwd -P)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$T"' EXIT
. "$(dirname "$0")/expect.sh"
# expect_text NAME WANTED_EXIT WANTED_OUTPUT -- command...: the output inline
expect_text() {
    printf '%s\n' "$3" >"$T/want"
    name=$1 rc=$2
    shift 3
    expect "$name" "$rc" "$T/want" "$@"
}

# Fixed ports below Linux's ephemeral range (32768-60999), where no port
# another test's client or listen-on-0 got from the kernel can be; cli.sh
# takes 20000-25999, this script 26000-31999.
SBX_PORT=$((26000 + ($$ % 3000) * 2))
KZ_PORT=$((SBX_PORT + 1))
U=U0123456789abcdef0123456789abcdef
export KZ_CLOCK_TOKEN=t0ken
cat >"$T/k.conf" <<EOF
kizuna: { store = "sqlite:$T/k.db"; listen = "127.0.0.1:$KZ_PORT"; admin_token = "env:KZ_CLOCK_TOKEN";
  sandbox = { listen = "127.0.0.1:$SBX_PORT"; store = "sqlite:$T/sbx.db"; }; };
shops = ( { id = "a"; line = { channel_secret = "sec"; access_token = "tok"; api = "sandbox"; }; } );
EOF
sed 's/admin_token = "env:KZ_CLOCK_TOKEN";//' "$T/k.conf" >"$T/notoken.conf"

# ---- no daemon, no token, bad input
expect_text "clock without daemon" 1 "kizuna sandbox: kizuna is not running at 127.0.0.1:$KZ_PORT (start it with kizuna serve -c FILE --clock virtual)" \
    -- "$K" sandbox -c "$T/k.conf" clock
expect_text "advance without token" 1 "kizuna sandbox: advance goes through the daemon's admin API: set kizuna.admin_token (docs/http.md)" \
    -- "$K" sandbox -c "$T/notoken.conf" advance 1d
expect_text "advance bad duration" 2 "kizuna sandbox: advance: '3x' is not a duration (90s, 15m, 2h, 3d, 1w, 1h30m)" \
    -- "$K" sandbox -c "$T/k.conf" advance 3x
expect_text "advance bad time" 2 "kizuna sandbox: advance: 'soon' is not a time (2026-12-01T10:00:00+09:00)" \
    -- "$K" sandbox -c "$T/k.conf" advance --to soon
"$K" sandbox -c "$T/k.conf" advance >"$T/out" 2>&1
[ $? = 2 ] || fail "advance without a duration: exit code"
grep -q "usage: kizuna sandbox -c FILE advance DURATION|--to TIME \[--timeout DURATION\]" "$T/out" ||
    fail "advance usage: $(cat "$T/out")"
expect_text "advance timeout over 10m" 2 "kizuna sandbox: advance: --timeout '11m' is not a duration between 1ms and 10m" \
    -- "$K" sandbox -c "$T/k.conf" advance 1d --timeout 11m
"$K" sandbox -c "$T/k.conf" clock --timeout 1m >"$T/out" 2>&1
[ $? = 2 ] || fail "clock --timeout: exit code"

# ---- a daemon on a virtual clock: 2040-01-01 09:00 in Tokyo
start() {
    "$K" serve -c "$T/k.conf" "$@" >>"$T/serve.log" 2>&1 &
    PID=$!
    i=0
    until "$K" sandbox -c "$T/k.conf" clock >"$T/out" 2>&1 || [ $i -ge 100 ]; do
        i=$((i + 1))
        sleep 0.1
    done
}
stop() {
    kill $PID
    wait $PID || fail "serve: unclean exit"
    PID=
}
start --clock virtual:2040-01-01T00:00:00Z
expect_text "clock" 0 "2040-01-01T00:00:00Z (virtual clock)" -- "$K" sandbox -c "$T/k.conf" clock
"$K" sandbox -c "$T/k.conf" follow a $U >"$T/out" 2>&1 || fail "follow: $(cat "$T/out")"
# a walk of 0 returns once the follow is handled: the shop has a friend
"$K" sandbox -c "$T/k.conf" advance 0s >"$T/out" 2>&1 || fail "advance 0s: $(cat "$T/out")"
grep -q "^clock at 2040-01-01T00:00:00Z (virtual clock): 0 step(s), 0 timer(s) fired" "$T/out" ||
    fail "advance 0s: $(cat "$T/out")"
echo '[{"type":"text","text":"元日セール"}]' >"$T/msg.json"
"$K" broadcast -c "$T/k.conf" a --segment '!tag("none")' --message "$T/msg.json" \
    --at 2040-01-01T10:00:00+09:00 >"$T/out" 2>&1 || fail "broadcast --at: $(cat "$T/out")"
grep -q "scheduled for 2040-01-01T10:00:00+09:00" "$T/out" || fail "broadcast --at: $(cat "$T/out")"
# 30 minutes: not yet
"$K" sandbox -c "$T/k.conf" advance 30m >"$T/out" 2>&1 || fail "advance 30m: $(cat "$T/out")"
grep -q "^clock at 2040-01-01T00:30:00Z (virtual clock): 1 step(s), 0 timer(s) fired" "$T/out" ||
    fail "advance 30m: $(cat "$T/out")"
"$K" sandbox -c "$T/k.conf" inbox a $U >"$T/out" 2>&1
head -n 1 "$T/out" | grep -q "friend, 0 message(s)" || fail "inbox before its time: $(cat "$T/out")"
# past 10:00 in Tokyo: the broadcast's timer fires at 01:00Z and it goes out
"$K" sandbox -c "$T/k.conf" advance 1d --timeout 2m >"$T/out" 2>&1 || fail "advance 1d: $(cat "$T/out")"
grep -q "^clock at 2040-01-02T00:30:00Z (virtual clock): 2 step(s), 1 timer(s) fired" "$T/out" ||
    fail "advance 1d: $(cat "$T/out")"
"$K" sandbox -c "$T/k.conf" inbox a $U >"$T/out" 2>&1
head -n 1 "$T/out" | grep -q "friend, 1 message(s)" || fail "inbox after advance: $(cat "$T/out")"
grep -q "元日セール" "$T/out" || fail "inbox: no broadcast text: $(cat "$T/out")"
expect_text "advance --to" 0 "clock at 2040-01-03T00:00:00Z (virtual clock): 1 step(s), 0 timer(s) fired, 0 event(s) handled" \
    -- "$K" sandbox -c "$T/k.conf" advance --to 2040-01-03T09:00:00+09:00
expect_text "advance --to the past" 1 "kizuna sandbox: admin API: 400 that time is 86400000 ms before the clock: it never goes back" \
    -- "$K" sandbox -c "$T/k.conf" advance --to 2040-01-02T00:00:00Z
# kizuna publish stamps events with the daemon's clock, not its own: the
# friend's last interaction is the virtual 2040-01-03
"$K" publish -c "$T/k.conf" a line.message.text --user $U '{"type":"message"}' >"$T/out" 2>&1 ||
    fail "publish: $(cat "$T/out")"
"$K" sandbox -c "$T/k.conf" advance 0s >"$T/out" 2>&1 || fail "advance 0s: $(cat "$T/out")"
"$K" friend -c "$T/k.conf" a $U --json >"$T/out" 2>&1
grep -q '"lastActive": *"2040-01-03T00:00:00Z"' "$T/out" || fail "published event's time: $(cat "$T/out")"
stop

# ---- on the real clock: read, never moved
start
"$K" sandbox -c "$T/k.conf" clock >"$T/out" 2>&1 || fail "clock (real): $(cat "$T/out")"
grep -q "Z (real clock)$" "$T/out" || fail "clock (real): $(cat "$T/out")"
expect_text "advance on a real clock" 1 "kizuna sandbox: admin API: 409 the clock is real: only a virtual clock moves when told (kizuna serve --clock virtual[:TIME])" \
    -- "$K" sandbox -c "$T/k.conf" advance 1d
stop

if [ $failures -gt 0 ]; then
    echo "--- serve log"
    tail -n 30 "$T/serve.log"
    echo "0 passed, $failures failed"
    exit 1
fi
echo "clock: all checks passed"
