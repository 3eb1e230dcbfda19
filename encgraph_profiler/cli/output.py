"""Everything the CLI says and writes goes through here: results on stdout (tables, or machine
output with no rich console in between), progress, warnings and errors on stderr, one line each, and
every file a command writes. User text is never read as rich markup."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.text import Text

from ..errors import EncgraphError, ExitCode, Terminated, UsageError
from ..files import check_writable, write_atomic, write_or_fall_back

if TYPE_CHECKING:
    from ..schema import Report

out = Console(highlight=False)  # results: tables and lines
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or captured: keep the wide tables readable instead of 80 columns, unless told
err = Console(stderr=True, highlight=False)  # progress, warnings, errors

P = ParamSpec("P")
R = TypeVar("R")


def _debug() -> bool:
    return bool(os.environ.get("ENCGRAPH_DEBUG"))


# -- stderr ---------------------------------------------------------------------------------------


def error(message: str) -> None:
    """The one form of an error: "error: MESSAGE" on one line of stderr."""
    err.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)


def warn(message: str) -> None:
    err.print(Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True)


def info(message: str | Text) -> None:
    """Progress, where things went, a verdict: one line on stderr; a str is never read as markup."""
    err.print(Text(message) if isinstance(message, str) else message, soft_wrap=True)


def fail(message: str, code: ExitCode) -> NoReturn:
    error(message)
    raise typer.Exit(int(code))


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """The one catch point: every error becomes one line on stderr and its exit code.
    ENCGRAPH_DEBUG=1 shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except EncgraphError as problem:
            if _debug():
                raise
            fail(str(problem), problem.exit_code)
        except KeyboardInterrupt as interrupt:
            if _debug():
                raise
            if isinstance(interrupt, Terminated):
                fail("terminated (SIGTERM)", ExitCode.TERMINATED)
            fail("interrupted", ExitCode.INTERRUPTED)
        except Exception as bug:  # anything else is a bug: one line, and how to report it
            if _debug():
                raise
            first = str(bug).strip().splitlines()[0] if str(bug).strip() else ""
            fail(
                f"internal error ({type(bug).__name__}: {first}); run again with ENCGRAPH_DEBUG=1 for the traceback "
                "and report it",
                ExitCode.INTERNAL,
            )

    return wrapper


# -- stdout ---------------------------------------------------------------------------------------


def show(*items: RenderableType) -> None:
    """Tables and lines for people, on stdout. A line is one line (the terminal folds it), and a str
    is printed as it is, never read as markup."""
    for item in items:
        if isinstance(item, str | Text):
            out.print(Text(item) if isinstance(item, str) else item, soft_wrap=True)
        else:
            out.print(item)


def emit(text: str) -> None:
    """Machine output on stdout exactly as given (one trailing newline), with no console in between."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def emit_json(data: Any) -> None:
    emit(json.dumps(data, indent=2))


def show_report(report: Report, as_json: bool) -> None:
    """`profile` and `predict`: the report's warnings, then the report as JSON or as tables."""
    from .. import render
    from ..report_io import to_json

    for message in report.warnings:
        warn(message)
    if as_json:
        emit(to_json(report))
    else:
        show(*render.report_view(report))


# -- files ----------------------------------------------------------------------------------------


def refuse_unwritable(outputs: dict[str, Path | None], inputs: Iterable[Path | str | None] = ()) -> None:
    """Before any work: refuse, in one line, an output path (by its option) that cannot be written
    or is one of the command's ``inputs`` (which may name paths that are not files: those are skipped)."""
    given = [Path(p) for p in inputs if p is not None and Path(p).is_file()]
    for option, path in outputs.items():
        if path is not None:
            check_writable(path, option, given)


def write(path: Path, content: str, option: str) -> None:
    """Write ``content`` atomically; a failure is a usage error naming ``option``."""
    try:
        write_atomic(path, content)
    except OSError as problem:
        raise UsageError(f"cannot write {option} {path}: {problem.strerror or problem}") from None


def keep(path: Path, content: str, what: str, stem: str) -> ExitCode:
    """Write ``what`` (a result that must not be lost, "the report") to ``path``; where that fails,
    to a fallback file named in a warning, else on stdout. Returns NOT_WRITTEN when it did not go to
    ``path``, else OK."""
    written, reason = write_or_fall_back(path, content, stem)
    if reason is None:
        info(f"{what.removeprefix('the ')} written to {written}")
        return ExitCode.OK
    if written is not None:
        warn(f"could not write {path} ({reason}); {what} is in {written}")
    else:
        warn(f"could not write {path} ({reason}) nor a fallback file; {what} follows on stdout")
        emit(content)
    return ExitCode.NOT_WRITTEN


def keep_report(report: Report, path: Path | None) -> ExitCode:
    """`--json`: the report where asked, else in a fallback file (NOT_WRITTEN); OK when none was asked."""
    from ..report_io import to_json

    return ExitCode.OK if path is None else keep(path, to_json(report), "the report", "encgraph-report")


def make_folder(path: Path, option: str) -> None:
    """Make an output folder (and its parents) if missing; one line if it cannot be made."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: that is a file, not a folder; give a folder for the reports")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise UsageError(f"{option} {path}: cannot make that folder ({problem.strerror or problem})") from None
