"""The `encgraph` command line. Each command parses, calls one core function and renders."""

from __future__ import annotations

import os
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
from . import check, compare, graphs, models, options, plan, predict, profile, report, sweep
from .output import error

# Newer typer vendors click as typer._click; older ones use click itself.
click_errors: Any
if hasattr(typer.core, "_click"):
    from typer._click import exceptions as click_errors
else:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors

# Every command: its function, its help epilog and the exit codes it returns (the docs' table lists
# them).
COMMANDS: dict[str, tuple[Callable[..., None], str, dict[ExitCode, str]]] = {
    "profile": (profile.profile, profile.EPILOG, profile.EXIT_CODES),
    "predict": (predict.predict, predict.EPILOG, predict.EXIT_CODES),
    "graphs": (graphs.graphs, graphs.EPILOG, graphs.EXIT_CODES),
    "check": (check.check, check.EPILOG, check.EXIT_CODES),
    "compare": (compare.compare, compare.EPILOG, compare.EXIT_CODES),
    "plan": (plan.plan, plan.EPILOG, plan.EXIT_CODES),
    "models": (models.models, models.EPILOG, models.EXIT_CODES),
    "report": (report.report, report.EPILOG, report.EXIT_CODES),
    "sweep": (sweep.sweep, sweep.EPILOG, sweep.EXIT_CODES),
}

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
            error(f"{refused.format_message()} (see `{command} --help`)")
            code = ExitCode.USAGE
        except click_errors.ClickException as refused:
            error(refused.format_message())
            code = refused.exit_code
        except typer.Abort:
            code = ExitCode.INTERRUPTED
        if not standalone_mode:
            return code
        sys.exit(int(code or 0))


def _version(value: bool) -> None:
    if value:
        print(f"encgraph {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="encgraph",
    cls=OneLineErrors,
    help="How much GPU memory a vision encoder's CUDA graphs hold, budget by budget.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


for _name, (_command, _epilog, _) in COMMANDS.items():
    app.command(_name, epilog=_epilog)(_command)


def main() -> None:
    app()
