"""Wall time of `encgraph models`, start-up included: the median of ten fresh processes.

    python tools/bench_models.py
"""

import statistics
import subprocess
import sys
import time


def main(runs: int = 10) -> None:
    command = [sys.executable, "-m", "encgraph_profiler", "models"]
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    print(f"encgraph models: median {statistics.median(walls):.3f} s, min {min(walls):.3f} s, "
          f"max {max(walls):.3f} s over {runs} runs ({sys.version.split()[0]}, {len(__import__('os').sched_getaffinity(0))} cores)")


if __name__ == "__main__":
    main()
