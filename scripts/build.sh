#!/bin/sh
# Configures (once) and builds sluice in $BUILD (default: build) with extra meson options
# from $MESON_ARGS, e.g. MESON_ARGS=-Db_sanitize=address,undefined BUILD=build-asan.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if [ ! -f "$BUILD/build.ninja" ]; then
    # shellcheck disable=SC2086
    meson setup "$BUILD" ${MESON_ARGS:-} >/dev/null
fi
ninja -C "$BUILD" >/dev/null
