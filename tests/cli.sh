#!/bin/sh
# The kizuna command line on the real binary: exact output and exit codes of
# check, plugins, publish, kv, events, serve and sandbox for good and bad input.
# usage: cli.sh KIZUNA BUS_FIXTURE_DIR LOADER_FIXTURE_DIR
set -u
K=$1
BUS_FX=$2
LOADER_FX=$3
T=$(cd "$(mktemp -d)" && pwd -P)
trap 'rm -rf "$T"' EXIT
umask 022
# The host's ABI as the binary reports it: refusals and listings name it.
ABI=$("$K" version | sed -n 's/.*plugin ABI \([0-9.]*\)).*/\1/p')
. "$(dirname "$0")/expect.sh"

# Plugins live in a private directory: the loader refuses group-writable ones.
mkdir -m 0755 "$T/plugins" "$T/bad"
cp "$BUS_FX/fx_counter.so" "$LOADER_FX/fx_ok.so" "$T/plugins/"
cp "$LOADER_FX/fx_major2.so" "$LOADER_FX/fx_ok.so" "$T/bad/"

# ---- check: a good file
cat >"$T/good.conf" <<EOF
kizuna: { store = "sqlite:$T/k.db"; plugin_path = "$T/plugins"; };
shops = ( { id = "a"; plugins = { fx_counter = { }; }; } );
EOF
echo "$T/good.conf: ok (1 shop(s), 1 plugin setting(s), 1 plugin(s) loaded)" >"$T/want"
expect "check good" 0 "$T/want" -- "$K" check -c "$T/good.conf"

# ---- check: plugin problems are reported with the line of the plugin's group
cat >"$T/bad.conf" <<EOF
kizuna: { store = "sqlite:$T/k.db"; plugin_path = [ "$T/bad", "$T/plugins" ]; };
shops = ( { id = "a";
  plugins = {
    fx_major2 = { };
    fx_counter = { fail_times = "x"; };
    missing = { };
  }; } );
EOF
cat >"$T/want" <<EOF
$T/bad.conf:4: shop 'a': plugin 'fx_major2': cannot load $T/bad/fx_major2.so: built for ABI 2, host has ABI $ABI — refused
$T/bad.conf:5: shop 'a': plugin 'fx_counter': fail_times: expected an integer, got a string
$T/bad.conf:6: shop 'a': plugin 'missing': unknown plugin: not found (no missing.so in $T/bad, $T/plugins)
$T/bad.conf: 3 problem(s)
EOF
expect "check bad" 1 "$T/want" -- "$K" check -c "$T/bad.conf"

# ---- serve refuses the same file, with the same lines on stderr
head -n 3 "$T/want" >"$T/want.serve"
echo "kizuna serve: refusing to start: 3 problem(s) in $T/bad.conf" >>"$T/want.serve"
expect "serve bad" 1 "$T/want.serve" -- "$K" serve -c "$T/bad.conf"

# ---- check runs each plugin's own checks (shop_open) and names their line
cat >"$T/open.conf" <<EOF
kizuna: { store = "sqlite:$T/k.db"; plugin_path = "$T/plugins"; };
shops = ( { id = "a"; plugins = { fx_counter = { }; }; },
          { id = "b"; plugins = {
              fx_counter = {
                fail_open = true; }; }; } );
EOF
cat >"$T/want" <<EOF
$T/open.conf:5: shop 'b': plugin 'fx_counter': fail_open: told to fail shop_open
$T/open.conf: 1 problem(s)
EOF
expect "check shop_open" 1 "$T/want" -- "$K" check -c "$T/open.conf"

# ---- plugins: what loads, what is refused and why
cat >"$T/want" <<EOF
NAME             VERSION    VENDOR           LICENSE    ABI      PATH
refused: plugin 'fx_major2' ($T/bad/fx_major2.so): built for ABI 2, host has ABI $ABI — refused
EOF
"$K" plugins -c "$T/bad.conf" >"$T/plugins.out" 2>&1
rc=$?
[ "$rc" = 1 ] || fail "plugins: exit $rc, wanted 1 (a refusal)"
grep -qx "fx_ok            1.0.0      kizuna tests     MIT        ABI $ABI  $T/bad/fx_ok.so" "$T/plugins.out" ||
    fail "plugins: fx_ok not listed"
grep -qx "refused: plugin 'fx_major2' ($T/bad/fx_major2.so): built for ABI 2, host has ABI $ABI — refused" "$T/plugins.out" ||
    fail "plugins: fx_major2 refusal missing"
