"""`encgraph check`: the CI memory-regression gate. Imports no torch."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import err, handled, out, warn

EPILOG = """\
Examples:

  encgraph check main.json pr.json

  encgraph check main.json pr.json --tolerance 2% --tolerance-abs 16MiB

  encgraph check main.json pr.json --tolerance pool_reserved_bytes=1% --format markdown > comment.md

A figure regresses when current > baseline + max(tolerance x baseline, absolute tolerance).
Figures: pool_reserved_bytes, pool_growth_bytes, static_io_bytes, non_allocator_bytes (per
budget), reserved_bytes (per pool), total_bytes. Exit codes: 0 pass, 1 regression (or improvement
with --fail-on-improvement), 2 usage, 5 unreadable or incompatible report.
"""


class CheckFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    bencher = "bencher"
    github = "github"


STYLE = {"pass": "green", "regression": "bold red", "improvement": "cyan", "n/a": "dim",
         "only in baseline": "yellow", "only in current": "yellow"}


def _table(result) -> Table:
    from ..units import mib

    table = Table(title=f"encgraph check: {result.model}")
    for name in ("status", "scope", "figure", "baseline MiB", "current MiB", "delta MiB", "delta %"):
        table.add_column(name, justify="right" if "MiB" in name or "%" in name else "left")
    for r in result.rows:
        table.add_row(
            f"[{STYLE[r.status]}]{r.status}[/]", r.scope, r.figure, mib(r.baseline), mib(r.current),
            "" if r.delta is None else mib(r.delta, signed=True),
            "" if r.delta_fraction is None else f"{r.delta_fraction:+.1%}",
        )
    return table


def emit(result, output_format: CheckFormat) -> None:
    from ..check_formats import FORMATS

    for message in result.warnings:
        warn(message)
    if output_format is CheckFormat.table:
        out.print(_table(result))
    else:
        out.print(FORMATS[output_format.value](result), markup=False, highlight=False, soft_wrap=True, end="")
    names = ", ".join(f"{r.scope} {r.figure} ({r.delta_fraction:+.1%})" for r in result.regressions)
    if result.regressions:
        err.print(f"[red]regression:[/] {names}", soft_wrap=True)
    elif not result.passed:
        err.print("[red]failed:[/] figures improved beyond tolerance (--fail-on-improvement): refresh the baseline")
    else:
        err.print("[green]passed[/]")


@handled
def check(
    baseline: Annotated[Path, typer.Argument(help="The reference report (JSON from `encgraph profile --json`).")],
    current: Annotated[Path, typer.Argument(help="The report to gate.")],
    tolerance: Annotated[list[str] | None, typer.Option("--tolerance", help="Relative tolerance, e.g. 5%; or FIGURE=2%. Repeatable.")] = None,
    tolerance_abs: Annotated[list[str] | None, typer.Option("--tolerance-abs", help="Absolute floor, e.g. 8MiB; or FIGURE=16MiB. Repeatable.")] = None,
    fail_on_improvement: Annotated[bool, typer.Option("--fail-on-improvement", help="Fail when a figure shrank beyond tolerance (stale baseline).")] = False,
    allow_env_mismatch: Annotated[bool, typer.Option("--allow-env-mismatch", help="Compare reports from another GPU, model or library version, with a warning.")] = False,
    output_format: Annotated[CheckFormat, typer.Option("--format", help="table, markdown, json, bencher or github.")] = CheckFormat.table,
) -> None:
    """Compare two profile reports and fail when encoder-graph memory grew."""
    from .. import report as report_io
    from ..check import compare, parse_tolerance

    tol = parse_tolerance(tolerance or [], tolerance_abs or [])
    result = compare(report_io.load(baseline), report_io.load(current), tol, allow_env_mismatch, fail_on_improvement)
    emit(result, output_format)
    raise typer.Exit(int(result.exit_code))


def gate_against(baseline: Path, report) -> None:
    """`encgraph profile --baseline`: the default gate, right after profiling."""
    from .. import report as report_io
    from ..check import compare

    result = compare(report_io.load(baseline), report)
    emit(result, CheckFormat.table)
    raise typer.Exit(int(result.exit_code))
