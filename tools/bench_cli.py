"""Wall time of an encgraph command, start-up included: the median of fresh processes.

python tools/bench_cli.py                      # encgraph models, 10 runs
python tools/bench_cli.py 3 predict --model Qwen2-VL --budgets 1024,2048,4096,8192
"""

import os
import statistics
import subprocess
import sys
import time


def main(runs: int, arguments: list[str]) -> None:
    command = [sys.executable, "-m", "encgraph_profiler", *arguments]
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    print(
        f"encgraph {' '.join(arguments)}: median {statistics.median(walls):.3f} s, min {min(walls):.3f} s, "
        f"max {max(walls):.3f} s over {runs} runs ({sys.version.split()[0]}, {len(os.sched_getaffinity(0))} cores)"
    )


if __name__ == "__main__":
    given = sys.argv[1:]
    main(int(given[0]) if given else 10, given[1:] or ["models"])
