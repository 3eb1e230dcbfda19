"""A prediction matrix three ways, in one run: each cell as its own `encgraph predict` process, one
after the other; `encgraph sweep --predict --on ray` (a local Ray cluster started for it) with
--workers workers; and the local `encgraph sweep --predict` with as many. Prints each wall time,
their ratios, and whether every cell's report is the same all three ways.

    python tools/bench_ray_sweep.py                      # 3 tiny models x 2 ladders x 2 strategies x 2 GPUs: 24 cells
    python tools/bench_ray_sweep.py --workers 4 --out /tmp/bench

Needs Ray (pip install 'encgraph[ray]'); RAY_ADDRESS unset, so that the sweep starts its own cluster.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's package, installed or not

from encgraph_profiler import report_io  # noqa: E402 - after the path above

MODELS = ("tiny-qwen2-vl", "tiny-siglip", "tiny-clip")
LADDERS = ("64,128", "128,256")
STRATEGIES = ("vllm", "sglang")
CAPABILITIES = ("9.0", "8.0")


def _encgraph(*args: str) -> float:
    """Run one encgraph command; its wall time in seconds. Exits with its output if it fails."""
    started = time.perf_counter()
    # Ray's switch for a cluster on one host: the sweep's local cluster stays on the loopback address.
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([sys.executable, "-m", "encgraph_profiler", *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"encgraph {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def _comparable(path: Path) -> dict:
    """A report as JSON data, less what differs between two runs of the same prediction: when and where
    (a report that came back through Ray names its node) it was made."""
    data = report_io.to_dict(report_io.load(path))
    data["provenance"].pop("created_at")
    data["provenance"].pop("node")
    data.pop("wall_ms")
    return data


def _sweep(out: Path, on: str, workers: int) -> tuple[float, dict[str, Path]]:
    axes = [a for m in MODELS for a in ("--model", m)] + [a for ladder in LADDERS for a in ("--budgets", ladder)]
    options = f"--as {','.join(STRATEGIES)} --gpu-capability {','.join(CAPABILITIES)} --workers {workers}".split()
    seconds = _encgraph("sweep", "--predict", "--on", on, *axes, *options, "--out", str(out), "--format", "json")
    cells = json.loads((out / "sweep.json").read_text())["cells"]
    return seconds, {c["report"]: out / c["report"] for c in cells}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="Keep the reports here (default: a temporary folder).")
    args = parser.parse_args()
    if os.environ.get("RAY_ADDRESS"):
        sys.exit("unset RAY_ADDRESS: the comparison starts its own local Ray cluster")
    out = args.out or Path(tempfile.mkdtemp(prefix="encgraph-bench-"))
    cells = list(itertools.product(MODELS, LADDERS, STRATEGIES, CAPABILITIES))
    print(
        f"{len(cells)} cells: {len(MODELS)} models x {len(LADDERS)} ladders x {len(STRATEGIES)} strategies x "
        f"{len(CAPABILITIES)} compute capabilities; {os.cpu_count()} CPU cores; reports in {out}",
        flush=True,
    )
    serial_dir = out / "serial"
    serial_dir.mkdir(parents=True, exist_ok=True)
    serial = {}
    serial_s = 0.0
    for model, ladder, strategy, capability in cells:
        name = f"{model}.{ladder.replace(',', '-')}.{strategy}.cc{capability}.json"
        serial[name] = serial_dir / name
        options = f"--model {model} --budgets {ladder} --as {strategy} --gpu-capability {capability}".split()
        serial_s += _encgraph("predict", *options, "--json", str(serial[name]), "--format", "json")
    print(f"serial `encgraph predict`, one process a cell:   {serial_s:7.1f} s", flush=True)
    ray_s, on_ray = _sweep(out / "ray", "ray", args.workers)
    print(f"`sweep --predict --on ray --workers {args.workers}`:          {ray_s:7.1f} s", flush=True)
    local_s, local = _sweep(out / "local", "local", args.workers)
    print(f"`sweep --predict --workers {args.workers}` (local, forked):   {local_s:7.1f} s", flush=True)
    print(
        f"serial / ray: {serial_s / ray_s:.2f}x; serial / local: {serial_s / local_s:.2f}x; ray / local: "
        f"{ray_s / local_s:.2f}x"
    )
    same = sorted(on_ray) == sorted(serial) == sorted(local) and all(
        _comparable(serial[name]) == _comparable(on_ray[name]) == _comparable(local[name]) for name in serial
    )
    print(f"every cell's report the same all three ways: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
