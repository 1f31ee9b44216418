#!/usr/bin/env bash
# Builds Memoria (installing what it needs) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-test-deps
BUILD_DIR=${BUILD_DIR:-build}
cd "$BUILD_DIR"
ctest --output-on-failure -j"$(nproc)" "$@"
