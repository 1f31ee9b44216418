#!/usr/bin/env bash
# Prints the Debian packages that own the shared libraries the given binaries load, one per line:
# the runtime image installs exactly these, so it never drifts from what the build linked.
# Libraries outside any package (CUDA's, copied separately) are skipped.
set -euo pipefail
for lib in $(ldd "$@" | awk '/=> \// {print $3}' | sort -u); do
  # Resolve symlinks first: alternatives (libblas.so.3 -> OpenBLAS) are owned at their target.
  owner=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true)
  if [ -n "$owner" ]; then echo "${owner%%:*}"; fi
done | sort -u
