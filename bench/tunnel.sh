#!/bin/bash
# What a sluice tunnel costs, measured with sluice-bench on loopback:
#   1. bulk echo throughput straight to a sluice-bench server and through `sluice run`,
#      alternating direct and proxied runs, RUNS times each; prints the medians and the ratio;
#   2. memory per idle tunnel: sluice's RSS after warm-up, then with IDLE_CONNS idle tunnels
#      open; prints (delta KiB) * 1024 / IDLE_CONNS as bytes per tunnel.
# Usage: bench/tunnel.sh [bulk|memory|all]   (default all), from any directory.
# Settings (environment): BUILD=build (relative to the repo or absolute), THREADS=1 (sluice's
# "threads"), SERVER_THREADS=1, RUNS=5, RUN_SECONDS=3, SIZE=1M, CONNS=1, IDLE_CONNS=9900,
# HOLD=20; SLUICE and BENCH override the two binaries' paths. Only processes this script
# starts are killed, by PID; every step is bounded in time.
set -euo pipefail

cd "$(dirname "$0")/.."
what=${1:-all}
case $what in
bulk | memory | all) ;;
*)
    echo "usage: $0 [bulk|memory|all]" >&2
    exit 2
    ;;
esac

BUILD=${BUILD:-build}
THREADS=${THREADS:-1}
SERVER_THREADS=${SERVER_THREADS:-1}
RUNS=${RUNS:-5}
RUN_SECONDS=${RUN_SECONDS:-3}
SIZE=${SIZE:-1M}
CONNS=${CONNS:-1}
IDLE_CONNS=${IDLE_CONNS:-9900}
HOLD=${HOLD:-20}
SLUICE=${SLUICE:-$BUILD/sluice}
BENCH=${BENCH:-$BUILD/bench/sluice-bench}

for exe in "$SLUICE" "$BENCH"; do
    if [ ! -x "$exe" ]; then
        echo "$0: $exe not built (BUILD=$BUILD)" >&2
        exit 1
    fi
done

