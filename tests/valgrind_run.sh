#!/bin/sh
# A start-serve-stop cycle of `sluice run` under valgrind: plain requests, a STATIC answer,
# WebSocket tunnels (echo through splice), a refused target (retried, then DOWN by its TCP
# check), an HTTP health check, the admin endpoints, a SIGHUP reload (and a refused one) while
# a tunnel is open, a TLS listener (HTTPS, a wss echo, a resumed session, a plain request to
# it and a stalled handshake), then SIGTERM. Fails if valgrind
# reports a leak or an error, or if sluice does not stop by itself. Bounded: ~60 s at most.
# Usage: tests/valgrind_run.sh BUILD_DIR
set -u
B=${1:-build}
dir=$(mktemp -d)
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LP=$(port); T1=$(port); T2=$(port); AP=$(port); SP=$(port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$dir/k.pem" -out "$dir/c.pem" 2>/dev/null
cat > "$dir/c.json" <<JSON
{"forwardingRules":[{"id":"fr","properties":{"name":"vg","protocol":"HTTP","listenerIp":"127.0.0.1",
 "listenerPort":$LP,"httpRules":[
 {"name":"static","type":"STATIC","statusCode":418,"responseMessage":"x","conditions":[{"type":"PATH","condition":"EQUALS","value":"/tea"}]},
 {"name":"fwd","type":"FORWARD","targetGroup":"tg"}]}},
 {"id":"fr-tls","properties":{"name":"vg-tls","protocol":"HTTP","listenerIp":"127.0.0.1",
 "listenerPort":$SP,"serverCertificates":["c"],"httpRules":[{"name":"fwd","type":"FORWARD","targetGroup":"tg"}]}}],
 "targetGroups":[{"id":"tg","properties":{"name":"g","algorithm":"ROUND_ROBIN","protocol":"HTTP",
 "targets":[{"ip":"127.0.0.1","port":$T1},{"ip":"127.0.0.1","port":$T2}],
 "healthCheck":{"checkInterval":200,"retries":2}}},
 {"id":"tg-http","properties":{"name":"h","algorithm":"ROUND_ROBIN","protocol":"HTTP",
 "targets":[{"ip":"127.0.0.1","port":$T1}],"healthCheck":{"checkInterval":200},
 "httpHealthCheck":{"path":"/hc","matchType":"RESPONSE_BODY","response":"^echo","regex":true}}}],
 "sluice":{"threads":2,"headerTimeout":1000,"certificates":{"c":{"cert":"c.pem","key":"k.pem"}},"accessLog":"$dir/access.log","drainTimeout":2000,"closeOnTargetDown":true,
 "admin":"127.0.0.1:$AP"}}
JSON
"$B/bench/sluice-bench" server --listen "127.0.0.1:$T1" 2>/dev/null &
srv=$!
valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    "$B/sluice" run "$dir/c.json" 2>"$dir/vg.log" &
vg=$!
ok=1
# One plain HTTP GET (status code only), for both Python steps below.
cat > "$dir/vgget.py" <<'PY'
import socket
def get(path, port):
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: v\r\nConnection: close\r\n\r\n")
    d = b""
    while True:
        x = s.recv(65536)
        if not x: break
        d += x
    return d.split(b" ")[1]
PY
PYTHONPATH="$dir" /usr/bin/python3 - "$LP" "$AP" <<'PY' || ok=0
import socket, sys, time
from vgget import get
port = int(sys.argv[1])
admin = int(sys.argv[2])
for _ in range(200):  # valgrind starts slowly: up to 20 s
    try:
        socket.create_connection(("127.0.0.1", port), 0.1).close(); break
    except OSError:
        time.sleep(0.1)
codes = [get(p, port) for p in (b"/tea", b"/a", b"/b", b"/c", b"/d")]
print("valgrind run: statuses", codes)
# The dead target refuses; sluice retries on the live one, so every request succeeds.
assert codes == [b"418"] + [b"200"] * 4, codes
time.sleep(1.5)  # the dead target's checks fail: DOWN
PY
# TLS: HTTPS, a wss echo (python3-websockets), a resumed session, plain HTTP to the TLS
# port, a handshake that stalls until headerTimeout.
/usr/bin/python3 - "$SP" "$dir/c.pem" <<'PY' || ok=0
import asyncio, socket, ssl, sys, time
import websockets
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def https_get(session=None):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 10),
                        server_hostname="localhost", session=session)
    s.sendall(b"GET /tls HTTP/1.1\r\nHost: v\r\nConnection: close\r\n\r\n")
    d = b""
    while True:
        x = s.recv(65536)
        if not x: break
        d += x
    sess, reused = s.session, s.session_reused
    s.close()
    return d.split(b" ")[1], sess, reused
code, sess, _ = https_get()
code2, _, reused = https_get(sess)
async def echo():
    async with websockets.connect("wss://localhost:%d/" % port, ssl=ctx,
                                  open_timeout=20) as ws:
        await ws.send(b"x" * 100000)
        return len(await ws.recv())
n = asyncio.run(echo())
plain = socket.create_connection(("127.0.0.1", port), 10)
plain.sendall(b"GET / HTTP/1.1\r\nHost: v\r\n\r\n")
answer = plain.recv(100)
stall = socket.create_connection(("127.0.0.1", port), 10)
stall.settimeout(20)
stalled = stall.recv(10)  # closed by sluice after headerTimeout
print("valgrind run: tls", code, code2, reused, n, answer[:12], stalled)
assert code == code2 == b"200" and reused and n == 100000, (code, code2, reused, n)
assert answer.startswith(b"HTTP/1.1 400") and stalled == b"", (answer, stalled)
PY
# Reload with a tunnel open: a good file (generation 2), then a bad one (refused).
"$B/bench/sluice-bench" bulk --url "ws://127.0.0.1:$LP/" --seconds 4 --size 4096 >/dev/null &
bulk=$!
sleep 1
sed -i 's/"algorithm":"ROUND_ROBIN"/"algorithm":"RANDOM"/' "$dir/c.json"
kill -HUP "$vg"; sleep 1
cp "$dir/c.json" "$dir/good.json"; echo '{"forwardingRules": [' > "$dir/c.json"
kill -HUP "$vg"; sleep 1
cp "$dir/good.json" "$dir/c.json"
wait "$bulk" || ok=0
grep -q "reload: generation 2" "$dir/vg.log" || { echo "valgrind run: no reload"; ok=0; }
grep -q "refused; the running config stays" "$dir/vg.log" || { echo "valgrind run: bad reload not refused"; ok=0; }
PYTHONPATH="$dir" /usr/bin/python3 - "$AP" <<'PY' || ok=0
import sys
from vgget import get
admin = int(sys.argv[1])
codes = [get(b"/metrics", admin), get(b"/status", admin), get(b"/healthz", admin),
         get(b"/nope", admin)]
print("valgrind run: admin statuses", codes)
assert codes == [b"200", b"200", b"200", b"404"], codes
PY
"$B/bench/sluice-bench" bulk --url "ws://127.0.0.1:$LP/" --seconds 2 --size 65536 || ok=0
kill -TERM "$vg"
i=0
while kill -0 "$vg" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$vg" 2>/dev/null; then
    echo "valgrind run: sluice did not stop within 30 s of SIGTERM"; kill -KILL "$vg"; ok=0
fi
wait "$vg"; rc=$?
kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null
if [ "$rc" -ne 0 ]; then
    echo "valgrind run: exit $rc"; cat "$dir/vg.log"; ok=0
fi
rm -rf "$dir"
if [ $ok -eq 1 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
