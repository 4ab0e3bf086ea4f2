#!/bin/sh
# Installs the Debian 12 packages sluice needs, and only those that are missing.
#   scripts/install-deps.sh          build, run and test
#   scripts/install-deps.sh --ci     also clang and its runtime (fuzzing) and valgrind
set -eu

pkgs="meson ninja-build pkg-config gcc libc6-dev libevent-dev node-llhttp libssl-dev
      libcurl4-openssl-dev libjansson-dev libpcre2-dev libcmocka-dev python3 python3-websockets
      openssl" # openssl: the tests make their certificates with it
if [ "${1:-}" = "--ci" ]; then
    pkgs="$pkgs clang libclang-rt-14-dev valgrind curl" # curl: the README's API calls, tested
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "sluice: missing Debian packages:$missing" >&2
    echo "sluice: run this script as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "sluice: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
