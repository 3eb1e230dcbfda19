"""Record, or compare against a record, every bundled model's `encgraph predict` figures: the guard
that a refactor moves no figure (predictions equal GPU measurements, so this checks on a CPU).

    python tools/predict_guard.py record DIR      # before the change
    python tools/predict_guard.py compare DIR     # after: exit 1 and the differences when any figure moved
    python tools/predict_guard.py compare DIR glm-4.1v-9b glm-4.5v   # only these models

Each model is predicted at 1024,2048,4096,8192 with --attn auto and --attn sdpa; what is kept is
every budget row, the pools, the unmeasured budgets and the total, in bytes.
"""

import json
import subprocess
import sys
from pathlib import Path

BUDGETS = "1024,2048,4096,8192"
ATTENTIONS = ("auto", "sdpa")
KEPT = ("budgets", "pools", "unmeasured", "total_bytes", "model", "settings", "graph_counts")


def bundled() -> list[str]:
    root = Path(__file__).resolve().parent.parent / "configs"
    return sorted(p.stem for p in root.glob("*.json") if p.name != "parameters.json")


def predict(model: str, attn: str) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "encgraph_profiler",
            "predict",
            "--model",
            model,
            "--budgets",
            BUDGETS,
            "--attn",
            attn,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {"exit": done.returncode, "stderr": done.stderr.strip().splitlines()[-1:]}
    report = json.loads(done.stdout)
    return {key: report.get(key) for key in KEPT}


def main(action: str, folder: str, only: list[str]) -> int:
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    moved = 0
    for model in only or bundled():
        for attn in ATTENTIONS:
            figures = predict(model, attn)
            path = root / f"{model}.{attn}.json"
            if action == "record":
                path.write_text(json.dumps(figures, indent=1, sort_keys=True))
                print(f"{model} {attn}: {figures.get('total_bytes', figures.get('exit'))}", flush=True)
                continue
            before = json.loads(path.read_text())
            same = before == figures
            moved += not same
            print(
                f"{model} {attn}: {'same' if same else 'MOVED'} {figures.get('total_bytes', figures.get('exit'))}",
                flush=True,
            )
            if not same:
                for key in sorted(set(before) | set(figures)):
                    if before.get(key) != figures.get(key):
                        print(f"  {key}: {json.dumps(before.get(key))[:300]} -> {json.dumps(figures.get(key))[:300]}")
    return 1 if moved else 0


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("record", "compare"):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
