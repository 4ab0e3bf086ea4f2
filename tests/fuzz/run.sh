#!/bin/sh
# Builds the libFuzzer harnesses with clang and runs each for a bounded time (default 45 s)
# on a seed corpus made from conf/ and tests/data/. Prints "N passed, M failed".
set -u
cd "$(dirname "$0")/../.."
secs=${1:-45}
build=build-fuzz
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fsanitize=fuzzer-no-link >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$build" tests/fuzz/fuzz_config tests/fuzz/fuzz_http >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
p=0
f=0
for t in config http; do
    corpus=$build/corpus-$t
    mkdir -p "$corpus"
    if [ "$t" = config ]; then cp conf/*.json "$corpus"/; else cp tests/data/*.http "$corpus"/; fi
    if "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/" "$corpus" >"$build/fuzz_$t.log" 2>&1; then
        echo "fuzz_$t: ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$build/fuzz_$t.log" | cut -d' ' -f2) runs; \
$(tail -n 1 "$build/fuzz_$t.log"))"
        p=$((p + 1))
    else
        echo "fuzz_$t: FAILED"; tail -n 40 "$build/fuzz_$t.log"
        f=$((f + 1))
    fi
done
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
