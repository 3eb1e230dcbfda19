"""`encgraph compare`: the same ladder profiled as several engines pool and order their graphs,
each in a fresh process, side by side."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import Format, err, handled, make_folder, out, warn

EPILOG = """\
Examples:

  encgraph compare --model Qwen2-VL --budgets 1024,2048,4096,8192

  encgraph compare --model google/gemma-3-27b-it --as vllm,tensorrt-llm --keep reports/

Each strategy runs as `encgraph profile --as NAME` in a fresh process, so that one cannot disturb
another's numbers (a failed capture can leave a process unusable). The table gives each budget's
encoder pool after its capture and each strategy's total, against vLLM's. A strategy whose run fails
is reported with its error and the others go on. Exit codes: 0 all measured, 2 bad input, 3 no GPU,
4 a strategy did not measure every budget.
"""

DEFAULT_ENGINES = "vllm,vllm-legacy,tensorrt-llm"  # SGLang pools as vllm-legacy does


def _run_child(args: list[str]) -> tuple[int, str]:
    """`encgraph profile ARGS` in a fresh process: its exit code and its last error line."""
    done = subprocess.run([sys.executable, "-m", "encgraph_profiler", "profile", *args], capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, (lines[-1] if lines else "")


def _table(runs: dict, budgets: list[int]) -> Table:
    from ..units import mib

    names = list(runs)
    table = Table(title="Encoder graph pool by strategy (MiB after each budget's capture)")
    table.add_column("budget", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for budget in budgets:
        cells = []
        for name in names:
            report = runs[name]["report"]
            row = next((b for b in report.budgets if b.budget == budget), None) if report else None
            cells.append(mib(row.pool_reserved_bytes) if row else "n/a")
        table.add_row(f"{budget:,}", *cells)
    table.add_section()
    table.add_row("total", *[mib(r["total_bytes"]) if r["total_bytes"] is not None else "failed" for r in runs.values()])
    base = runs.get("vllm", {}).get("total_bytes")
    if base:
        table.add_row("vs vllm", *["" if r["total_bytes"] is None else f"{(r['total_bytes'] - base) / base:+.1%}" for r in runs.values()])
    return table


@handled
def compare(
    model: Annotated[str, typer.Option("--model", "-m", help="As for profile.")] = "qwen2-vl-7b",
    budgets: Annotated[str | None, typer.Option("--budgets", "-b", help="Token budgets. Default: vLLM's auto ladder.")] = None,
    max_budget: Annotated[int | None, typer.Option("--max-budget", help="Top of the auto ladder.")] = None,
    max_items: Annotated[int | None, typer.Option("--max-items", help="Images per captured batch (as for profile).")] = None,
    engines: Annotated[str, typer.Option("--as", help="Strategies to run, comma-separated: vllm, vllm-legacy, sglang, tensorrt-llm.")] = DEFAULT_ENGINES,
    keep: Annotated[Path | None, typer.Option("--keep", help="Keep each strategy's report in this folder (NAME.json; made if missing).")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
) -> None:
    """Profile one ladder as several engines pool and order their graphs, side by side."""
    from .. import report_io
    from ..errors import ExitCode
    from ..ladder import resolve_budgets
    from ..request import parse_strategy_names

    names = parse_strategy_names(engines)
    ladder = resolve_budgets(budgets, max_budget)
    if keep is not None:
        make_folder(keep, "--keep")
    common = ["--model", model, "--budgets", ",".join(map(str, ladder)), "--format", "json"]
    if max_items is not None:
        common += ["--max-items", str(max_items)]
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = keep or Path(scratch)
        for i, name in enumerate(names, 1):
            err.print(f"[{i}/{len(names)}] profiling as {name} in a fresh process")
            path = folder / f"{name}.json"
            code, message = _run_child([*common, "--as", name, "--json", str(path)])
            report = report_io.load(path) if path.is_file() else None
            if code not in (0, int(ExitCode.CAPTURE)) or report is None:
                warn(f"{name}: the run failed (exit {code}): {message}")
            runs[name] = {"report": report, "exit_code": code, "message": message,
                          "total_bytes": report.pool("encoder_graphs").reserved_bytes if report and report.complete else None}
    if output_format is Format.json:
        data = {name: {"exit_code": r["exit_code"], "total_bytes": r["total_bytes"], "message": r["message"],
                       "budgets": {b.budget: b.pool_reserved_bytes for b in r["report"].budgets} if r["report"] else {}}
                for name, r in runs.items()}
        out.print(json.dumps(data, indent=2), markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(_table(runs, sorted(ladder)))
    failed = [r["exit_code"] for r in runs.values() if r["exit_code"] != 0]
    if any(code == int(ExitCode.ENVIRONMENT) for code in failed):
        raise typer.Exit(int(ExitCode.ENVIRONMENT))
    raise typer.Exit(int(ExitCode.CAPTURE if failed else ExitCode.OK))
