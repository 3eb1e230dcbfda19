"""Wall time of `encgraph predict` for the bundled models with --attn auto and --attn sdpa: the median
of fresh processes, start-up included, one line a model and attention, then the slowest. Exits 1
when a median is over the limit (default 10 s, the target for every bundled model) or a prediction fails.

    python tools/bench_predict.py                                  # every bundled model, 3 runs each
    python tools/bench_predict.py --runs 5 qwen2.5-vl-7b gemma-4-31b

The machine's load average is printed before and after: other work on its cores slows every run.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGETS = "1024,2048,4096,8192"
ATTENTIONS = ("auto", "sdpa")


def bundled() -> list[str]:
    root = Path(__file__).resolve().parent.parent / "configs"
    return sorted(p.stem for p in root.glob("*.json") if p.name != "parameters.json")


def wall(model: str, attn: str) -> float | None:
    """Seconds one `encgraph predict` process takes, or None when it fails (its last line shown)."""
    arguments = ["predict", "--model", model, "--budgets", BUDGETS, "--attn", attn, "--format", "json"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "encgraph_profiler", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{model} {attn}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return time.perf_counter() - started


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(models: list[str], runs: int, limit: float) -> int:
    print(f"{load()}; {len(os.sched_getaffinity(0))} cores; {runs} runs each", flush=True)
    medians, failed = {}, 0
    for model in models or bundled():
        for attn in ATTENTIONS:
            walls = [wall(model, attn) for _ in range(runs)]
            if None in walls:
                failed += 1
                continue
            medians[model, attn] = statistics.median(walls)
            print(
                f"{model} {attn}: median {medians[model, attn]:.2f} s (min {min(walls):.2f}, max {max(walls):.2f})",
                flush=True,
            )
    if medians:
        (model, attn), slowest = max(medians.items(), key=lambda item: item[1])
        over = sum(median > limit for median in medians.values())
        print(f"slowest: {model} {attn} {slowest:.2f} s; {over} over {limit:g} s; {load()}")
    return 1 if failed or any(median > limit for median in medians.values()) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="bundled models (configs/*.json stems); all when none are given")
    parser.add_argument("--runs", type=int, default=3, help="processes per model and attention (default 3)")
    parser.add_argument("--limit", type=float, default=10.0, help="seconds a median may take (default 10)")
    given = parser.parse_args()
    sys.exit(main(given.models, given.runs, given.limit))
