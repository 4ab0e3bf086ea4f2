#!/bin/sh
# The whole test suite: installs what is missing, builds, runs unit and integration tests and
# ends with "N passed, M failed". BUILD and MESON_ARGS as for scripts/build.sh.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
BUILD=${BUILD:-build}
log=$(mktemp)
status=0
meson test -C "$BUILD" --print-errorlogs "$@" | tee "$log" || status=$?  # (tee's status)
passed=$(awk '/^Ok:/ {print $2}' "$log")
failed=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {n += $NF} END {print n + 0}' "$log")
rm -f "$log"
echo "${passed:-0} passed, ${failed:-0} failed"
# sh has no pipefail: the exit status comes from the counts (and from meson when tee failed)
if [ "${failed:-0}" -ne 0 ] || [ -z "$passed" ]; then
    status=1
fi
exit "$status"
