#!/bin/sh
# The demo: installs what is missing, builds, then shows sluice judging the demo config and a
# Firefox WebSocket upgrade against it. (The data plane that serves it is the next step.)
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
BUILD=${BUILD:-build}

echo "== sluice check conf/demo.json"
"$BUILD/sluice" check conf/demo.json
echo
echo "== sluice explain conf/demo.json tests/data/firefox-upgrade.http"
"$BUILD/sluice" explain conf/demo.json tests/data/firefox-upgrade.http
echo
echo "== sluice explain conf/demo.json tests/data/plain-get.http"
"$BUILD/sluice" explain conf/demo.json tests/data/plain-get.http
echo
echo "== sluice check conf/ionos-guide.json (the IONOS guide's bodies, mapped to loopback)"
"$BUILD/sluice" check --map 1.2.3.4:80=127.0.0.1:8080 --map 10.20.30.100:8080=127.0.0.1:9001 \
    conf/ionos-guide.json || true
echo
printf '%s\n' "Try your own request:" \
    "  printf 'GET /docs?x=1 HTTP/1.1\\r\\nHost: demo\\r\\n\\r\\n' | $BUILD/sluice explain conf/demo.json"
