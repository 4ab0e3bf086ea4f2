#!/bin/sh
# `sluice run --sync` under valgrind against `sluice emu`: the first poll, a tunnel, a PATCH
# taken as a reload, the emulator stopped (failed polls, backoff), a bad token answer, SIGTERM.
# Fails on any valgrind leak or error. Bounded: ~60 s at most. Usage: tests/valgrind_sync.sh BUILD
set -u
B=${1:-build}
dir=$(mktemp -d)
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EP=$(port); LP=$(port); T1=$(port); AP=$(port)
"$B/sluice" emu --listen "127.0.0.1:$EP" --state "$dir/emu.json" --token t0k 2>"$dir/emu.log" &
emu=$!
"$B/bench/sluice-bench" server --listen "127.0.0.1:$T1" 2>/dev/null &
srv=$!
ok=1
ids=$(/usr/bin/python3 - "$EP" <<'PY'
import http.client, json, socket, sys, time
port = int(sys.argv[1])
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port), 0.1).close(); break
    except OSError:
        time.sleep(0.1)
def call(method, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, "/cloudapi/v6" + path, json.dumps(body),
              {"Content-Type": "application/json", "Authorization": "Bearer t0k"})
    r = c.getresponse(); d = json.loads(r.read()); assert r.status == 202, d; return d
alb = call("POST", "/datacenters/dc1/applicationloadbalancers", {"properties": {
    "name": "a", "listenerLan": 1, "targetLan": 2, "ips": ["1.1.1.1"], "lbPrivateIps": ["10.0.0.1/24"]}})
tg = call("POST", "/targetgroups", {"properties": {"name": "g", "algorithm": "ROUND_ROBIN",
    "protocol": "HTTP", "targets": [{"ip": "10.0.0.5", "port": 80, "weight": 1}]}})
call("POST", "/datacenters/dc1/applicationloadbalancers/%s/forwardingrules" % alb["id"], {"properties": {
    "name": "r", "protocol": "HTTP", "listenerIp": "1.1.1.1", "listenerPort": 80,
    "httpRules": [{"name": "f", "type": "FORWARD", "targetGroup": tg["id"]}]}})
print(alb["id"], tg["id"])
PY
) || ok=0
alb=${ids% *}; tg=${ids#* }
cat > "$dir/local.json" <<JSON
{"sluice":{"threads":2,"accessLog":"off","admin":"127.0.0.1:$AP",
 "addressMap":{"1.1.1.1:80":"127.0.0.1:$LP","10.0.0.5:80":"127.0.0.1:$T1"},
 "sync":{"datacenterId":"dc1","applicationLoadBalancerId":"$alb","intervalSeconds":1,
         "apiUrl":"http://127.0.0.1:$EP","cacheFile":"$dir/cache.json"}}}
JSON
IONOS_TOKEN=t0k valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    "$B/sluice" run "$dir/local.json" 2>"$dir/vg.log" &
vg=$!
/usr/bin/python3 - "$LP" "$EP" "$tg" "$AP" <<'PY' || ok=0
import http.client, json, socket, sys, time
lp, ep, tg, ap = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for _ in range(300):  # valgrind starts slowly
    try:
        socket.create_connection(("127.0.0.1", lp), 0.1).close(); break
    except OSError:
        time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", ep, timeout=10)
c.request("PATCH", "/cloudapi/v6/targetgroups/" + tg, json.dumps({"algorithm": "RANDOM"}),
          {"Content-Type": "application/json", "Authorization": "Bearer t0k"})
assert c.getresponse().status == 202
def status():
    c = http.client.HTTPConnection("127.0.0.1", ap, timeout=10)
    c.request("GET", "/status"); return json.loads(c.getresponse().read())
for _ in range(100):
    if status()["config"]["generation"] >= 2: break
    time.sleep(0.1)
assert status()["config"]["generation"] >= 2, status()
print("valgrind sync: generation", status()["config"]["generation"])
PY
"$B/bench/sluice-bench" bulk --url "ws://127.0.0.1:$LP/" --seconds 1 --size 4096 >/dev/null || ok=0
kill -TERM "$emu"; wait "$emu"
sleep 3 # failed polls with backoff
kill -TERM "$vg"
i=0
while kill -0 "$vg" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$vg" 2>/dev/null; then
    echo "valgrind sync: sluice did not stop within 30 s of SIGTERM"; kill -KILL "$vg"; ok=0
fi
wait "$vg"; rc=$?
kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null
grep -q "retrying with backoff" "$dir/vg.log" || { echo "valgrind sync: no failed poll seen"; ok=0; }
if [ "$rc" -ne 0 ]; then
    echo "valgrind sync: exit $rc"; cat "$dir/vg.log"; ok=0
fi
rm -rf "$dir"
if [ $ok -eq 1 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
