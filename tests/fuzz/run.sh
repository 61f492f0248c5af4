#!/bin/sh
# Builds one libFuzzer target with ASan+UBSan from the core sources and runs
# it for the given number of seconds. usage: run.sh webhook|message [SECONDS]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
target=$1
seconds=${2:-60}
out=${TMPDIR:-/tmp}/kizuna-fuzz-$target
mkdir -p "$out/corpus"
case $target in
webhook) srcs="core/webhook.c core/jsonscan.c core/payload.c core/topic.c core/errbuf.c core/store.c" libs="-ljson-c -lcrypto -lsqlite3" ;;
message) srcs="core/message.c core/errbuf.c" libs="-ljson-c" ;;
*) echo "usage: $0 webhook|message [SECONDS]" >&2; exit 2 ;;
esac
cd "$root"
# shellcheck disable=SC2086
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -Icore -Isdk/include \
    "tests/fuzz/fuzz_$target.c" $srcs $libs -o "$out/fuzz_$target"
case $target in
webhook) cp -n tests/webhook/*.json "$out/corpus/" 2>/dev/null || true ;;
message) cp -n tests/fuzz/seeds/message/*.json "$out/corpus/" 2>/dev/null || true ;;
esac
"$out/fuzz_$target" -max_total_time="$seconds" -max_len=65536 -timeout=5 \
    -dict=tests/fuzz/line.dict "$out/corpus"
