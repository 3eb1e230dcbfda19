#!/usr/bin/env bash
# What encgraph's GPU acceptance needs, in one call on a CUDA machine. Logs and reports go to $OUT.
#   OUT=/tmp/out bash tools/gpu_acceptance.sh        (MODELS="" skips the other bundled models)
set -u
ROOT=$PWD
export PYTHONPATH=$ROOT PYTHONUNBUFFERED=1
RESULT=${OUT:-/tmp}
OUT=$(mktemp -d)/acceptance  # gathered into one archive at the end
mkdir -p "$OUT"
LADDER=1024,2048,4096,8192

timed() {  # timed NAME CMD...: stdout to $OUT/NAME.out, stderr to $OUT/NAME.err, seconds to NAME.wall, exit code to NAME.rc
  local name=$1; shift
  local t0=$(date +%s.%N)
  "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; local rc=$?
  python3 -c "print($(date +%s.%N) - $t0)" >"$OUT/$name.wall"
  echo $rc >"$OUT/$name.rc"
  echo "$name rc=$rc wall=$(cat "$OUT/$name.wall")s"
}

signal_after() {  # signal_after NAME SIGNAL PATTERN COUNT ARGS...: profile in the background, signal it once PATTERN was logged COUNT times
  local name=$1 sig=$2 pattern=$3 count=$4; shift 4
  set -m  # job control: a background job that ignored SIGINT could not be interrupted
  python3 "$ROOT/cli.py" profile "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  local pid=$!
  set +m
  until [ "$(grep -c "$pattern" "$OUT/$name.err")" -ge "$count" ] || ! kill -0 $pid 2>/dev/null; do sleep 0.05; done
  kill -$sig $pid 2>/dev/null
  wait $pid; echo $? >"$OUT/$name.rc"
  echo "$name rc=$(cat "$OUT/$name.rc")"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers, typer; print(torch.__version__, torch.version.cuda, transformers.__version__, typer.__version__, torch.cuda.get_device_properties(0).total_memory)' | tee -a "$OUT/gpu.txt"

# The independent measurement and encgraph alternate, each in a fresh process, twice.
for run in 1 2; do
  timed "bare$run" python3 tools/bare_ladder.py configs/qwen2-vl-7b.json $LADDER varlen  # the default attention on an H100
  timed "profile$run" python3 cli.py profile --model Qwen2-VL --budgets $LADDER --json "$OUT/profile$run.json"
done

# Nothing measured is lost: a budget that cannot fit, SIGINT and SIGTERM mid-ladder, a --json whose folder vanishes.
timed oom python3 cli.py profile --model Qwen2-VL --budgets 1024,2048,4096,2000000 --json "$OUT/oom.json"
signal_after sigint INT "captured budget" 2 --model Qwen2-VL --budgets $LADDER --json "$OUT/sigint.json"
signal_after sigterm TERM "captured budget" 2 --model Qwen2-VL --budgets $LADDER --json "$OUT/sigterm.json"
mkdir -p /tmp/vanishing "$OUT/fallback"
( cd "$OUT/fallback" && signal_after vanish 0 "capturing budget" 1 --model Qwen2-VL --budgets $LADDER --json /tmp/vanishing/r.json ) &
until grep -q "capturing budget" "$OUT/vanish.err" 2>/dev/null; do sleep 0.05; done; rm -rf /tmp/vanishing; wait

for model in ${MODELS-qwen2-vl-2b qwen2.5-vl-7b qwen3-vl-8b siglip-so400m-patch14-384 clip-vit-large-patch14-336}; do
  timed "model-$model" python3 cli.py profile --model $model --budgets $LADDER --json "$OUT/model-$model.json"
done

timed pytest python3 -m pytest -q -p no:cacheprovider tests
python3 tools/acceptance_summary.py "$OUT" | tee "$OUT/summary.txt"
cp "$OUT/summary.txt" "$OUT/profile1.json" "$RESULT/"
tar czf "$RESULT/acceptance.tgz" -C "$(dirname "$OUT")" acceptance
