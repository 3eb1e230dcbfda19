#!/usr/bin/env bash
# The families laid out by vLLM 0.33.0's rules, on a CUDA machine: each profiled, predicted (per graph, to
# the byte) and measured independently in a fresh process by tools/bare_ladder.py. One line per check in
# $OUT/results.txt, as they come; reports and logs beside it. Groups, in the order given:
#   suite     the GPU tests (tests/test_gpu.py and every family's gpu-marked tests)
#   rewritten Gemma 4 31B and Kimi-K2.5, whose layouts were rewritten to vLLM 0.33.0
#   layouts   more of them: --attn sdpa, --as vllm, Gemma 4 E4B, Kimi-VL, GLM-OCR
#   families  MiniMax M3, Kimi-K3, DeepSeek-VL2, DeepSeek-OCR
#   twomib    Kimi-K3 and Gemma 4 31B, whose bare reserved delta was 2 MiB above the pool
#   standins  Cohere Compass, GLM-5.3-Flash, DeepSeek-V4.1
#   minicpm   MiniCPM-V 2.6 and MiniCPM-Llama3-V 2.5 (16 graphs each, about 48 and 34 GiB)
#   normalize --as vllm where vLLM normalizes the pixels in the graph (uint8 inputs): Qwen2-VL, Qwen2.5-VL,
#             Qwen3-VL, GLM-4.1V, Kimi-K3 (Kimi-K2.5's is in layouts)
#     OUT=/tmp/out bash tools/gpu_conformance.sh suite rewritten families
# With DEADLINE=S, a check that would start S seconds or more after the script began is listed as not
# started instead, so that a call with a time limit returns every result it finished.
# Cohere Compass and GLM-5.3-Flash have no bundled config: their tiny text configs with the published
# vision sizes stand in (tests/data/stand_ins; the vision tower is all that is captured).
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
R=$OUT/results.txt
L=1024,2048,4096,8192
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a $R
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)' | tee -a $R

summary() {  # summary NAME: measured vs predicted, per graph
python3 - "$1" <<'PY' | tee -a $R
import json, os, sys
out, name = os.environ["OUT"], sys.argv[1]
def load(p):
    d = json.load(open(p)); e = next(x for x in d["pools"] if x["pool"] == "encoder_graphs")
    return d, e["reserved_bytes"], {(b["path"], b["budget"]): b["pool_reserved_bytes"] for b in d["budgets"]}
try:
    m, mp, mb = load(f"{out}/{name}.json")
    p, pp, pb = load(f"{out}/{name}.predicted.json")
    replay = [b["replay_matches_eager"] for b in m["budgets"]]
    print(f"{name}: attn {m['settings']['attn']} measured {mp:,} predicted {pp:,} equal {mp == pp} per-graph equal {mb == pb} "
          f"graphs {len(mb)} complete {m['complete']} replay all {all(replay)} ({sum(replay)}/{len(replay)})")
    if mb != pb:
        print("  differ:", {k: (mb.get(k), pb.get(k)) for k in set(mb) | set(pb) if mb.get(k) != pb.get(k)})
except Exception as error:
    print(f"{name}: no report ({error})")
PY
}
late() {  # late NAME: true, and says so, when the deadline has passed
  [ -n "${DEADLINE:-}" ] && [ $SECONDS -ge $DEADLINE ] && echo "$1: not started (deadline)" | tee -a $R
}
run() {  # run NAME ARGS...: profile on the GPU while the prediction (CPU only) runs beside it
  local name=$1; shift
  late $name && return
  CUDA_VISIBLE_DEVICES= python3 cli.py predict "$@" --json $OUT/$name.predicted.json > /dev/null 2> $OUT/$name.predict.err &
  /usr/bin/time -f "%e s" -o $OUT/$name.time python3 cli.py profile "$@" --json $OUT/$name.json > $OUT/$name.out 2> $OUT/$name.err
  wait
  summary $name
}
bare() {  # bare NAME CONFIG ATTN: the independent measurement, to compare with `run NAME` (plain capture)
  late bare.$1 && return
  python3 tools/bare_ladder.py $2 $L $3 > $OUT/bare.$1.json 2> $OUT/bare.$1.err
  echo "bare $1: $(cat $OUT/bare.$1.json) $(tail -1 $OUT/bare.$1.err)" | tee -a $R
  python3 - "$1" <<'PY' | tee -a $R
import json, os, sys
out, name = os.environ["OUT"], sys.argv[1]
try:
    bare = json.load(open(f"{out}/bare.{name}.json"))
    pool = next(p["reserved_bytes"] for p in json.load(open(f"{out}/{name}.json"))["pools"] if p["pool"] == "encoder_graphs")
    print(f"  {name}: encgraph's pool {pool:,}; bare reserved delta {bare['reserved_delta_bytes']:,} "
          f"(equal {bare['reserved_delta_bytes'] == pool}), bare graph pool {bare['graph_pool_bytes']:,} "
          f"(equal {bare['graph_pool_bytes'] == pool})")
except Exception as error:
    print(f"  {name}: nothing to compare ({error})")
PY
}
stand_in() {  # stand_in NAME: a config folder of the tiny text config and the published vision sizes
  mkdir -p /tmp/$1
  python3 -c "import json; d = json.load(open('configs/tiny/tiny-$1.json')); d['vision_config'] = json.load(open('tests/data/stand_ins/$1.vision.json')); json.dump(d, open('/tmp/$1/config.json', 'w'))"
}

