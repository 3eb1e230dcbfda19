#!/usr/bin/env bash
# Everything issue #2 asks to measure on the lent GPU, in one call. Logs and reports go to $OUT.
#   OUT=/tmp/out bash tools/gpu_acceptance.sh
set -u
export PYTHONPATH=. PYTHONUNBUFFERED=1
RESULT=${OUT:-/tmp}
OUT=$(mktemp -d)/acceptance  # gathered into one archive at the end: the device tool returns few files
mkdir -p "$OUT"
LADDER=1024,2048,4096,8192

timed() {  # timed NAME CMD...: run CMD, stdout to $OUT/NAME.out, stderr to $OUT/NAME.err, seconds to $OUT/NAME.wall
  local name=$1; shift
  local t0=$(date +%s.%N)
  "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; local rc=$?
  python3 -c "print($(date +%s.%N) - $t0)" >"$OUT/$name.wall"
  echo "$name rc=$rc wall=$(cat "$OUT/$name.wall")s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers, typer; print(torch.__version__, torch.version.cuda, transformers.__version__, typer.__version__)' | tee -a "$OUT/gpu.txt"

# The bare script and encgraph alternate, each in a fresh process, twice.
for run in 1 2; do
  timed "bare$run" python3 tools/bare_ladder.py configs/qwen2-vl-7b.json $LADDER
  timed "profile$run" python3 cli.py profile --model Qwen2-VL --budgets $LADDER --json "$OUT/profile$run.json"
done

cp "$OUT/profile1.json" "$OUT/model-qwen2-vl-7b.json"
for model in qwen2-vl-2b qwen2.5-vl-7b qwen3-vl-8b siglip-so400m-patch14-384 clip-vit-large-patch14-336; do
  timed "model-$model" python3 cli.py profile --model $model --budgets $LADDER --json "$OUT/model-$model.json"
done

timed pytest python3 -m pytest -q -p no:cacheprovider tests
python3 tools/acceptance_summary.py "$OUT" | tee "$OUT/summary.txt"
cp "$OUT/summary.txt" "$OUT/profile1.json" "$RESULT/"
tar czf "$RESULT/acceptance.tgz" -C "$(dirname "$OUT")" acceptance
