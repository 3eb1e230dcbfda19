"""`encgraph check`: the CI memory-regression gate. Imports no torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode
from . import options as o
from .options import CheckFormat
from .output import emit, handled, info, refuse_unwritable, show, warn

if TYPE_CHECKING:
    from ..check import CheckResult
    from ..schema import Report

EXIT_CODES = o.returns({ExitCode.REGRESSION: "", ExitCode.BAD_REPORT: "", ExitCode.NOT_GATEABLE: ""})

EPILOG = o.epilog(
    """\
Examples:

  encgraph check main.json pr.json

  encgraph check main.json pr.json --tolerance 2% --tolerance-abs 16MiB

  encgraph check main.json pr.json --tolerance pool_reserved_bytes=1% --format markdown > comment.md

A figure regresses when current > baseline + max(tolerance x baseline, absolute tolerance).
Figures: pool_reserved_bytes, pool_growth_bytes, static_io_bytes, non_allocator_bytes (per
budget), reserved_bytes (per pool), total_bytes. A budget missing from the current report fails.
""",
    EXIT_CODES,
)


def emit_result(result: CheckResult, output_format: CheckFormat) -> None:
    """The result in the format asked for on stdout; warnings and the verdict on stderr."""
    from .. import render
    from ..check_formats import FORMATS

    for message in result.warnings:
        warn(message)
    if output_format is CheckFormat.table:
        show(render.check_table(result))
    else:
        emit(FORMATS[output_format.value](result))
    for line in render.check_verdict(result):
        info(line)


@handled
def check(
    baseline: Annotated[Path, typer.Argument(help="The reference report (JSON from `encgraph profile --json`).")],
    current: Annotated[Path, typer.Argument(help="The report to gate.")],
    tolerance: Annotated[
        list[str] | None, typer.Option("--tolerance", help="Relative tolerance, e.g. 5%; or FIGURE=2%. Repeatable.")
    ] = None,
    tolerance_abs: Annotated[
        list[str] | None,
        typer.Option("--tolerance-abs", help="Absolute floor, e.g. 8MiB; or FIGURE=16MiB. Repeatable."),
    ] = None,
    fail_on_improvement: Annotated[
        bool, typer.Option("--fail-on-improvement", help="Fail when a figure shrank beyond tolerance (stale baseline).")
    ] = False,
    allow_env_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-env-mismatch", help="Compare reports from another GPU, model or library version, with a warning."
        ),
    ] = False,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="Compare incomplete reports, or ones whose replay differed from eager, with a warning.",
        ),
    ] = False,
    output_format: Annotated[
        CheckFormat, typer.Option("--format", help="table, markdown, json, bencher or github.")
    ] = CheckFormat.table,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write a page charting baseline and current side by side (for a pull request's artifacts).",
        ),
    ] = None,
) -> None:
    """Compare two profile reports and fail when encoder-graph memory grew."""
    from .. import report_io
    from ..check import compare, parse_tolerance
    from .report import write_page

    refuse_unwritable({"--html": html}, inputs=(baseline, current))
    tol = parse_tolerance(tolerance or [], tolerance_abs or [])
    reports = report_io.load(baseline), report_io.load(current)
    result = compare(*reports, tol, allow_env_mismatch, fail_on_improvement, allow_incomplete)
    if html is not None:
        write_page(
            list(reports), ["baseline", "current"], html, f"encgraph check: {current.name} against {baseline.name}"
        )
    emit_result(result, output_format)
    raise typer.Exit(int(result.exit_code))


def gate_against(baseline: Report, report: Report) -> ExitCode:
    """`encgraph profile --baseline`: the default gate, right after profiling. Returns the exit code."""
    from ..check import compare

    result = compare(baseline, report)
    emit_result(result, CheckFormat.table)
    return result.exit_code
