#!/usr/bin/env bash
# The benchmark run for a lent GPU machine (the `device` tool; it has no Node and no npm), in two halves.
#
#   bash scripts/gpu.sh pack   here: bundles the tuner, the benchmarks and the memory measurement into
#                              .gpu-dist/ (everything but `webgpu`, tfjs included), then packs Node, the Vulkan
#                              loader and `webgpu` into .gpu/ (../shared/gpu/pack.sh).
#   bash scripts/gpu.sh run    there, through the packed Node: bash .gpu/enter.sh bash scripts/gpu.sh run
#                              tunes (the cache lands in $OUT), then writes $OUT/bench.json (npm run bench --
#                              --quick --json) and $OUT/memory.txt (npm run bench:memory), each with its log.
#
# With the device tool: run(command: "bash .gpu/enter.sh bash scripts/gpu.sh run", carry: [".gpu", ".gpu-dist"]).
# Nothing in the project needs a GPU; this only records figures for bench/RESULTS.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

case "${1:-}" in
  pack)
    mkdir -p .gpu-dist
    grep -qxF '/.gpu-dist/' .git/info/exclude 2>/dev/null || echo '/.gpu-dist/' >> .git/info/exclude
    for entry in bin/clipgpu.ts bench/memory.ts; do
      npx esbuild "$entry" --bundle --platform=node --format=esm --target=node20 --external:webgpu \
        --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" \
        --log-level=warning --outfile=".gpu-dist/$(basename "$entry" .ts).mjs"
    done
    bash ../shared/gpu/pack.sh
    du -sh .gpu-dist | sed 's/^/gpu: .gpu-dist is /'
    echo 'gpu: now run(command: "bash .gpu/enter.sh bash scripts/gpu.sh run", carry: [".gpu", ".gpu-dist"])'
    ;;
  run)
    out="${OUT:-/tmp/gpu-out}"
    mkdir -p "$out"
    export CLIPGPU_TUNING="$out/tuning.json" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
    node .gpu-dist/clipgpu.mjs tune 2>&1 | tee "$out/tune.log"
    node .gpu-dist/clipgpu.mjs tune --show > "$out/tune-show.txt" 2>&1 || true
    node .gpu-dist/clipgpu.mjs bench --quick --json > "$out/bench.json" 2> "$out/bench.log" || { tail -20 "$out/bench.log"; exit 1; }
    node .gpu-dist/memory.mjs > "$out/memory.txt" 2>&1 || true
    tail -5 "$out/bench.log"; cat "$out/memory.txt"
    ;;
  *)
    echo "usage: bash scripts/gpu.sh pack | run" >&2
    exit 2
    ;;
esac
