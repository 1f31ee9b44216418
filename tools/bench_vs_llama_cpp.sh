#!/usr/bin/env bash
# Prompt (pp512) and generation (tg128) speed of Memoria next to llama.cpp on the same GGUF files,
# same threads, same machine, run back to back (see docs/performance.md).
# usage: tools/bench_vs_llama_cpp.sh THREADS MODEL.gguf...   (PEER_DIR: llama.cpp build, default /tmp/llama-peer)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$1; shift
bench=${BUILD_DIR:-build}/bench/memoria-bench
peer=${PEER_DIR:-/tmp/llama-peer}/build/bin/llama-bench
for model in "$@"; do
  echo "== $(basename "$model"), $threads threads"
  "$bench" -m "$model" -p 512 -n 128 -t "$threads" -r 5 | grep -E '^\| (pp|tg)|bound|bandwidth'
  "$peer" -m "$model" -p 512 -n 128 -t "$threads" -r 5 | grep -E 'pp512|tg128' \
    | awk -F'|' '{printf "| llama.cpp %-5s | %s |\n", $7, $8}'
done
