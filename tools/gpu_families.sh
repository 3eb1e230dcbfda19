#!/usr/bin/env bash
# Model reach on a CUDA machine, for the families added last: each by its Hugging Face id from a
# pre-filled cache with HF_HUB_OFFLINE=1, then from a local model folder holding the same config
# (two runs in a row: their pools must be identical); the independent ladder measurement for
# Llama 4; the whole test suite on this machine's transformers. Reports and logs go to $OUT.
#   OUT=/tmp/out bash tools/gpu_families.sh
set -u
ROOT=$PWD
export PYTHONPATH=$ROOT PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp}
LADDER=${LADDER:-1024,2048,4096,8192}
WORK=$(mktemp -d)

python3 -c 'import huggingface_hub, transformers, torch; print("huggingface_hub", huggingface_hub.__version__, "transformers", transformers.__version__, "torch", torch.__version__, torch.cuda.get_device_name())'

# GLM-4.1V-9B's sizes are transformers' Glm4vConfig defaults.
python3 -c 'import json, sys; from transformers import Glm4vConfig; json.dump(Glm4vConfig().to_dict(), open(sys.argv[1], "w"))' "$WORK/glm-4.1v-9b.json"

# A Hugging Face cache as huggingface_hub lays it out, and a local model folder, per model.
python3 - "$WORK" <<'PY'
import hashlib, os, sys
from pathlib import Path
work = Path(sys.argv[1])
models = {
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": "configs/llama-4-scout-17b-16e.json",
    "HuggingFaceTB/SmolVLM2-500M-Video-Instruct": "configs/smolvlm2-500m.json",
    "zai-org/GLM-4.1V-9B-Thinking": str(work / "glm-4.1v-9b.json"),
    "OpenGVLab/InternVL3-1B": "tests/data/internvl3-1b.internvl_chat.json",
}
for repo_id, source in models.items():
    data = Path(source).read_bytes()
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = work / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha1(data).hexdigest()
    blob.parent.mkdir(parents=True); blob.write_bytes(data)
    (repo / "refs").mkdir(); (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit; snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(os.path.relpath(blob, snap))
    local = work / "local" / repo_id.split("/")[1]; local.mkdir(parents=True)
    (local / "config.json").write_bytes(data)
PY

for id in meta-llama/Llama-4-Scout-17B-16E-Instruct HuggingFaceTB/SmolVLM2-500M-Video-Instruct zai-org/GLM-4.1V-9B-Thinking OpenGVLab/InternVL3-1B; do
  name=${id#*/}
  HF_HOME=$WORK/hf HF_HUB_OFFLINE=1 python3 cli.py profile --model "$id" --budgets $LADDER --json "$OUT/$name.hf-id.json" >"$OUT/$name.hf-id.log" 2>&1
  echo "$id by id (offline cache) rc=$?"
  python3 cli.py profile --model "$WORK/local/$name" --budgets $LADDER --json "$OUT/$name.local.json" >"$OUT/$name.local.log" 2>&1
  echo "$id from a local folder rc=$?"
done
python3 tools/bare_ladder.py configs/llama-4-scout-17b-16e.json $LADDER | tee "$OUT/llama4-bare.txt"

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
    print("   ", s.get("layout"))
PY
python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tail -6
