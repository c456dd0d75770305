#!/usr/bin/env bash
# Regenerate benchmarks/results/ on this machine: `nvcodec bench` on every clip in $CLIPS, then the
# codec-issue and task-issue views of the same runs and the Markdown summary.
# About 25-30 minutes on 2 CPU cores; run it on an otherwise idle machine (timings are wall clock).
# Variables: CLIPS (folder of clips), NV (nvcodec command), PY (python), DEVICE, THREADS, FRAMES, BUDGET, BPPS.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIPS="${CLIPS:-/work/shared/clips}"
NV="${NV:-nvcodec}"
PY="${PY:-python}"
DEVICE="${DEVICE:-cpu}"
FRAMES="${FRAMES:-0:24}"
BUDGET="${BUDGET:-60}"
BPPS="${BPPS:-0.05,0.1}"
DETR_CLIP="${DETR_CLIP:-intel_car-detection.mp4}"
OUT=benchmarks/results
mkdir -p "$OUT/plots"
threads=()
if [ -n "${THREADS:-}" ]; then threads=(--threads "$THREADS"); fi

common=(--frames "$FRAMES" --time-budget "$BUDGET" --weights random --codecs x264,x265
        --device "$DEVICE" --plot "$OUT/plots" --json "${threads[@]}")

# The DETR clip goes last; every other clip gets ResNet-50 only.
clips=()
for path in "$CLIPS"/*.mp4 "$CLIPS"/*.mkv; do
  [ -f "$path" ] && [ "$(basename "$path")" != "$DETR_CLIP" ] && clips+=("$path")
done
[ -f "$CLIPS/$DETR_CLIP" ] && clips+=("$CLIPS/$DETR_CLIP")

for path in "${clips[@]}"; do
  clip="$(basename "$path")"
  stem="${clip%.*}"
  if [ "$clip" = "$DETR_CLIP" ]; then
    # DETR at 750x1333 on a CPU costs ~40x ResNet-50 per frame: one rate point, 4 sampled frames,
    # 3 timed passes, attach on 8 frames.
    extra=(--task resnet50,detr --bpps "${BPPS##*,}" --sample 4 --repeat 3 --attach-frames 8)
  else
    extra=(--task resnet50 --bpps "$BPPS" --repeat 5)
  fi
  echo "== $clip $(date -u +%H:%M:%S)" >&2
  "$NV" bench "$path" "${common[@]}" "${extra[@]}" > "$OUT/bench_$stem.json.tmp"
  mv "$OUT/bench_$stem.json.tmp" "$OUT/bench_$stem.json"
done

"$PY" benchmarks/codec_bench.py --from-bench "$OUT"/bench_*.json --out "$OUT"
"$PY" benchmarks/task_bench.py --from-bench "$OUT"/bench_*.json --out "$OUT"
"$PY" -m nvcodec.bench.summary "$OUT" > "$OUT/SUMMARY.md"
echo "wrote $OUT/bench_*.json, codec_*.json, task_*.json, SUMMARY.md and $OUT/plots/" >&2
