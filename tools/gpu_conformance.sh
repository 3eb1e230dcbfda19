#!/usr/bin/env bash
# The families laid out by vLLM 0.33.0's rules on a CUDA machine: the GPU suite, then Gemma 4, Kimi-K2.5,
# Kimi-VL and GLM-OCR (at GlmOcrConfig's defaults) each profiled, predicted (per graph, to the byte) and,
# where tools/bare_ladder.py builds the family, measured independently in a fresh process. One line per
# check in $OUT/results.txt, as they come; reports and logs beside it.
#   OUT=/tmp/out bash tools/gpu_conformance.sh
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
R=$OUT/results.txt
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $R
python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)' | tee -a $R
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py > $OUT/gpu_tests.txt 2>&1; echo "gpu tests: $(tail -1 $OUT/gpu_tests.txt)" | tee -a $R
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
run() {  # run NAME ARGS...: profile and predict
  local name=$1; shift
  python3 cli.py profile "$@" --json $OUT/$name.json > $OUT/$name.out 2> $OUT/$name.err
  python3 cli.py predict "$@" --json $OUT/$name.predicted.json > /dev/null 2>> $OUT/$name.err
  summary $name
}
bare() {  # bare NAME CONFIG ATTN
  python3 tools/bare_ladder.py $2 1024,2048,4096,8192 $3 > $OUT/bare.$1.json 2> $OUT/bare.$1.err
  echo "bare $1: $(cat $OUT/bare.$1.json) $(tail -1 $OUT/bare.$1.err)" | tee -a $R
}
L=1024,2048,4096,8192
run gemma-4-31b --model gemma-4-31b --budgets $L
bare gemma-4-31b configs/gemma-4-31b.json sdpa
run kimi-k2.5 --model kimi-k2.5 --budgets $L
bare kimi-k2.5 configs/kimi-k2.5.json varlen
run kimi-k2.5.sdpa --model kimi-k2.5 --budgets $L --attn sdpa
run kimi-vl-a3b --model kimi-vl-a3b --budgets $L
bare kimi-vl-a3b configs/kimi-vl-a3b.json varlen
run kimi-k2.5.vllm --model kimi-k2.5 --budgets $L --as vllm
run gemma-4-e4b --model gemma-4-e4b --budgets $L
run gemma-4-31b.vllm --model gemma-4-31b --budgets $L --as vllm
mkdir -p /tmp/glm-ocr && python3 -c 'import json; from transformers import GlmOcrConfig; json.dump(GlmOcrConfig().to_dict(), open("/tmp/glm-ocr/config.json", "w"))'
run glm-ocr --model /tmp/glm-ocr --budgets $L
echo done | tee -a $R
