"""Read what tools/gpu_acceptance.sh left in a folder and check issue #2's acceptance figures."""

import json
import sys
from pathlib import Path

MiB = 1024**2


def tolerance(reference: int) -> int:
    return max(abs(reference) // 100, 4 * MiB)


def main(folder: Path) -> int:
    ok = True

    def verdict(name, passed, detail):
        nonlocal ok
        ok = ok and passed
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")

    for run in (1, 2):
        bare = json.loads((folder / f"bare{run}.out").read_text())
        report = json.loads((folder / f"profile{run}.json").read_text())
        pool = next(p for p in report["pools"] if p["pool"] == "encoder_graphs")["reserved_bytes"]
        non_alloc = sum(b["non_allocator_bytes"] for b in report["budgets"])
        reserved, nvml = bare["reserved_delta_bytes"], bare["nvml_process_delta_bytes"]
        verdict(f"run {run} pool vs bare reserved delta", abs(pool - reserved) <= tolerance(reserved),
                f"encgraph pool {pool} B, bare reserved delta {reserved} B, diff {pool - reserved} B")
        verdict(f"run {run} pool + outside vs bare NVML delta", abs(pool + non_alloc - nvml) <= tolerance(nvml),
                f"encgraph {pool} + {non_alloc} = {pool + non_alloc} B, bare NVML delta {nvml} B, diff {pool + non_alloc - nvml} B")
        bare_wall = float((folder / f"bare{run}.wall").read_text())
        wall = float((folder / f"profile{run}.wall").read_text())
        verdict(f"run {run} wall time", wall <= 1.25 * bare_wall, f"encgraph {wall:.2f} s, bare {bare_wall:.2f} s, ratio {wall / bare_wall:.3f}")

    first, second = (json.loads((folder / f"profile{r}.json").read_text()) for r in (1, 2))
    pools = [[b["pool_reserved_bytes"] for b in r["budgets"]] for r in (first, second)]
    verdict("identical pool bytes across runs", pools[0] == pools[1], f"{pools[0]} vs {pools[1]}")

    for path in sorted(folder.glob("model-*.json")):
        report = json.loads(path.read_text())
        replays = [b["replay_matches_eager"] for b in report["budgets"]]
        pool = next(p for p in report["pools"] if p["pool"] == "encoder_graphs")["reserved_bytes"]
        verdict(f"{report['settings']['model']} replay = eager", all(replays) and len(replays) == 4,
                f"{replays}, pool {pool / MiB:.1f} MiB, growth "
                + ", ".join(f"{b['budget']}:{b['pool_growth_bytes'] / MiB:.1f}" for b in report["budgets"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
