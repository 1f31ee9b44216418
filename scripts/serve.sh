#!/usr/bin/env bash
# Builds Memoria (installing what it needs) and serves it: memoria-server on $HOST (127.0.0.1),
# gRPC port $GRPC_PORT (50051), HTTP port $HTTP_PORT (8080: /metrics, OpenAI API), with a memory
# store in $STORE (./memoria-data). The model is $MODEL, by default models/memoria-mini.gguf:
# Memoria's own small model trained to read explicit memories (docs/training.md), tokenizer
# included, so nothing is downloaded. Extra arguments go to memoria-server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
MODEL=${MODEL:-models/memoria-mini.gguf}
[ -f "$MODEL" ] || { echo "serve: model $MODEL not found" >&2; exit 1; }
if [ "$MODEL" = models/memoria-mini.gguf ]; then
  echo "serve: models/memoria-mini.gguf is a tiny model trained only to answer questions from" \
       "ingested documents (see the README's tour); its free text is not meaningful"
fi
exec "$BUILD_DIR/server/memoria-server" --model "$MODEL" --store "${STORE:-memoria-data}" \
  --host "${HOST:-127.0.0.1}" --grpc-port "${GRPC_PORT:-50051}" --http-port "${HTTP_PORT:-8080}" "$@"
