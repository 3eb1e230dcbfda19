#!/usr/bin/env bash
# The same sweep through Ray and locally, cell by cell, to $OUT: every cell's pool and each graph's
# bytes must be equal, and every graph's replay equal to its eager run. On a GPU host the cells are
# measurements; with PREDICT=1 they are predictions, which checks this script on a machine without one.
#   OUT=/tmp/out bash tools/gpu_ray_sweep.sh
# Where Ray is not installed, its wheels travel in .whl/ (ignored), made here with
#   pip download -d .whl --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform any ray==2.60.0 && zip -d .whl/ray-2.60.0-*.whl 'ray/jars/*'
# (49 MiB: the Java jars, which a Python driver never loads, would take it past the 64 MiB that travels).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
if ! python3 -c 'import ray' 2>/dev/null && ls .whl/ray-*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
MODELS=${MODELS:-"qwen2-vl-2b kimi-vl-a3b"}
LADDERS=${LADDERS:-"1024,2048 4096,8192"}
STRATEGIES=${STRATEGIES:-vllm,sglang}
args=(--as "$STRATEGIES"); for m in $MODELS; do args+=(--model "$m"); done; for l in $LADDERS; do args+=(--budgets "$l"); done
[ -n "${PREDICT:-}" ] && args+=(--predict)

for where in ray local; do
  on=(); [ $where = ray ] && on=(--on ray)
  start=$(date +%s.%N)
  python3 cli.py sweep "${on[@]}" "${args[@]}" --out "$OUT/$where" > "$OUT/$where.txt" 2>&1
  echo "sweep $where: rc=$? $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
done

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
def figures(path):
    report = json.loads(path.read_text())
    pool = next(p["reserved_bytes"] for p in report["pools"] if p["pool"] == "encoder_graphs")
    graphs = {(b["path"], b["budget"]): b["pool_reserved_bytes"] for b in report["budgets"]}
    replay = [b.get("replay_matches_eager") for b in report["budgets"]]
    return pool, graphs, replay, report["provenance"].get("node"), report["provenance"].get("gpu_name")
cells = json.loads((out / "ray" / "sweep.json").read_text())["cells"]
local = {c["report"]: c for c in json.loads((out / "local" / "sweep.json").read_text())["cells"]}
equal = 0
for cell in cells:
    name = cell["report"]
    if name is None or local.get(name, {}).get("report") is None:
        print(f"{cell['model']} {cell['budgets']} {cell['strategy']}: no report (ray exit {cell['exit_code']}: {cell['message']})")
        continue
    ray_pool, ray_graphs, ray_replay, node, gpu = figures(out / "ray" / name)
    pool, graphs, replay, _, _ = figures(out / "local" / name)
    same = (ray_pool, ray_graphs) == (pool, graphs)
    equal += same
    print(f"{name}: ray {ray_pool:,} B on {node} ({gpu}), local {pool:,} B, per graph equal {ray_graphs == graphs}, "
          f"replay = eager ray {all(r is not False for r in ray_replay)} local {all(r is not False for r in replay)}")
print(f"{equal} of {len(cells)} cells equal")
PY
