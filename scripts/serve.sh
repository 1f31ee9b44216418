#!/usr/bin/env bash
# Builds Memoria (installing what it needs) and runs it. Until the gRPC server lands, "serve"
# generates a small random-weight demo model (tokenizer from ../shared/vocab) and streams a
# completion from it with the CLI. The weights are random: the text is noise, the pipeline is real.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
  VOCAB=${MEMORIA_SHARED_DIR:-../shared}/vocab/ggml-vocab-llama-bpe.gguf
  [ -f "$VOCAB" ] || { echo "serve: no --model given and $VOCAB not found" >&2; exit 1; }
  MODEL=$BUILD_DIR/demo-model.gguf
  [ -f "$MODEL" ] || "$BUILD_DIR/client/memoria" make-model --vocab "$VOCAB" --arch llama \
    --layers 4 --dim 256 --heads 8 --kv-heads 4 --ff 768 --type q8_0 -o "$MODEL"
  echo "serve: demo model $MODEL has RANDOM weights; its text is noise"
fi
exec "$BUILD_DIR/client/memoria" run --model "$MODEL" --prompt "${PROMPT:-Explicit memory is}" -n "${N:-32}"
