#!/usr/bin/env bash
# The quality table of docs/quality.md: quality-bench over memory configurations, each served by
# its own memoria-server on a fresh store (the codec is fixed when a store is created). The first
# configuration also measures no memory and RAG, with TTFT memory vs RAG from the same server.
#   bench/run_quality.sh [MODEL] [EVAL]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
MODEL=${1:-models/memoria-mini.gguf}
EVAL=${2:-models/memoria-mini-eval.jsonl}
# No PQ: it trains on the store's first document, and a memoria-mini reference holds 128 vectors
# (8 kept x 4 memory layers x 2 KV heads x K and V), fewer than the 256 a PQ codebook needs.
CONFIGS=("sparse-int8:--codec int8" "sparse-f16:--codec f16" "sparse-int4:--codec int4"
         "dense-f16:--dense --codec f16" "dense-int8:--dense --codec int8"
         "dense-int4:--dense --codec int4")
first=1
for config in "${CONFIGS[@]}"; do
  label=${config%%:*}
  store=$(mktemp -d)
  # shellcheck disable=SC2086  # the flags are words
  "$BUILD_DIR/server/memoria-server" --model "$MODEL" --store "$store/store" --grpc-port 0 \
    --http-port -1 ${config#*:} >"$store/out" 2>"$store/err" &
  pid=$!
  trap 'kill $pid 2>/dev/null; rm -rf "$store"' EXIT
  for _ in $(seq 600); do grep -q "ready" "$store/out" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's/.*ready grpc=[^:]*:\([0-9]*\).*/\1/p' "$store/out")
  [ -n "$port" ] || { cat "$store/err" >&2; kill "$pid"; exit 1; }
  if [ $first = 1 ]; then
    "$BUILD_DIR/bench/quality-bench" --server "127.0.0.1:$port" --eval "$EVAL" --label "$label" \
      --modes memory,top5,none,rag --header
  else
    "$BUILD_DIR/bench/quality-bench" --server "127.0.0.1:$port" --eval "$EVAL" --label "$label" \
      --modes memory
  fi
  kill "$pid"
  wait "$pid" || true
  rm -rf "$store"
  first=0
done