suite() {
  late suite && return
  python3 -m pytest -q -p no:cacheprovider -m gpu tests > $OUT/gpu_tests.txt 2>&1
  echo "gpu tests: $(tail -1 $OUT/gpu_tests.txt)" | tee -a $R
}
rewritten() {
  run gemma-4-31b --model gemma-4-31b --budgets $L
  bare gemma-4-31b configs/gemma-4-31b.json sdpa
  run kimi-k2.5 --model kimi-k2.5 --budgets $L
  bare kimi-k2.5 configs/kimi-k2.5.json varlen
}
layouts() {
  run kimi-k2.5.sdpa --model kimi-k2.5 --budgets $L --attn sdpa
  run kimi-vl-a3b --model kimi-vl-a3b --budgets $L
  bare kimi-vl-a3b configs/kimi-vl-a3b.json varlen
  run kimi-k2.5.vllm --model kimi-k2.5 --budgets $L --as vllm
  run gemma-4-e4b --model gemma-4-e4b --budgets $L
  run gemma-4-31b.vllm --model gemma-4-31b --budgets $L --as vllm
  mkdir -p /tmp/glm-ocr && python3 -c 'import json; from transformers import GlmOcrConfig; json.dump(GlmOcrConfig().to_dict(), open("/tmp/glm-ocr/config.json", "w"))'
  run glm-ocr --model /tmp/glm-ocr --budgets $L
}
families() {
  run minimax-m3 --model minimax-m3 --budgets $L
  bare minimax-m3 configs/minimax-m3.json varlen
  run kimi-k3 --model kimi-k3 --budgets $L
  bare kimi-k3 configs/kimi-k3.json varlen
  run deepseek-vl2 --model deepseek-vl2 --budgets $L
  bare deepseek-vl2 configs/deepseek-vl2.json sdpa
  run deepseek-ocr --model deepseek-ocr --budgets $L
  bare deepseek-ocr configs/deepseek-ocr.json sdpa
}
standins() {
  stand_in cohere-compass
  stand_in glm5-next
  run cohere-compass --model /tmp/cohere-compass --budgets $L
  bare cohere-compass /tmp/cohere-compass/config.json varlen
  run glm5-next --model /tmp/glm5-next --budgets $L
  bare glm5-next /tmp/glm5-next/config.json varlen
  run deepseek-v4.1-flash --model deepseek-v4.1-flash --budgets $L
  bare deepseek-v4.1-flash configs/deepseek-v4.1-flash.json varlen
}
twomib() {
  run kimi-k3 --model kimi-k3 --budgets $L
  bare kimi-k3 configs/kimi-k3.json varlen
  run gemma-4-31b --model gemma-4-31b --budgets $L
  bare gemma-4-31b configs/gemma-4-31b.json sdpa
}
minicpm() {
  run minicpm-v-2-6 --model minicpm-v-2-6 --budgets $L
  bare minicpm-v-2-6 configs/minicpm-v-2-6.json sdpa
  run minicpm-llama3-v-2-5 --model minicpm-llama3-v-2-5 --budgets $L
  bare minicpm-llama3-v-2-5 configs/minicpm-llama3-v-2-5.json sdpa
}
normalize() {
  for model in qwen2-vl-7b qwen2.5-vl-7b qwen3-vl-8b glm-4.1v-9b kimi-k3; do
    run $model.vllm --model $model --budgets $L --as vllm
  done
}
for group in ${@:-suite rewritten layouts}; do $group; done
echo done | tee -a $R
