#!/usr/bin/env bash
# bench/webhook — signed LINE webhooks at kizuna over loopback, with wrk,
# then the same load at a peer built with LINE's Node.js SDK.
#
#   bench/webhook/run.sh            (make bench-webhook)
#
# Expects build/bin/kizuna (make build). Installs wrk with apt when missing
# (as root), and the peer's npm packages with `npm ci` into
# bench/webhook/peer/node_modules. Everything runs on 127.0.0.1 and stops by
# itself. See bench/webhook/README.md.
#
# Environment (defaults):
#   DURATION=10      seconds per measured wrk run
#   WARMUP=3         seconds of 1-event load before each server's runs
#                    (Node's JIT, SQLite's page cache); 0 skips it
#   CONNECTIONS=64   wrk connections
#   THREADS=2        wrk threads
#   RATE_CAP_1=75000 RATE_CAP_10=30000
#                    req/s the pre-generated bodies cover for DURATION seconds
#                    (1-event and 10-event bodies); a run faster than that
#                    would reuse bodies and fails verification: raise them
#   PEER=1           0 skips the peer
#   KIZUNA=build/bin/kizuna
#   KEEP=0           1 keeps the temp dir (bodies, config, store, logs)
#
# Exit status: 0 after a measurement, targets met or not; 1 when the
# verification fails; 2 when something needed is missing or breaks.

set -eu
set -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
RATE_CAP_1=${RATE_CAP_1:-75000}
RATE_CAP_10=${RATE_CAP_10:-30000}
PEER=${PEER:-1}
KIZUNA=${KIZUNA:-$root/build/bin/kizuna}
KEEP=${KEEP:-0}
SIZES="1 10"

die() { echo "bench/webhook: $*" >&2; exit 2; }
say() { echo "bench/webhook: $*"; }

for v in DURATION CONNECTIONS THREADS RATE_CAP_1 RATE_CAP_10; do
    case ${!v} in
        '' | *[!0-9]* | 0) die "$v must be a positive integer (got '${!v}')" ;;
    esac
done
case $WARMUP in '' | *[!0-9]*) die "WARMUP must be a whole number of seconds (got '$WARMUP')" ;; esac
[ "$CONNECTIONS" -ge "$THREADS" ] || die "CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)"

# --- what the run needs ------------------------------------------------------

[ -x "$KIZUNA" ] || die "$KIZUNA not found: build it first with 'make build'"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        say "installing wrk"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
            die "apt-get install wrk failed"
    else
        die "wrk is missing; run as root:  sudo apt-get install -y wrk"
    fi
fi
for tool in node curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing; run as root:  sudo apt-get install -y ${tool/node/nodejs}"
done
if [ "$PEER" = 1 ]; then
    command -v npm >/dev/null 2>&1 || die "npm is missing (needed for the peer; PEER=0 skips it)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kizuna-bench-webhook.XXXXXX")
daemon_pid=""
peer_pid=""

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "bench/webhook: $2 did not stop in 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$daemon_pid" kizuna
    stop_pid "$peer_pid" peer
    daemon_pid=""
    peer_pid=""
    if [ "$KEEP" = 1 ]; then
        echo "bench/webhook: kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# value KEY FILE: the value of KEY=... on the last "BENCH"/"GEN" line of FILE
value() {
    sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" "$2" | tail -n 1
}

# port_free PORT: nothing answers a TCP connect on 127.0.0.1:PORT
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- bodies --------------------------------------------------------------------

secret=$(node -e 'process.stdout.write(require("crypto").randomBytes(16).toString("hex"))')

# Body sets: "warm" (1 event, for the warm-up runs), "1" and "10". Each set
# is one generator run, so its webhookEventIds share an id prefix of their own.
runs=$SIZES
[ "$WARMUP" = 0 ] || runs="warm $SIZES"
events_of() { [ "$1" = warm ] && echo 1 || echo "$1"; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
say "load average before the run: $load_before (the figures assume an otherwise idle machine)"
say "generating bodies in $tmp (${DURATION} s at up to ${RATE_CAP_1} / ${RATE_CAP_10} req/s)"
gen_pids=""
for r in $runs; do
    case $r in
        warm) count=$(( RATE_CAP_1 * WARMUP )) ;;
        *) cap_var=RATE_CAP_$r; count=$(( ${!cap_var} * DURATION )) ;;
    esac
    node "$here/genbodies.js" --secret "$secret" --events "$(events_of "$r")" --count "$count" \
        --parts "$THREADS" --out "$tmp/bodies-$r" >"$tmp/gen-$r.txt" 2>&1 &
    gen_pids="$gen_pids $!"
