#!/usr/bin/env bash
# Installs the Debian packages Memoria builds with (only those missing) and builds it into
# ${BUILD_DIR:-build}. Idempotent and quiet when everything is already there.
#   scripts/setup.sh [--with-test-deps]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build ccache pkg-config
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libfaiss-dev libcpp-httplib-dev nlohmann-json3-dev
  # FAISS clusters (IVF training, list assignment) through BLAS; Debian's default reference BLAS is
  # single-threaded and ~10x slower than OpenBLAS there.
  libopenblas0-pthread)

# Only the tests need these (scripts/test.sh passes --with-test-deps): the Python client example
# (Debian's grpcio; stubs generated at run time) and the trainer/engine agreement test (torch).
if [ "${1:-}" = "--with-test-deps" ]; then
  PACKAGES+=(python3-grpcio python3-protobuf python3-torch python3-numpy)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${MEMORIA_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$BUILD_DIR" -j"$(nproc)"
