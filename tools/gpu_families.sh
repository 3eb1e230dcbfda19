#!/usr/bin/env bash
# Model reach on a CUDA machine: a Hugging Face id from a pre-filled cache with HF_HUB_OFFLINE=1 and
# from a local model folder, the Hub tests, and real-size towers of the families without a bundled
# config yet (their vision configs as transformers defines them, a tiny language model). To $OUT.
#   OUT=/tmp/out bash tools/gpu_families.sh
set -u
ROOT=$PWD
export PYTHONPATH=$ROOT PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
LADDER=1024,2048,4096,8192
WORK=$(mktemp -d)

python3 -c 'import huggingface_hub, transformers, torch; print("huggingface_hub", huggingface_hub.__version__, "transformers", transformers.__version__, "torch", torch.__version__)'
python3 -m pytest -q -p no:cacheprovider tests/test_hub.py tests/test_gpu.py -k "hub or replay_equals_eager" 2>&1 | tail -3

# A Hugging Face cache as huggingface_hub lays it out, holding the published Qwen2-VL-7B config.
python3 - "$WORK" <<'PY'
import hashlib, os, sys
from pathlib import Path
work, commit = Path(sys.argv[1]), "5a0e6b8b2f0c6b1b4a3e1f0e9d8c7b6a5f4e3d2c"
data = Path("configs/qwen2-vl-7b.json").read_bytes()
repo = work / "hf" / "hub" / "models--Qwen--Qwen2-VL-7B-Instruct"
blob = repo / "blobs" / hashlib.sha1(data).hexdigest()
blob.parent.mkdir(parents=True); blob.write_bytes(data)
(repo / "refs").mkdir(); (repo / "refs" / "main").write_text(commit)
snap = repo / "snapshots" / commit; snap.mkdir(parents=True)
(snap / "config.json").symlink_to(os.path.relpath(blob, snap))
(work / "local").mkdir(); (work / "local" / "config.json").write_bytes(data)
PY
HF_HOME=$WORK/hf HF_HUB_OFFLINE=1 python3 cli.py profile --model Qwen/Qwen2-VL-7B-Instruct --budgets $LADDER --json "$OUT/hf-id.json" >"$OUT/hf-id.log" 2>&1; echo "hf id rc=$?"
python3 cli.py profile --model "$WORK/local" --budgets $LADDER --json "$OUT/local-dir.json" >>"$OUT/hf-id.log" 2>&1; echo "local folder rc=$?"

# Gemma 3 27B (bundled): twice in a row, then the independent measurement, each in a fresh process;
# and by its Hugging Face id from a pre-filled cache.
for run in 1 2; do
  python3 cli.py profile --model gemma-3-27b --budgets $LADDER --json "$OUT/gemma3-run$run.json" >"$OUT/gemma3-run$run.log" 2>&1
  echo "gemma-3-27b run $run rc=$?"
done
python3 tools/bare_ladder.py configs/gemma-3-27b.json $LADDER | tee "$OUT/gemma3-bare.txt"
python3 - "$WORK" google/gemma-3-27b-it configs/gemma-3-27b.json <<'PY'
import hashlib, os, sys
from pathlib import Path
work, repo_id, source = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
commit, data = "aa5e6b8b2f0c6b1b4a3e1f0e9d8c7b6a5f4e3d2c", source.read_bytes()
repo = work / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}"
blob = repo / "blobs" / hashlib.sha1(data).hexdigest()
blob.parent.mkdir(parents=True); blob.write_bytes(data)
(repo / "refs").mkdir(); (repo / "refs" / "main").write_text(commit)
snap = repo / "snapshots" / commit; snap.mkdir(parents=True)
(snap / "config.json").symlink_to(os.path.relpath(blob, snap))
PY
HF_HOME=$WORK/hf HF_HUB_OFFLINE=1 python3 cli.py profile --model google/gemma-3-27b-it --budgets $LADDER --json "$OUT/gemma3-hf-id.json" >"$OUT/gemma3-hf-id.log" 2>&1; echo "gemma hf id rc=$?"

# Real-size towers of the new Qwen families.
for tiny in tiny-qwen3-vl-moe tiny-qwen3.5 tiny-qwen3.5-moe; do
  python3 - "$tiny" "$WORK" <<'PY'
import json, sys
from pathlib import Path
name, work = sys.argv[1], Path(sys.argv[2])
config = json.loads(Path(f"configs/tiny/{name}.json").read_text())
real = {"depth": 27, "hidden_size": 1152, "num_heads": 16, "intermediate_size": 4304, "patch_size": 16,
        "num_position_embeddings": 2304, "out_hidden_size": config["text_config"]["hidden_size"]}
if "deepstack_visual_indexes" in config["vision_config"]:
    real["deepstack_visual_indexes"] = [8, 16, 24]
config["vision_config"].update(real)
(work / f"{name}-tower.json").write_text(json.dumps(config))
PY
  python3 cli.py profile --model "$WORK/$tiny-tower.json" --budgets $LADDER --json "$OUT/$tiny-tower.json" >"$OUT/$tiny-tower.log" 2>&1
  echo "$tiny real-size tower rc=$?"
done

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    pool = next(p for p in r["pools"] if p["pool"] == "encoder_graphs")["reserved_bytes"]
    s = r["settings"]
    print(f"{path.name}: model {s['model']} revision {s.get('revision')} commit {s.get('commit')} complete {r['complete']} "
          f"replay {[b['replay_matches_eager'] for b in r['budgets']]} pool {pool:,} B "
          f"per budget {[b['pool_reserved_bytes'] for b in r['budgets']]}")
PY
