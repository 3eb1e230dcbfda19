"""`encgraph report`: one self-contained HTML page with charts and tables, from saved reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode
from . import options as o
from .output import handled, info, refuse_unwritable, write

if TYPE_CHECKING:
    from ..schema import Report

EXIT_CODES = o.returns({ExitCode.BAD_REPORT: ""})

EPILOG = o.epilog(
    """\
Examples:

  encgraph report examples/qwen2-vl-7b.h100.json --html qwen2-vl.html

  encgraph report main.json pr.json --label main --label "this pull request" --html compare.html

  encgraph report sweep/sweep.json --html sweep.html

The page is one file that needs no network to view: bars drawn as SVG for each budget's encoder pool
and static I/O, the memory by pool, and, for several reports, the encoder pools side by side; then
the tables. `encgraph check --html` writes the same page for a baseline and a current report. A page
that cannot be written, or would overwrite one of the reports, is refused as bad input.
""",
    EXIT_CODES,
)


def write_page(reports: list[Report], labels: list[str], html: Path, title: str) -> None:
    """Render ``reports`` (already loaded) to ``html``; a failure to write is a usage error."""
    from ..html_report import render

    write(html, render(list(zip(labels, reports, strict=True)), title), "--html")


@handled
def report(
    reports: Annotated[
        list[Path],
        typer.Argument(
            help="One or more reports (from `profile --json`, `predict --json` or `sweep`); a sweep's sweep.json "
            "stands for every report of its cells."
        ),
    ],
    html: Annotated[Path, typer.Option("--html", help="Where to write the page.")],
    label: Annotated[
        list[str] | None, typer.Option("--label", help="A name for each report, in order. Default: the file names.")
    ] = None,
    title: Annotated[str, typer.Option("--title", help="The page's title.")] = "encgraph report",
) -> None:
    """Write one self-contained HTML page of charts and tables for one or more reports."""
    from .. import report_io
    from ..errors import ReportError, UsageError

    loaded: dict[Path, Report] = {}  # each report once, a sweep's sweep.json standing for its cells' reports
    for path in reports:
        try:
            loaded.setdefault(path, report_io.load(path))
        except ReportError:
            cells = report_io.sweep_reports(path)
            if cells is None:
                raise
            for cell in cells:
                loaded.setdefault(cell, report_io.load(cell))
    refuse_unwritable({"--html": html}, inputs=[*reports, *loaded])
    labels = label or [path.stem for path in loaded]
    if len(labels) != len(loaded):
        raise UsageError(f"give one --label per report: {len(loaded)} reports, {len(labels)} labels")
    write_page(list(loaded.values()), labels, html, title)
    info(f"wrote {html}")
