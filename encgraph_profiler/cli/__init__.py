"""The `encgraph` command line. Each command parses, calls one core function and renders.

Each command lives in the module of its name here, with its function of that name, its help epilog
(EPILOG) and the exit codes it returns (EXIT_CODES). A run imports only the module of the command it
was given, so that quick commands (`encgraph models`) do not pay for the others' imports."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
import typer.core
from typer.core import TyperGroup

# transformers' config warnings about the random-weight configs are noise for this tool.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from .. import __version__
from ..errors import ExitCode
from . import options
from .output import error

# Newer typer vendors click as typer._click; older ones use click itself.
click_errors: Any
if hasattr(typer.core, "_click"):
    from typer._click import exceptions as click_errors
else:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors

COMMAND_NAMES = ("profile", "predict", "graphs", "check", "compare", "plan", "models", "report", "sweep")


def command(name: str) -> tuple[Callable[..., None], str, dict[ExitCode, str]]:
    """A command's function, its help epilog and the exit codes it returns (the docs' table lists them)."""
    module = importlib.import_module(f"{__name__}.{name}")
    return getattr(module, name), module.EPILOG, module.EXIT_CODES


def commands() -> dict[str, tuple[Callable[..., None], str, dict[ExitCode, str]]]:
    return {name: command(name) for name in COMMAND_NAMES}


EPILOG = options.epilog(
    """\
Examples:

  encgraph profile --model Qwen2-VL --budgets 1024,2048,4096 --json report.json

  encgraph predict --model Qwen2-VL --budgets 1024,2048,4096,8192    # no GPU needed

  encgraph check main.json report.json --format markdown

  encgraph plan --from report.json --gpu-memory-utilization 0.9

  encgraph graphs --max-num-seqs 128 --budgets 1024,2048,4096

  encgraph models

Set ENCGRAPH_DEBUG=1 for tracebacks.
""",
    {code: "" for code in ExitCode},
)


class OneLineErrors(TyperGroup):
    """Usage errors as one line that says where help is, instead of a usage box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except getattr(click_errors, "NoArgsIsHelpError", ()) as shown:
            typer.echo(shown.ctx.get_help())
            code = ExitCode.USAGE
        except click_errors.UsageError as refused:
            command = refused.ctx.command_path if refused.ctx else "encgraph"
            error(f"{refused.format_message()}{_hint(refused)} (see `{command} --help`)")
            code = ExitCode.USAGE
        except click_errors.ClickException as refused:
            error(refused.format_message())
            code = refused.exit_code
        except typer.Abort:
            code = ExitCode.INTERRUPTED
        if not standalone_mode:
            return code
        sys.exit(int(code or 0))


def _hint(refused: Exception) -> str:
    """What a usage error most likely means, where it is a common slip: budgets given apart."""
    message = str(refused)
    if "unexpected extra argument" in message and re.search(r"\(\d[\d, ]*\)", message):
        return "; lists take commas, with no spaces: --budgets 1024,2048,4096"
    return ""


def _version(value: bool) -> None:
    if value:
        print(f"encgraph {__version__}")
        raise typer.Exit()


def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


def build_app(names: Sequence[str] = COMMAND_NAMES) -> typer.Typer:
    """The command line with the commands ``names`` (all of them unless told)."""
    app = typer.Typer(
        name="encgraph",
        cls=OneLineErrors,
        help="How much GPU memory a vision encoder's CUDA graphs hold, budget by budget.",
        epilog=EPILOG,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
    )
    app.callback()(_options)
    for name in names:
        function, epilog, _ = command(name)
        app.command(name, epilog=epilog)(function)
    return app


def main() -> None:
    given = sys.argv[1] if len(sys.argv) > 1 else None
    build_app([given] if given in COMMAND_NAMES else COMMAND_NAMES)()
