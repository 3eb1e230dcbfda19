#!/usr/bin/env bash
# Predicted against measured, on a CUDA machine: every bundled model (MODELS to choose) profiled at
# LADDER and predicted with the same settings, each pool compared byte for byte; with SNAPSHOTS=1 each
# run also records its allocator history (gzip-compressed) for tests/data/memory_snapshot.
#   OUT=/tmp/out bash tools/gpu_predict_check.sh
#   OUT=/tmp/out MODELS="siglip-so400m-patch14-384 clip-vit-large-patch14-336" LADDER=1024,2048 SNAPSHOTS=1 bash tools/gpu_predict_check.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
LADDER=${LADDER:-1024,2048,4096,8192}
MODELS=${MODELS:-$(python3 -c 'import json; print(" ".join(json.load(open("configs/parameters.json"))))')}
mkdir -p "$OUT/predict_check"
for model in $MODELS; do
  name=$model.${LADDER//,/-}
  snapshot=(); [ "${SNAPSHOTS:-0}" = 1 ] && snapshot=(--memory-snapshot "$OUT/predict_check/$name.pickle")
  python3 cli.py profile --model "$model" --budgets "$LADDER" --json "$OUT/predict_check/$name.measured.json" "${snapshot[@]}" > "$OUT/predict_check/$name.profile.txt" 2>&1
  [ -f "$OUT/predict_check/$name.pickle" ] && gzip -9f "$OUT/predict_check/$name.pickle"
  attn=$(python3 -c "import json; print(json.load(open('$OUT/predict_check/$name.measured.json'))['settings']['attn'])" 2>/dev/null || echo auto)
  python3 cli.py predict --model "$model" --budgets "$LADDER" --attn "$attn" --json "$OUT/predict_check/$name.predicted.json" > "$OUT/predict_check/$name.predict.txt" 2>&1
done
python3 - "$OUT/predict_check" <<'PY'
import json, sys
from pathlib import Path
for measured in sorted(Path(sys.argv[1]).glob("*.measured.json")):
    predicted = measured.with_name(measured.name.replace(".measured.", ".predicted."))
    pool = lambda path: next(p for p in json.loads(path.read_text())["pools"] if p["pool"] == "encoder_graphs")["reserved_bytes"]
    if not predicted.exists():
        print(f"{measured.name}: no prediction"); continue
    m, p = pool(measured), pool(predicted)
    print(f"{measured.name[:-len('.measured.json')]}: measured {m:,} predicted {p:,} difference {p - m:+,} "
          f"({(p - m) / m:+.2%}) within max(1%, 4 MiB): {abs(p - m) <= max(m // 100, 4 << 20)}")
PY