done
for pid in $gen_pids; do
    wait "$pid" || { cat "$tmp"/gen-*.txt >&2; die "genbodies.js failed"; }
done
for r in $runs; do
    say "  $r: $(value bodies "$tmp/gen-$r.txt") bodies of $(events_of "$r") event(s)," \
        "$(value avg_bytes "$tmp/gen-$r.txt") bytes each on average"
done
# The bodies are gigabytes just written: flush them now, or the kernel
# writes them back during the measured runs and every fsync of the store
# (and so every answer) queues behind that I/O (10-event p99 115-400 ms
# instead of ~15 ms).
dirty_kb() { awk '/^Dirty:/ { print $2 }' /proc/meminfo 2>/dev/null || echo '?'; }
say "flushing the bodies to disk ($(dirty_kb) kB dirty)"
sync -f "$tmp/gen-1.txt" 2>/dev/null || sync

# --- wrk -------------------------------------------------------------------------

# run_wrk URL RUN OUT: one bounded wrk run with rotate.lua over body set RUN;
# OUT gets its output
run_wrk() {
    local secs=$DURATION
    [ "$2" != warm ] || secs=$WARMUP
    rm -f "$tmp/bodies-$2".ready.* # rotate.lua's start barrier
    timeout $(( secs + 120 )) wrk -t "$THREADS" -c "$CONNECTIONS" -d "${secs}s" \
        --timeout 10s --latency -s "$here/rotate.lua" "$1" -- "$tmp/bodies-$2" "$THREADS" >"$3" 2>&1 ||
        { cat "$3" >&2; die "wrk failed against $1"; }
    grep -q '^BENCH ' "$3" || { cat "$3" >&2; die "wrk printed no BENCH line"; }
}

# --- kizuna ----------------------------------------------------------------------

# metric NAME LABELS FILE: the value of NAME{LABELS} in a /metrics scrape, 0 if absent
metric() {
    awk -v want="$1{$2}" '$1 == want { v = $2 } END { printf "%d\n", v + 0 }' "$3"
}

scrape() { # scrape PORT FILE
    curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" >"$2" || die "GET /metrics failed"
}

