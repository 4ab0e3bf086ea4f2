#!/bin/sh
# The demo: installs what is missing, builds, starts two bundled WebSocket echo targets and
# sluice in front of them on conf/demo.json, plus the same rules on a TLS listener (wss://,
# port 8443, a self-signed localhost certificate made here), and prints how to connect.
# Ctrl-C stops it all.
# DEMO_SECONDS=N stops it by itself after N seconds (for scripted runs).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
BUILD=${BUILD:-build}
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "== sluice check conf/demo.json"
"$BUILD/sluice" check conf/demo.json
echo

# TLS: conf/demo.json's forwarding rule again on 8443 with a certificate (IONOS:
# serverCertificates), made fresh for localhost. The combined file is what sluice runs.
tls="$BUILD/demo-tls"
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$tls/localhost.key" -out "$tls/localhost.pem" 2>/dev/null
/usr/bin/python3 - conf/demo.json "$tls/demo.json" <<'PY'
import copy, json, sys
doc = json.load(open(sys.argv[1]))
tls = copy.deepcopy(doc["forwardingRules"][0])
tls["id"] += "-tls"
p = tls["properties"]
p["name"] += "-tls"
p["listenerPort"] = 8443
p["serverCertificates"] = ["demo-localhost"]
for r in p["httpRules"]:
    if "responseMessage" in r:
        r["responseMessage"] = r["responseMessage"].replace("ws://127.0.0.1:8080",
                                                            "wss://localhost:8443")
doc["forwardingRules"].append(tls)
doc.setdefault("sluice", {})["certificates"] = {
    "demo-localhost": {"cert": "localhost.pem", "key": "localhost.key"}}
json.dump(doc, open(sys.argv[2], "w"), indent=2)
PY

for port in 9001 9002; do
    "$BUILD/bench/sluice-bench" server --listen "127.0.0.1:$port" --name "echo-$port" &
    pids="$pids $!"
    [ "$port" = 9001 ] && echo1_pid=$!
done
"$BUILD/sluice" run "$tls/demo.json" &
sluice_pid=$!
pids="$pids $sluice_pid"

# Ready when the listener accepts (bounded: 10 s).
i=0
until /usr/bin/python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8080), 0.2)' \
        2>/dev/null; do
    i=$((i + 1))
    if [ $i -ge 50 ] || ! kill -0 "$sluice_pid" 2>/dev/null; then
        echo "sluice did not start (is port 8080, 8443, 9001, 9002 or 9900 taken?)" >&2
        exit 1
    fi
    sleep 0.2
done

cat <<MSG

sluice is listening on 127.0.0.1:8080 (ws://) and 127.0.0.1:8443 (wss://, TLS) in front of
echo targets 127.0.0.1:9001 and :9002 (round robin). Access log lines appear below. In
another terminal:

  python3 -m websockets ws://127.0.0.1:8080/     # type lines: the echo target answers
  curl -i http://127.0.0.1:8080/                 # no Upgrade header: the STATIC rule's 426
  curl -i http://127.0.0.1:8080/docs             # the REDIRECT rule's 302
  $BUILD/bench/sluice-bench bulk --url ws://127.0.0.1:8080/ --seconds 3    # throughput
  SSL_CERT_FILE=$tls/localhost.pem python3 -m websockets wss://localhost:8443/   # over TLS
  curl -i --cacert $tls/localhost.pem https://localhost:8443/                   # 426, over TLS
  $BUILD/bench/sluice-bench bulk --url wss://localhost:8443/ --cafile $tls/localhost.pem
  curl http://127.0.0.1:9900/status              # targets, health checks, counters (JSON)
  curl http://127.0.0.1:9900/metrics             # the same for Prometheus

To watch a health check: \`kill $echo1_pid\` stops target 9001. Within 6 s it is DOWN (the
log says so once, /status says why) and every new connection goes to 9002.

Ctrl-C stops sluice and the targets.

MSG
if [ -n "${DEMO_SECONDS:-}" ]; then
    sleep "$DEMO_SECONDS"
    exit 0
fi
wait "$sluice_pid"
