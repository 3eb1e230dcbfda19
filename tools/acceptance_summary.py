"""Read what tools/gpu_acceptance.sh left in a folder and check the acceptance figures: exact
agreement with the independent measurement, and nothing measured lost when a run is cut short."""

import json
import sys
from pathlib import Path

MiB = 1024**2


def main(folder: Path) -> int:
    ok = True

    def verdict(name, passed, detail):
        nonlocal ok
        ok = ok and passed
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")

    def load(name):
        path = folder / name
        return json.loads(path.read_text()) if path.is_file() else None

    def encoder_pool(report):
        return next(p for p in report["pools"] if p["pool"] == "encoder_graphs")["reserved_bytes"]

    def rc(name):
        return int((folder / f"{name}.rc").read_text())

    for run in (1, 2):
        bare = json.loads((folder / f"bare{run}.out").read_text())
        report = load(f"profile{run}.json")
        pool = encoder_pool(report)
        non_alloc = sum(b["non_allocator_bytes"] for b in report["budgets"])
        reserved, nvml = bare["reserved_delta_bytes"], bare["nvml_process_delta_bytes"]
        verdict(
            f"run {run} pool = bare reserved delta",
            pool == reserved,
            f"encgraph pool {pool:,} B, bare reserved delta {reserved:,} B, diff {pool - reserved:,} B",
        )
        verdict(
            f"run {run} pool + outside = bare NVML delta",
            pool + non_alloc == nvml,
            f"encgraph {pool:,} + {non_alloc:,} = {pool + non_alloc:,} B, bare NVML delta {nvml:,} B, diff "
            f"{pool + non_alloc - nvml:,} B",
        )
        verdict(
            f"run {run} rows add up to NVML",
            report["total_bytes"] == report["process_used_bytes"],
            f"rows {report['total_bytes']:,} B, NVML {report['process_used_bytes']:,} B; warnings {report['warnings']}",
        )
        bare_wall, wall = (float((folder / f"{n}{run}.wall").read_text()) for n in ("bare", "profile"))
        print(f"      run {run} wall: encgraph {wall:.2f} s, bare {bare_wall:.2f} s, ratio {wall / bare_wall:.3f}")

    first, second = load("profile1.json"), load("profile2.json")
    pools = [[b["pool_reserved_bytes"] for b in r["budgets"]] for r in (first, second)]
    verdict("identical pool bytes across runs", pools[0] == pools[1], f"{pools[0]} vs {pools[1]}")

    oom = load("oom.json")
    measured = [b["budget"] for b in oom["budgets"]]
    verdict(
        "2000000 recorded, 1024-4096 measured, exit 4",
        rc("oom") == 4 and measured == [1024, 2048, 4096] and [u["budget"] for u in oom["unmeasured"]] == [2000000],
        f"rc {rc('oom')}, measured {measured}, unmeasured {oom['unmeasured']}, wall "
        f"{float((folder / 'oom.wall').read_text()):.1f} s",
    )
    for name, code in (("sigint", 130), ("sigterm", 143)):
        report = load(f"{name}.json")
        kept = [b["budget"] for b in report["budgets"]] if report else None
        verdict(
            f"{name} after two captures keeps them, exit {code}",
            rc(name) == code and kept == [4096, 8192] and report["complete"] is False,
            f"rc {rc(name)}, kept {kept}, stopped_by {report and report['stopped_by']}",
        )
    fallback = sorted((folder / "fallback").glob("encgraph-report-*.json"))
    kept = [b["budget"] for b in json.loads(fallback[0].read_text())["budgets"]] if fallback else None
    verdict(
        "vanished --json folder: report in the fallback, exit 8",
        rc("vanish") == 8 and kept == [1024, 2048, 4096, 8192],
        f"rc {rc('vanish')}, fallback {[p.name for p in fallback]}, budgets {kept}",
    )

    for path in [folder / "profile1.json", *sorted(folder.glob("model-*.json"))]:
        report = json.loads(path.read_text())
        replays = [b["replay_matches_eager"] for b in report["budgets"]]
        pool = encoder_pool(report)
        verdict(
            f"{report['settings']['model']} replay = eager",
            all(replays) and len(replays) == 4 and report["complete"],
            f"{replays}, pool {pool:,} B ({pool / MiB:.1f} MiB), growth "
            + ", ".join(f"{b['budget']}:{b['pool_growth_bytes'] / MiB:.1f}" for b in report["budgets"]),
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