cpu_ticks() { # utime + stime of a process, in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

start_daemon() {
    local try port sbx_port i
    for try in $(seq 1 20); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        sbx_port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        [ "$port" != "$sbx_port" ] && port_free "$port" && port_free "$sbx_port" || continue
        # the embedded sandbox gets its own port and store too: the defaults
        # (127.0.0.1:8081, var/sandbox.db) are the demo's
        cat >"$tmp/kizuna.conf" <<EOF
# written by bench/webhook/run.sh
kizuna = {
  listen     = "127.0.0.1:$port";
  store      = "sqlite:$tmp/kizuna.db";
  durability = "full";
  log_level  = "warn";
  sandbox    = { listen = "127.0.0.1:$sbx_port"; store = "sqlite:$tmp/sandbox.db"; };
};
shops = (
  { id = "bench";
    line = { channel_secret = "$secret"; access_token = "x"; api = "sandbox"; };
  }
);
EOF
        "$KIZUNA" check -c "$tmp/kizuna.conf" >"$tmp/check.txt" 2>&1 ||
            { cat "$tmp/check.txt" >&2; die "kizuna check failed on the bench config"; }
        "$KIZUNA" serve -c "$tmp/kizuna.conf" >>"$tmp/kizuna.log" 2>&1 &
        daemon_pid=$!
        for i in $(seq 1 100); do
            kill -0 "$daemon_pid" 2>/dev/null || break
            if curl -fsS --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
                kizuna_port=$port
                return 0
            fi
            sleep 0.1
        done
        stop_pid "$daemon_pid" kizuna # port taken meanwhile, or it would not start
        daemon_pid=""
    done
    cat "$tmp/kizuna.log" >&2
    die "kizuna did not start (20 ports tried)"
}

failed=0
fail() { echo "bench/webhook: VERIFICATION FAILED: $*" >&2; failed=1; }

start_daemon
say "$("$KIZUNA" version 2>/dev/null | head -n 1) on 127.0.0.1:$kizuna_port, store $tmp/kizuna.db (durability full)"

for r in $runs; do
    n=$(events_of "$r")
    if [ "$r" = warm ]; then
        say "kizuna, warm-up: ${WARMUP} s of 1-event requests"
    else
        say "kizuna, $n event(s) per request: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
    fi
    scrape "$kizuna_port" "$tmp/metrics-before-$r.txt"
    cpu0=$(cpu_ticks "$daemon_pid")
    run_wrk "http://127.0.0.1:$kizuna_port/webhook/bench" "$r" "$tmp/wrk-kizuna-$r.txt"
    cpu1=$(cpu_ticks "$daemon_pid")
    # Requests still in flight when wrk stopped finish on their own: scrape
    # until two scrapes 0.3 s apart agree (3 s at most).
    scrape "$kizuna_port" "$tmp/metrics-after-$r.txt"
    for i in $(seq 1 10); do
        sleep 0.3
        scrape "$kizuna_port" "$tmp/metrics-again.txt"
        cmp -s "$tmp/metrics-again.txt" "$tmp/metrics-after-$r.txt" && break
        mv "$tmp/metrics-again.txt" "$tmp/metrics-after-$r.txt"
    done

    out=$tmp/wrk-kizuna-$r.txt
    requests=$(value requests "$out") non2xx=$(value non2xx "$out") errors=$(value errors "$out")
    sent=$(value sent "$out") wrapped=$(value wrapped "$out")
    d() { echo $(( $(metric "$1" "$2" "$tmp/metrics-after-$r.txt") - $(metric "$1" "$2" "$tmp/metrics-before-$r.txt") )); }
    stored=$(d kizuna_webhook_events_total 'shop="bench",result="stored"')
    dup=$(d kizuna_webhook_events_total 'shop="bench",result="duplicate"')
    answered=$(d kizuna_webhook_requests_total 'shop="bench",code="200"')
    ok2xx=$(( requests - non2xx ))
    eval "stored_$r=$stored sent_$r=$sent ok2xx_$r=$ok2xx"
    awk -v t="$(( cpu1 - cpu0 ))" -v hz="$(getconf CLK_TCK)" -v d="$(value duration_us "$out")" \
        'BEGIN { printf "bench/webhook:   daemon CPU %.0f%% of one core\n", 100 * t / hz / (d / 1e6) }' |
        tee "$tmp/cpu-kizuna-$r.txt"
    say "  wrk: $requests answers ($non2xx non-2xx, $errors socket errors), $sent requests sent;" \
        "daemon: $answered answered 200, $stored events stored, $dup duplicates"

    [ "$wrapped" = 0 ] ||
        fail "$r: the bodies ran out and were reused ($wrapped wraps): raise RATE_CAP_$n"
    [ "$non2xx" = 0 ] || fail "$r: $non2xx requests were answered with a non-2xx status"
    [ "$errors" = 0 ] || echo "bench/webhook:   warning: $errors socket errors or time-outs" >&2
    [ "$dup" = 0 ] || fail "$r: $dup events counted as duplicates"
    # Events are counted when stored; a request wrk gave up on (in flight
    # when it closed its connections) may be stored and never answered.
    [ "$stored" -ge $(( answered * n )) ] && [ "$stored" -le $(( sent * n )) ] ||
        fail "$r: $stored events stored; want from $(( answered * n )) ($answered requests answered 200) to $(( sent * n )) (sent)"
    # Every request wrk saw answered with 2xx was answered 200 by the daemon;
    # it may have answered a few more that were still in flight when wrk
    # stopped, but never more than wrk sent.
    [ "$answered" -ge "$ok2xx" ] && [ "$answered" -le "$sent" ] ||
        fail "$r: the daemon answered $answered requests with 200; wrk saw $ok2xx 2xx answers and sent $sent"
done

stop_pid "$daemon_pid" kizuna
daemon_pid=""

# The rows themselves: each size's events carry their generator run's id
# prefix; count them (and distinct ids) in the store the daemon left behind.
# The rows themselves, in the store the daemon left behind: each body set's
# events carry that set's id prefix. Every request wrk saw answered 2xx must
# be there, nothing wrk did not send, each event once. (Requests in flight
# when wrk stopped may be stored without wrk seeing the answer.)
if command -v sqlite3 >/dev/null 2>&1; then
    total_want=0 checked_rows=0
    for r in $runs; do
        n=$(events_of "$r")
        prefix=$(value id_prefix "$tmp/gen-$r.txt")
        rows=$(sqlite3 "$tmp/kizuna.db" \
            "SELECT count(*) || ' ' || count(DISTINCT uid) FROM events
             WHERE shop = 'bench' AND substr(uid, 11, 8) = '$prefix';") ||
            die "sqlite3 could not read $tmp/kizuna.db"
        count=${rows% *} distinct=${rows#* }
        stored=$(eval echo "\$stored_$r") sent=$(eval echo "\$sent_$r") ok2xx=$(eval echo "\$ok2xx_$r")
        say "store: $r: $count rows, $distinct distinct webhookEventIds" \
            "(wrk: $(( ok2xx * n )) events answered 2xx, $(( sent * n )) sent; /metrics: $stored stored)"
        [ "$count" = "$distinct" ] || fail "$r: $count rows but $distinct distinct webhookEventIds"
        [ $(( count % n )) = 0 ] || fail "$r: $count rows is not a whole number of $n-event bodies"
        [ "$count" -ge $(( ok2xx * n )) ] ||
            fail "$r: $count rows, fewer than the $(( ok2xx * n )) events wrk saw answered 2xx"
        [ "$count" -le $(( sent * n )) ] || fail "$r: $count rows, more than the $(( sent * n )) events sent"
        [ "$count" = "$stored" ] || fail "$r: /metrics counted $stored stored events, the store holds $count"
        total_want=$(( total_want + count ))
        [ "$r" = warm ] || checked_rows=$(( checked_rows + count ))
    done
    total=$(sqlite3 "$tmp/kizuna.db" "SELECT count(*) FROM events;")
    [ "$total" = "$total_want" ] || fail "the store holds $total events in all, want $total_want"
else
    say "sqlite3 not installed: rows not counted (the /metrics checks above still ran)"
fi

# --- peer -------------------------------------------------------------------------

if [ "$PEER" = 1 ]; then
    if [ ! -d "$here/peer/node_modules/@line/bot-sdk" ] || [ ! -d "$here/peer/node_modules/express" ]; then
        say "installing the peer's packages (npm ci)"
        (cd "$here/peer" && npm ci --no-audit --no-fund --loglevel=error) >"$tmp/npm.txt" 2>&1 ||
            { cat "$tmp/npm.txt" >&2; die "npm ci failed in $here/peer"; }
    fi
    for try in $(seq 1 20); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        port_free "$port" || continue
        (cd "$here/peer" && PORT=$port CHANNEL_SECRET=$secret exec node server.js) >>"$tmp/peer.log" 2>&1 &
        peer_pid=$!
        for i in $(seq 1 100); do
            kill -0 "$peer_pid" 2>/dev/null || break
            grep -q '^peer listening' "$tmp/peer.log" && break
            sleep 0.1
        done
        if kill -0 "$peer_pid" 2>/dev/null && grep -q '^peer listening' "$tmp/peer.log"; then
            peer_port=$port
            break
        fi
        stop_pid "$peer_pid" peer
        peer_pid=""
    done
    [ -n "$peer_pid" ] || { cat "$tmp/peer.log" >&2; die "the peer did not start"; }
    say "$(tail -n 1 "$tmp/peer.log") — node $(node --version)"
    for r in $runs; do
        if [ "$r" = warm ]; then
            say "peer, warm-up: ${WARMUP} s of 1-event requests"
        else
            say "peer, $r event(s) per request: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
        fi
        run_wrk "http://127.0.0.1:$peer_port/webhook/bench" "$r" "$tmp/wrk-peer-$r.txt"
        out=$tmp/wrk-peer-$r.txt
        say "  wrk: $(value requests "$out") answers ($(value non2xx "$out") non-2xx, $(value errors "$out") socket errors)"
        [ "$(value non2xx "$out")" = 0 ] ||
            fail "peer, $r: non-2xx answers (the SDK refused a signature?)"
    done
    stop_pid "$peer_pid" peer
    peer_pid=""
fi

# --- summary ------------------------------------------------------------------------

echo
echo "bench/webhook: $THREADS wrk threads, $CONNECTIONS connections, ${DURATION} s per run" \
     "(after ${WARMUP} s warm-up), loopback, kizuna durability full, $(nproc) cores," \
     "load average before: $load_before"
printf '%-9s %-7s %10s %10s %9s %9s\n' body server 'req/s' 'events/s' p50 p99
for n in $SIZES; do
    for server in kizuna peer; do
        out=$tmp/wrk-$server-$n.txt
        [ -f "$out" ] || continue
        awk -v n="$n" -v s="$server" -v rps="$(value rps "$out")" \
            -v p50="$(value p50_us "$out")" -v p99="$(value p99_us "$out")" 'BEGIN {
                printf "%-9s %-7s %10.0f %10.0f %6.2f ms %6.2f ms\n",
                       n (n == 1 ? " event" : " events"), s, rps, rps * n, p50 / 1000, p99 / 1000 }'
    done
done

echo
echo "targets (2-core machine):"
target() { # target TEXT MEASURED MET
    printf '  %-44s %-14s %s\n' "$1" "$2" "$([ "$3" = 1 ] && echo met || echo MISSED)"
}
k1=$(value rps "$tmp/wrk-kizuna-1.txt")
k10=$(value rps "$tmp/wrk-kizuna-10.txt")
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }
target "1 event: >= 50,000 req/s" "$(printf '%.0f req/s' "$k1")" "$(ge "$k1" 50000)"
if [ -f "$tmp/wrk-peer-1.txt" ]; then
    for n in $SIZES; do
        k=$(value rps "$tmp/wrk-kizuna-$n.txt")
        p=$(value rps "$tmp/wrk-peer-$n.txt")
        ratio=$(awk -v k="$k" -v p="$p" 'BEGIN { printf "%.2f", (p > 0) ? k / p : 0 }')
        if [ "$n" = 1 ]; then
            target "1 event: >= 10x the peer's req/s" "${ratio}x" "$(ge "$ratio" 10)"
        else
            printf '  %-44s %s\n' "$n events: kizuna / peer req/s (no target)" "${ratio}x"
        fi
    done
fi
target "10 events: >= 20,000 req/s" "$(printf '%.0f req/s' "$k10")" "$(ge "$k10" 20000)"
for n in $SIZES; do
    p99=$(value p99_us "$tmp/wrk-kizuna-$n.txt")
    met=$(awk -v p="$p99" 'BEGIN { print (p < 5000) ? 1 : 0 }')
    [ "$CONNECTIONS" = 64 ] || met=0
    target "$n event(s): p99 < 5 ms at 64 connections" "$(awk -v p="$p99" 'BEGIN { printf "%.2f ms", p / 1000 }')" "$met"
done
[ "$CONNECTIONS" = 64 ] || echo "  (p99 target is for CONNECTIONS=64; this run used $CONNECTIONS)"

echo
if [ "$failed" = 0 ]; then
    if [ -n "${checked_rows:-}" ]; then
        echo "verification: ok — every event answered 2xx is in the store exactly once" \
             "($checked_rows events in the measured runs; no duplicate; no body reused)"
    else
        echo "verification: ok (/metrics only) — $(( stored_1 + stored_10 )) events stored," \
             "0 duplicates, no body reused"
    fi
else
    echo "verification: FAILED (see above)"
    exit 1
fi
