#!/bin/sh
# The full-size check (ViT-B/32 and RN50 at their published sizes against openai/CLIP's PyTorch code; see
# check.ts). Needs python3 (or $PYTHON) with torch and openai/CLIP's clip/model.py (CLIP_MODEL_PY, or a clone at
# ../CLIP); without them it says so and exits 0, so CI can run it unconditionally. The references (about
# 3 GB) go to a temporary folder that is removed afterwards. Usage: sh scripts/fullsize/check.sh [ViT-B/32,RN50]
set -eu
cd "$(dirname "$0")/../.."
model_py=${CLIP_MODEL_PY:-../CLIP/clip/model.py}
python=${PYTHON:-python3}
if ! "$python" -c 'import torch' 2>/dev/null; then echo "fullsize check skipped: $python cannot import torch"; exit 0; fi
if [ ! -f "$model_py" ]; then echo "fullsize check skipped: no openai/CLIP model.py at $model_py (set CLIP_MODEL_PY)"; exit 0; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$python" scripts/fullsize/reference.py "$model_py" "$out" "${1:-ViT-B/32,RN50}"
node scripts/run.mjs scripts/fullsize/check.ts "$out"
