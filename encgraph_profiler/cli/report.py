"""`encgraph report`: one self-contained HTML page with charts and tables, from saved reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import err, handled

EPILOG = """\
Examples:

  encgraph report examples/qwen2-vl-7b.h100.json --html qwen2-vl.html

  encgraph report main.json pr.json --label main --label "this pull request" --html compare.html

The page is one file that needs no network to view: bars drawn as SVG for each budget's encoder pool
and static I/O, the memory by pool, and, for several reports, the encoder pools side by side; then
the tables. `encgraph check --html` writes the same page for a baseline and a current report.
Exit codes: 0 written, 2 bad input (including a page that cannot be written), 5 unreadable report.
"""


def write_page(reports, labels, html: Path, title: str) -> None:
    """Render ``reports`` (already loaded) to ``html``; any failure to write is a usage error."""
    from ..errors import UsageError
    from ..files import check_writable, write_atomic
    from ..html_report import render

    check_writable(html, "--html")
    try:
        write_atomic(html, render(list(zip(labels, reports)), title))
    except OSError as error:
        raise UsageError(f"cannot write --html {html}: {error.strerror or error}") from None


@handled
def report(
    reports: Annotated[list[Path], typer.Argument(help="One or more profile reports (JSON from `encgraph profile --json`).")],
    html: Annotated[Path, typer.Option("--html", help="Where to write the page.")],
    label: Annotated[list[str] | None, typer.Option("--label", help="A name for each report, in order. Default: the file names.")] = None,
    title: Annotated[str, typer.Option("--title", help="The page's title.")] = "encgraph report",
) -> None:
    """Write one self-contained HTML page of charts and tables for one or more reports."""
    from .. import report_io
    from ..errors import UsageError

    labels = label or [path.stem for path in reports]
    if len(labels) != len(reports):
        raise UsageError(f"give one --label per report: {len(reports)} reports, {len(labels)} labels")
    loaded = [report_io.load(path) for path in reports]
    write_page(loaded, labels, html, title)
    err.print(f"wrote {html}")
