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
budget), reserved_bytes (per pool), total_bytes. A budget missing from the current report fails.
Exit codes: 0 pass, 1 regression or missing budget (or improvement with --fail-on-improvement),
2 usage, 5 unreadable, malformed or incompatible report, 7 a report is incomplete, empty or its
replay differed from eager (--allow-incomplete compares what was measured instead).
"""


class CheckFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    bencher = "bencher"
    github = "github"


def _table(result) -> Table:
    from ..check import RowStatus
    from ..check_formats import percent
    from ..units import mib

    style = {RowStatus.PASS: "green", RowStatus.REGRESSION: "bold red", RowStatus.IMPROVEMENT: "cyan",
             RowStatus.NOT_AVAILABLE: "dim", RowStatus.ONLY_IN_BASELINE: "bold red", RowStatus.ONLY_IN_CURRENT: "yellow"}

    table = Table(title=f"encgraph check: {result.model}")
    for name in ("status", "scope", "figure", "baseline MiB", "current MiB", "delta MiB", "delta %"):
        table.add_column(name, justify="right" if "MiB" in name or "%" in name else "left")
    for r in result.rows:
        table.add_row(
            f"[{style[r.status]}]{r.status.value}[/]", r.scope, r.figure, mib(r.baseline), mib(r.current),
            "" if r.delta is None else mib(r.delta, signed=True), percent(r),
        )
    return table


def emit(result, output_format: CheckFormat) -> None:
    from rich.markup import escape

    from ..check_formats import FORMATS, percent

    for message in result.warnings:
        warn(message)
    if output_format is CheckFormat.table:
        out.print(_table(result))
    else:
        out.print(FORMATS[output_format.value](result), markup=False, highlight=False, soft_wrap=True, end="")
    if result.missing:
        err.print(f"[red]missing:[/] {escape(', '.join(r.scope for r in result.missing))} measured in the baseline only", soft_wrap=True)
    if result.regressions:
        names = ", ".join(f"{r.scope} {r.figure} ({percent(r)})" for r in result.regressions)
        err.print(f"[red]regression:[/] {escape(names)}", soft_wrap=True)
    elif not result.passed and not result.missing:
        err.print("[red]failed:[/] figures improved beyond tolerance (--fail-on-improvement): refresh the baseline")
    if result.passed:
        err.print("[green]passed[/]")


@handled
def check(
    baseline: Annotated[Path, typer.Argument(help="The reference report (JSON from `encgraph profile --json`).")],
    current: Annotated[Path, typer.Argument(help="The report to gate.")],
    tolerance: Annotated[list[str] | None, typer.Option("--tolerance", help="Relative tolerance, e.g. 5%; or FIGURE=2%. Repeatable.")] = None,
    tolerance_abs: Annotated[list[str] | None, typer.Option("--tolerance-abs", help="Absolute floor, e.g. 8MiB; or FIGURE=16MiB. Repeatable.")] = None,
    fail_on_improvement: Annotated[bool, typer.Option("--fail-on-improvement", help="Fail when a figure shrank beyond tolerance (stale baseline).")] = False,
    allow_env_mismatch: Annotated[bool, typer.Option("--allow-env-mismatch", help="Compare reports from another GPU, model or library version, with a warning.")] = False,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Compare incomplete reports, or ones whose replay differed from eager, with a warning.")] = False,
    output_format: Annotated[CheckFormat, typer.Option("--format", help="table, markdown, json, bencher or github.")] = CheckFormat.table,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a page charting baseline and current side by side (for a pull request's artifacts).")] = None,
) -> None:
    """Compare two profile reports and fail when encoder-graph memory grew."""
    from .. import report_io
    from ..check import compare, parse_tolerance
    from .report import write_page

    tol = parse_tolerance(tolerance or [], tolerance_abs or [])
    reports = report_io.load(baseline), report_io.load(current)
    result = compare(*reports, tol, allow_env_mismatch, fail_on_improvement, allow_incomplete)
    if html is not None:
        write_page(reports, ["baseline", "current"], html, f"encgraph check: {current.name} against {baseline.name}")
    emit(result, output_format)
    raise typer.Exit(int(result.exit_code))


def gate_against(baseline, report) -> int:
    """`encgraph profile --baseline`: the default gate, right after profiling. Returns the exit code."""
    from ..check import compare

    result = compare(baseline, report)
    emit(result, CheckFormat.table)
    return int(result.exit_code)
