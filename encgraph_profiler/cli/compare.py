"""`encgraph compare`: the same ladder profiled with several strategies (as serving engines pool,
order and capture their graphs), each in a fresh process, side by side."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode
from ..models.registry import DEFAULT_MODEL
from . import options as o
from .output import emit_json, handled, info, make_folder, show, warn

if TYPE_CHECKING:
    from ..schema import Report

EXIT_CODES = o.returns({ExitCode.ENVIRONMENT: "", ExitCode.CAPTURE: "a strategy did not measure every budget"})

EPILOG = o.epilog(
    """\
Examples:

  encgraph compare --model Qwen2-VL --budgets 1024,2048,4096,8192

  encgraph compare --model google/gemma-3-27b-it --as vllm,tensorrt-llm --keep reports/

Each strategy runs as `encgraph profile --as NAME` in a fresh process, so that one cannot disturb
another's numbers (a failed capture can leave a process unusable). The table gives each budget's
encoder pool after its capture and each strategy's total, against vLLM's. A strategy whose run fails
is reported with its error and the others go on.
""",
    EXIT_CODES,
)

DEFAULT_STRATEGIES = "vllm,vllm-legacy,tensorrt-llm"  # SGLang pools as vllm-legacy does


@dataclass(frozen=True)
class Run:
    """One strategy's profile: its exit code, its last error line, and its report if it wrote one."""

    exit_code: int
    message: str
    report: Report | None

    @property
    def total_bytes(self) -> int | None:
        """The encoder pool, where the report measured every budget."""
        from ..check import assess
        from ..schema import PoolName

        if self.report is None or not assess(self.report).acceptable:
            return None
        return self.report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes

    def as_dict(self) -> dict:
        budgets = {b.budget: b.pool_reserved_bytes for b in self.report.budgets} if self.report else {}
        return {
            "exit_code": self.exit_code,
            "total_bytes": self.total_bytes,
            "message": self.message,
            "budgets": budgets,
        }


def _run_child(args: list[str]) -> tuple[int, str]:
    """`encgraph profile ARGS` in a fresh process: its exit code and its last error line."""
    done = subprocess.run([sys.executable, "-m", "encgraph_profiler", "profile", *args], capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, (lines[-1] if lines else "")


def _profile_each(names: list[str], args: list[str], folder: Path) -> dict[str, Run]:
    from .. import report_io

    runs = {}
    for i, name in enumerate(names, 1):
        info(f"[{i}/{len(names)}] profiling as {name} in a fresh process")
        path = folder / f"{name}.json"
        code, message = _run_child([*args, "--as", name, "--json", str(path)])
        report = report_io.load(path) if path.is_file() else None
        if code not in (ExitCode.OK, ExitCode.CAPTURE) or report is None:
            warn(f"{name}: the run failed (exit {code}): {message}")
        runs[name] = Run(code, message, report)
    return runs


@handled
def compare(
    model: o.Model = DEFAULT_MODEL,
    budgets: o.Budgets = None,
    max_budget: o.MaxBudget = None,
    max_items: o.MaxItems = None,
    strategies: o.StrategyNames = DEFAULT_STRATEGIES,
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Keep each strategy's report in this folder (NAME.json; made if missing)."),
    ] = None,
    output_format: o.OutputFormat = o.Format.table,
) -> None:
    """Profile one ladder with several strategies, side by side."""
    from .. import render
    from ..check import runs_exit_code
    from ..cuda_device import require_cuda
    from ..ladder import AutoLadder, resolve_budgets
    from ..request import ProfileRequest, parse_strategy, parse_strategy_names, prepare

    names = parse_strategy_names(strategies)
    ladder = resolve_budgets(budgets, max_budget)
    for name in names:  # what a run would refuse is refused here, once, before any process starts
        prepare(ProfileRequest(model=model, budgets=ladder, max_items=max_items, strategy=parse_strategy(name)))
    if keep is not None:
        make_folder(keep, "--keep")
    require_cuda()
    given = (
        ["--max-budget", str(ladder.largest)]
        if isinstance(ladder, AutoLadder)
        else ["--budgets", ",".join(map(str, ladder))]
    )
    args = ["--model", model, *given, "--format", "json"]
    if max_items is not None:
        args += ["--max-items", str(max_items)]
    with tempfile.TemporaryDirectory() as scratch:
        runs = _profile_each(names, args, keep or Path(scratch))
    if output_format is o.Format.json:
        emit_json({name: run.as_dict() for name, run in runs.items()})
    else:
        show(
            render.compare_table(
                {name: run.report for name, run in runs.items()},
                {name: run.total_bytes for name, run in runs.items()},
                sorted({b.budget for run in runs.values() if run.report for b in run.report.budgets}),
            )
        )
    raise typer.Exit(int(runs_exit_code([run.exit_code for run in runs.values()])))