# sluice takes two fds per tunnel, the echo server and the client one each: raise the soft
# limit for everything started from here.
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d /tmp/sluice-tunnel.XXXXXX)
pids=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on now (the kernel's pick for port 0).
free_port() {
    /usr/bin/python3 -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until PORT accepts, while PID lives; at most 10 s.
wait_port() {
    local i
    for i in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
        else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

count_fds() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# The echo target, shared by every run, on a port the kernel picks: its listening line says
# which.
"$BENCH" server --listen 127.0.0.1:0 --threads "$SERVER_THREADS" --name target \
    2>"$tmp/server.log" &
srv_pid=$!
pids+=("$srv_pid")
srv_port=
for _ in $(seq 50); do
    srv_port=$(sed -n 's/^sluice-bench server listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' \
        "$tmp/server.log")
    [ -n "$srv_port" ] && break
    sleep 0.2
done
if [ -z "$srv_port" ] || ! wait_port "$srv_port" "$srv_pid"; then
    echo "$0: sluice-bench server did not start:" >&2
    cat "$tmp/server.log" >&2
    exit 1
fi

# start_sluice: writes a one-listener, one-target config and starts `sluice run` on it; sets
# lb_port and lb_pid, or returns 1 with the log shown.
start_sluice() {
    lb_port=$(free_port)
    cat >"$tmp/sluice.json" <<EOF
{
  "applicationLoadBalancer": { "id": "alb-bench", "properties": { "name": "alb-bench",
      "listenerLan": 1, "targetLan": 2, "ips": ["127.0.0.1"], "lbPrivateIps": ["127.0.0.1/8"] } },
  "forwardingRules": [ { "id": "fr-bench", "properties": { "name": "bench", "protocol": "HTTP",
      "listenerIp": "127.0.0.1", "listenerPort": $lb_port, "clientTimeout": 600000,
      "httpRules": [ { "name": "all", "type": "FORWARD", "targetGroup": "tg-bench" } ] } } ],
  "targetGroups": [ { "id": "tg-bench", "properties": { "name": "bench-target",
      "algorithm": "ROUND_ROBIN", "protocol": "HTTP",
      "targets": [ { "ip": "127.0.0.1", "port": $srv_port, "weight": 1,
                     "healthCheckEnabled": false } ] } } ],
  "sluice": { "threads": $THREADS }
}
EOF
    "$SLUICE" run "$tmp/sluice.json" >/dev/null 2>"$tmp/sluice.log" &
    lb_pid=$!
    pids+=("$lb_pid")
    if ! wait_port "$lb_port" "$lb_pid"; then
        echo "$0: sluice run did not start:" >&2
        sed 's/^/    /' "$tmp/sluice.log" >&2
        stop "$lb_pid"
        return 1
    fi
}

# bulk_once PORT: one bulk run; prints its MiB/s, or returns 1.
bulk_once() {
    local out
    out=$(timeout $((${RUN_SECONDS%.*} + 60)) "$BENCH" bulk --url "ws://127.0.0.1:$1/" \
        --size "$SIZE" --seconds "$RUN_SECONDS" --conns "$CONNS" 2>>"$tmp/bulk.err") || {
        echo "$0: bulk run on port $1 failed: $out" >&2
        sed 's/^/    /' "$tmp/bulk.err" >&2
        return 1
    }
    sed -n 's/.*MiB\/s=\([0-9.]*\).*/\1/p' <<<"$out"
}

status=0

if [ "$what" != memory ]; then
    echo "== bulk: size=$SIZE conns=$CONNS ${RUN_SECONDS}s per run, $RUNS runs each," \
        "sluice threads=$THREADS, server threads=$SERVER_THREADS, $(nproc) CPUs"
    proxied=1
    if ! start_sluice; then
        echo "   (sluice run unavailable: direct runs only)"
        proxied=0
    fi
    : >"$tmp/direct"
    : >"$tmp/proxied"
    for i in $(seq "$RUNS"); do
        d=$(bulk_once "$srv_port") || exit 1
        echo "$d" >>"$tmp/direct"
        line="   run $i: direct $d MiB/s"
        if [ $proxied = 1 ]; then
            p=$(bulk_once "$lb_port") || exit 1
            echo "$p" >>"$tmp/proxied"
            line="$line, proxied $p MiB/s"
        fi
        echo "$line"
    done
    dm=$(median <"$tmp/direct")
    echo "   median direct:  $dm MiB/s"
    if [ $proxied = 1 ]; then
        pm=$(median <"$tmp/proxied")
        echo "   median proxied: $pm MiB/s"
        awk -v p="$pm" -v d="$dm" 'BEGIN { printf "   ratio proxied/direct: %.3f\n", p / d }'
        stop "$lb_pid"
    else
        status=1
    fi
fi

if [ "$what" != bulk ]; then
    echo "== memory per idle tunnel: $IDLE_CONNS tunnels held ${HOLD}s, sluice threads=$THREADS"
    if ! start_sluice; then
        exit 1
    fi
    url="ws://127.0.0.1:$lb_port/"
    # Warm-up: libevent's maps, the worker's first allocations and the allocator's arenas
    # grow on first use; that is not per-tunnel cost.
    timeout 60 "$BENCH" idle --url "$url" --conns 200 --hold 1 >/dev/null
    timeout 60 "$BENCH" upgrades --url "$url" --seconds 1 >/dev/null
    sleep 1
    before=$(rss_kib "$lb_pid")
    fds0=$(count_fds "$lb_pid")
    start=$(date +%s)
    timeout $((HOLD + 240)) "$BENCH" idle --url "$url" --conns "$IDLE_CONNS" --hold "$HOLD" \
        >"$tmp/idle.out" 2>"$tmp/idle.err" &
    idle_pid=$!
    pids+=("$idle_pid")
    # All tunnels are up once sluice holds two more fds per tunnel (bounded: 120 s).
    want=$((fds0 + 2 * IDLE_CONNS))
    tunnels=$IDLE_CONNS
    while :; do
        fds=$(count_fds "$lb_pid")
        [ "$fds" -ge "$want" ] && break
        if ! kill -0 "$idle_pid" 2>/dev/null || [ $(($(date +%s) - start)) -ge 120 ]; then
            tunnels=$(((fds - fds0) / 2))
            echo "$0: only $tunnels of $IDLE_CONNS tunnels came up" >&2
            break
        fi
        sleep 0.5
    done
    sleep 2
    after=$(rss_kib "$lb_pid")
    if ! wait "$idle_pid"; then
        status=1
    fi
    echo "   $(cat "$tmp/idle.out")"
    sed 's/^/   /' "$tmp/idle.err" >&2
    echo "   sluice VmRSS: ${before} KiB after warm-up, ${after} KiB with $tunnels tunnels"
    if [ "$tunnels" -gt 0 ]; then
        awk -v a="$after" -v b="$before" -v n="$tunnels" 'BEGIN {
            printf "   per idle tunnel: %.0f bytes\n", (a - b) * 1024 / n }'
        echo "   (RSS delta / tunnels: includes libevent's per-fd maps and allocator slack;"
        echo "   kernel socket buffers are not in RSS)"
    fi
    stop "$lb_pid"
fi
exit $status
