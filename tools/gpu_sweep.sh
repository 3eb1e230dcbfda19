#!/usr/bin/env bash
# The sweep on a GPU host, to $OUT: the same cells (2 models x 2 ladders x 2 strategies by default)
# spread over every GPU, then on GPU 0 alone, then as separate `encgraph profile` processes on GPU 0;
# each cell's pool must equal the same cell run alone, and the wall times are compared.
#   OUT=/tmp/out bash tools/gpu_sweep.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
MODELS=${MODELS:-"qwen2-vl-2b qwen2.5-vl-7b"}
LADDERS=${LADDERS:-"1024,2048 4096,8192"}
STRATEGIES=${STRATEGIES:-vllm,sglang}
GPUS=$(python3 -c 'import pynvml; pynvml.nvmlInit(); print(",".join(map(str, range(pynvml.nvmlDeviceGetCount()))))')
args=(); for m in $MODELS; do args+=(--model "$m"); done; for l in $LADDERS; do args+=(--budgets "$l"); done

start=$(date +%s.%N)
python3 cli.py sweep "${args[@]}" --as "$STRATEGIES" --gpus "$GPUS" --out "$OUT/all-gpus" > "$OUT/all-gpus.txt" 2>&1; echo "sweep on GPUs $GPUS rc=$?"
all=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
start=$(date +%s.%N)
python3 cli.py sweep "${args[@]}" --as "$STRATEGIES" --gpus 0 --out "$OUT/one-gpu" > "$OUT/one-gpu.txt" 2>&1; echo "sweep on GPU 0 rc=$?"
one=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
start=$(date +%s.%N)
mkdir -p "$OUT/separate"
for m in $MODELS; do for l in $LADDERS; do for s in ${STRATEGIES//,/ }; do
  CUDA_VISIBLE_DEVICES=0 python3 cli.py profile --model "$m" --budgets "$l" --as "$s" --json "$OUT/separate/$m.${l//,/-}.$s.json" > /dev/null 2>&1
done; done; done
separate=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
echo "wall: all GPUs ${all}s, GPU 0 ${one}s, separate profile processes on GPU 0 ${separate}s"

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for cell in json.loads((out / "all-gpus" / "sweep.json").read_text())["cells"]:
    name = cell["report"]
    spread = json.loads((out / "all-gpus" / name).read_text())
    alone = json.loads((out / "one-gpu" / name).read_text())
    model, ladder, strategy = name[:-5].rsplit(".", 2)
    separate = json.loads((out / "separate" / f"{model}.{ladder}.{strategy}.json").read_text())
    pool = lambda r: next(p for p in r["pools"] if p["pool"] == "encoder_graphs")["reserved_bytes"]
    print(f"{name}: GPU {spread['provenance']['visible_devices']} pool {pool(spread):,} B; on GPU 0 {pool(alone):,} B; "
          f"alone {pool(separate):,} B; equal {pool(spread) == pool(alone) == pool(separate)}")
PY