grep -qx "refused: plugin 'fx_ok' ($T/plugins/fx_ok.so): duplicate plugin name 'fx_ok' (already loaded from $T/bad/fx_ok.so)" "$T/plugins.out" ||
    fail "plugins: duplicate refusal missing"
grep -q "^refused: plugin 'missing': not found" "$T/plugins.out" ||
    fail "plugins: missing plugin not reported"
[ $failures = 0 ] || cat "$T/plugins.out"

# ---- publish: bad input is refused and stores nothing
echo "kizuna publish: unknown shop 'zz'" >"$T/want"
expect "publish unknown shop" 1 "$T/want" -- "$K" publish -c "$T/good.conf" zz test.x
echo "kizuna publish: invalid topic 'bad topic'" >"$T/want"
expect "publish bad topic" 1 "$T/want" -- "$K" publish -c "$T/good.conf" a "bad topic"
echo "kizuna publish: payload is not JSON: unexpected end of input" >"$T/want"
expect "publish bad json" 1 "$T/want" -- "$K" publish -c "$T/good.conf" a test.x '{"a":'
printf '{"shop":"a","topic":"test.x"}\n{"shop":"a","topic":"no good"}\n' >"$T/lines"
echo "kizuna publish: $T/lines:2: invalid topic 'no good'; nothing published" >"$T/want"
expect "publish lines bad" 1 "$T/want" -- "$K" publish -c "$T/good.conf" --lines "$T/lines"
echo "published 1 event(s)" >"$T/want"
expect "publish good" 0 "$T/want" -- "$K" publish -c "$T/good.conf" a test.x --id e1 --user U1 '{"n":1}'
echo "published 0 event(s) (some ids were already stored: skipped)" >"$T/want"
expect "publish duplicate id" 0 "$T/want" -- "$K" publish -c "$T/good.conf" a test.x --id e1

# ---- kv and events on a store no daemon has handled yet
echo "kizuna kv: no key 'count'" >"$T/want"
expect "kv absent" 1 "$T/want" -- "$K" kv -c "$T/good.conf" a fx_counter count
echo "kizuna kv: shop 'a' does not enable plugin 'fx_ok'" >"$T/want"
expect "kv not enabled" 1 "$T/want" -- "$K" kv -c "$T/good.conf" a fx_ok count
echo "kizuna kv: shop 'a' does not enable plugin 'core.nope'" >"$T/want"
expect "kv unknown core instance" 1 "$T/want" -- "$K" kv -c "$T/good.conf" a core.nope x
: >"$T/want"
expect "kv core instance, no keys" 0 "$T/want" -- "$K" kv -c "$T/good.conf" a core.broadcast --prefix ""
echo "usage: kizuna kv -c FILE SHOP PLUGIN KEY|--prefix PREFIX" >"$T/want"
expect "kv key and prefix" 2 "$T/want" -- "$K" kv -c "$T/good.conf" a fx_counter count --prefix x
echo "no dead letters" >"$T/want"
expect "events dead empty" 0 "$T/want" -- "$K" events -c "$T/good.conf" --dead
echo "kizuna events: no dead letter with id '7' (see kizuna events --dead)" >"$T/want"
expect "events replay unknown" 1 "$T/want" -- "$K" events -c "$T/good.conf" --replay 7

# ---- a missing config file
echo "$T/none.conf: cannot read: No such file or directory" >"$T/want"
echo "$T/none.conf: 1 problem(s)" >>"$T/want"
expect "check missing file" 1 "$T/want" -- "$K" check -c "$T/none.conf"

# ---- sandbox: serve, inbox, a play with no daemon, usage
# Four fixed ports below Linux's ephemeral range (32768-60999), where no
# port another test's client or listen-on-0 got from the kernel can be;
# this script takes 20000-25999, clock.sh 26000-31999.
SBX_PORT=$((20000 + ($$ % 1500) * 4))
KZ_PORT=$((SBX_PORT + 1))
cat >"$T/sbx.conf" <<EOF
kizuna: { store = "sqlite:$T/k2.db"; listen = "127.0.0.1:$KZ_PORT";
  sandbox = { listen = "127.0.0.1:$SBX_PORT"; store = "sqlite:$T/sbx.db"; }; };
shops = ( { id = "a"; line = { channel_secret = "sec"; access_token = "tok"; api = "sandbox"; }; } );
EOF
SU=U0123456789abcdef0123456789abcdef
"$K" sandbox serve -c "$T/sbx.conf" >"$T/sbx.log" 2>&1 &
SBX_PID=$!
i=0
until "$K" sandbox -c "$T/sbx.conf" inbox a $SU >"$T/out" 2>&1 || [ $i -ge 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
echo "$SU (shop a): not a known user, 0 message(s)" >"$T/want"
expect "sandbox inbox empty" 0 "$T/want" -- "$K" sandbox -c "$T/sbx.conf" inbox a $SU
echo "kizuna sandbox: webhook to http://127.0.0.1:$KZ_PORT/webhook/a failed: Couldn't connect to server" >"$T/want"
expect "sandbox follow without daemon" 1 "$T/want" -- "$K" sandbox -c "$T/sbx.conf" follow a $SU
echo "kizuna sandbox: say needs a text" >"$T/want"
expect "sandbox say empty" 1 "$T/want" -- "$K" sandbox -c "$T/sbx.conf" say a $SU ""
echo "kizuna sandbox: no rich menu for user $SU" >"$T/want"
expect "sandbox richmenu none" 1 "$T/want" -- "$K" sandbox -c "$T/sbx.conf" richmenu a $SU
kill $SBX_PID
wait $SBX_PID 2>/dev/null
"$K" sandbox -c "$T/sbx.conf" frobnicate a $SU >"$T/out" 2>&1
[ $? = 2 ] || fail "sandbox usage: wrong exit code"
grep -q "usage: kizuna sandbox serve -c FILE" "$T/out" || fail "sandbox usage: no usage text"
grep -q "kizuna sandbox -c FILE richmenu SHOP USER \[--json\]" "$T/out" ||
    fail "sandbox usage: no richmenu line"

# ---- serve with the sandbox embedded: a played user reaches a plugin
SBX2_PORT=$((KZ_PORT + 1))
KZ2_PORT=$((KZ_PORT + 2))
cat >"$T/emb.conf" <<EOF
kizuna: { store = "sqlite:$T/k3.db"; listen = "127.0.0.1:$KZ2_PORT"; plugin_path = "$T/plugins";
  sandbox = { listen = "127.0.0.1:$SBX2_PORT"; store = "sqlite:$T/sbx3.db"; }; };
shops = ( { id = "a"; line = { channel_secret = "sec"; access_token = "tok"; api = "sandbox"; };
            plugins = { fx_counter = { subscribe = [ "line.*", "message.*" ];
                                       reply_text = "ようこそ"; }; }; } );
EOF
"$K" serve -c "$T/emb.conf" >"$T/emb.log" 2>&1 &
EMB_PID=$!
i=0
until "$K" sandbox -c "$T/emb.conf" follow a $SU >"$T/out" 2>&1 || [ $i -ge 100 ]; do
    i=$((i + 1))
    sleep 0.1
done
grep -q "follow sent to shop 'a'" "$T/out" || fail "embedded sandbox: follow not sent: $(cat "$T/out")"
"$K" sandbox -c "$T/emb.conf" say a $SU "こんにちは" >"$T/out" 2>&1 || fail "embedded sandbox: say"
# follow + message, each answered with a reply that comes back as message.sent
i=0
until [ "$("$K" kv -c "$T/emb.conf" a fx_counter count 2>/dev/null)" = 4 ] || [ $i -ge 100 ]; do
    i=$((i + 1))
    sleep 0.1
done
[ "$("$K" kv -c "$T/emb.conf" a fx_counter count 2>&1)" = 4 ] ||
    fail "embedded sandbox: follow, message and two message.sent not handled ($(tail -5 "$T/emb.log"))"
# the four events' once-only marks, a line each: KEY<TAB>VALUE
"$K" kv -c "$T/emb.conf" a fx_counter --prefix seen: >"$T/out" 2>&1 || fail "kv --prefix: $(cat "$T/out")"
[ "$(grep -c "^seen:.*	1$" "$T/out")" = 4 ] && [ "$(wc -l <"$T/out")" = 4 ] ||
    fail "kv --prefix seen: $(cat "$T/out")"
"$K" sandbox -c "$T/emb.conf" inbox a $SU >"$T/out" 2>&1
head -n 1 "$T/out" | grep -q "friend, 2 message(s)" || fail "embedded sandbox: inbox: $(cat "$T/out")"
[ "$(grep -c 'reply      text: ようこそ' "$T/out")" = 2 ] || fail "embedded sandbox: replies: $(cat "$T/out")"
kill $EMB_PID
wait $EMB_PID
[ $? = 0 ] || fail "serve with embedded sandbox: unclean exit"
grep -q "LINE sandbox on http://127.0.0.1:$SBX2_PORT" "$T/emb.log" || fail "embedded sandbox not started"

# ---- events through the running daemon's admin API (kizuna.admin_token)
ADM_PORT=$((KZ_PORT + 3))
for tok in adm1n wrong; do
    cat >"$T/adm-$tok.conf" <<EOF
kizuna: { store = "sqlite:$T/k4.db"; listen = "127.0.0.1:$ADM_PORT"; plugin_path = "$T/plugins";
  admin_token = "env:KZ_TEST_TOKEN_$tok"; };
shops = ( { id = "a"; plugins = { fx_counter = { fail_topic = "test.bad"; fatal = true; }; }; } );
EOF
done
export KZ_TEST_TOKEN_adm1n=adm1n KZ_TEST_TOKEN_wrong=wrong
"$K" serve -c "$T/adm-adm1n.conf" >"$T/adm.log" 2>&1 &
ADM_PID=$!
"$K" publish -c "$T/adm-adm1n.conf" a test.bad --id bad1 >/dev/null 2>&1 || fail "admin: publish"
i=0
until "$K" events -c "$T/adm-adm1n.conf" --dead 2>&1 | grep -q "test.bad" || [ $i -ge 100 ]; do
    i=$((i + 1))
    sleep 0.1
done
"$K" events -c "$T/adm-adm1n.conf" --dead >"$T/out" 2>&1 || fail "admin: events --dead: $(cat "$T/out")"
grep -q "^1 .* a  *fx_counter  *test.bad  *1  *bad1$" "$T/out" || fail "admin: dead list: $(cat "$T/out")"
echo "kizuna events: admin API: 401 bad admin token (is kizuna.admin_token the daemon's?)" >"$T/want"
expect "events dead wrong token" 1 "$T/want" -- "$K" events -c "$T/adm-wrong.conf" --dead
echo "kizuna events: no dead letter with id '9' (see kizuna events --dead)" >"$T/want"
expect "events replay unknown via daemon" 1 "$T/want" -- "$K" events -c "$T/adm-adm1n.conf" --replay 9
kill $ADM_PID
wait $ADM_PID
[ $? = 0 ] || fail "serve with admin API: unclean exit"
grep -q "admin API on /admin/ (loopback clients only)" "$T/adm.log" || fail "admin API not started"
# not running: --dead reads the store, --replay queues in the store and says so
"$K" events -c "$T/adm-adm1n.conf" --dead >"$T/out" 2>&1 || fail "admin: --dead without daemon"
head -n 1 "$T/out" | grep -q "kizuna is not running at 127.0.0.1:$ADM_PORT; reading the store" ||
    fail "admin: --dead without daemon: $(cat "$T/out")"
grep -q "test.bad" "$T/out" || fail "admin: --dead without daemon: no list: $(cat "$T/out")"
echo "kizuna events: kizuna is not running at 127.0.0.1:$ADM_PORT: start it, or the replay waits: queued in the store, dead letter 1 is replayed when kizuna starts" >"$T/want"
echo "dead letter 1 queued for replay; the daemon hands it to its plugin once more" >>"$T/want"
expect "events replay without daemon" 0 "$T/want" -- "$K" events -c "$T/adm-adm1n.conf" --replay 1

# ---- friends, friend, tag: the registry on the command line
FU=U0123456789abcdef0123456789abcdef
cat >"$T/fr.conf" <<EOF
kizuna: { store = "sqlite:$T/fr.db"; };
shops = ( { id = "a"; } );
EOF
printf '%s: +vip\n%s: +乾燥肌\n' "$FU" "$FU" >"$T/want"
expect "tag add" 0 "$T/want" -- "$K" tag -c "$T/fr.conf" a "$FU" +vip 乾燥肌
printf '%s: already has vip (no change)\n%s: -乾燥肌\n' "$FU" "$FU" >"$T/want"
expect "tag again" 0 "$T/want" -- "$K" tag -c "$T/fr.conf" a "$FU" +vip -乾燥肌
echo "kizuna tag: 'bob' is not a LINE user id (U and 32 hex digits)" >"$T/want"
expect "tag bad user" 2 "$T/want" -- "$K" tag -c "$T/fr.conf" a bob +vip
echo "kizuna tag: '+': a tag is 1 to 100 bytes without control characters (nothing changed)" >"$T/want"
expect "tag bad tag, nothing applied" 2 "$T/want" -- "$K" tag -c "$T/fr.conf" a "$FU" -vip +
"$K" friend -c "$T/fr.conf" a "$FU" --json >"$T/out" 2>&1 || fail "friend: $(cat "$T/out")"
grep -q "\"user\":\"$FU\".*\"tags\":\[\"vip\"\]" "$T/out" || fail "friend --json: $(cat "$T/out")"
"$K" friends -c "$T/fr.conf" a --segment 'tag("vip") && !blocked' >"$T/out" 2>/dev/null ||
    fail "friends --segment: exit $?"
grep -q "^$FU  following .* #vip$" "$T/out" || fail "friends --segment: $(cat "$T/out")"
"$K" friends -c "$T/fr.conf" a --segment 'tag("gold")' >"$T/out" 2>/dev/null
[ -s "$T/out" ] && fail "friends --segment tag(gold) listed: $(cat "$T/out")"
echo "kizuna friends: --segment, column 15: unknown function 'tags' (known: tag, linked, has)" >"$T/want"
expect "friends bad segment" 2 "$T/want" -- "$K" friends -c "$T/fr.conf" a --segment 'tag("vip") || tags("x")'
echo "kizuna friend: shop 'a' has never seen user 'U9999999999999999999999999999999f'" >"$T/want"
expect "friend unknown" 1 "$T/want" -- "$K" friend -c "$T/fr.conf" a U9999999999999999999999999999999f

# ---- import / export: CSV of tags and attributes
cat >"$T/csv.conf" <<EOF
kizuna: { store = "sqlite:$T/csv.db"; };
shops = ( { id = "a"; friends = { attributes = { age = "number"; birthday = "date"; vip = "bool"; }; }; } );
EOF
V1=U0123456789abcdef0123456789abcdef
V2=U2123456789abcdef0123456789abcdef
printf 'user,tags,age,birthday,vip\n%s,vip|乾燥肌,42,1990-02-28,yes\nbob,x,1,,\n%s,,abc,,\n%s,-x,,,false\n' \
    "$V1" "$V1" "$V2" >"$T/in.csv"
printf '%s\n' "$T/in.csv:3: user 'bob' is not a LINE user id" \
    "$T/in.csv:4: column 'age': expected a number, got 'abc'" \
    "nothing imported (2 row(s) refused, --all-or-nothing)" >"$T/want"
expect "import all-or-nothing" 1 "$T/want" -- "$K" import -c "$T/csv.conf" a "$T/in.csv" --all-or-nothing
"$K" import -c "$T/csv.conf" a "$T/in.csv" >"$T/out" 2>"$T/err"
[ $? = 1 ] || fail "import with bad rows: exit $?"
grep -q "^2 row(s) applied, 2 refused$" "$T/err" || fail "import summary: $(cat "$T/err")"
grep -q "^$V1: birthday = 1990-02-28$" "$T/out" || fail "import output: $(cat "$T/out")"
printf '%s\n' '"user","following","display_name","tags","age","birthday","vip"' \
    "\"$V1\",\"true\",\"\",\"vip|乾燥肌\",\"42\",\"1990-02-28\",\"true\"" \
    "1 friend(s) exported" >"$T/want"
expect "export with segment" 0 "$T/want" -- "$K" export -c "$T/csv.conf" a --segment 'attr.age > 40'
"$K" export -c "$T/csv.conf" a >"$T/rt.csv" 2>/dev/null || fail "export all"
"$K" import -c "$T/csv.conf" a "$T/rt.csv" >"$T/out" 2>&1 || fail "round trip: $(cat "$T/out")"
grep -q "^2 row(s) applied, 0 refused$" "$T/out" || fail "round trip changed nothing? $(cat "$T/out")"
grep -q " = \| +" "$T/out" && fail "round trip made changes: $(cat "$T/out")"
echo "<stdin>:1: column 'shoe' is neither user, tags nor a declared attribute of shop 'a'" >"$T/want"
echo "nothing imported (0 row(s) refused)" >>"$T/want"
printf 'user,shoe\n' | expect "import unknown column" 1 "$T/want" -- "$K" import -c "$T/csv.conf" a -

if [ $failures -gt 0 ]; then
    echo "0 passed, $failures failed"
    exit 1
fi
echo "cli: all checks passed"
