"""The `encgraph` command line. Each command parses, calls one core function and renders."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
import typer.core
from rich.markup import escape
from typer.core import TyperGroup

# Newer typer vendors click as typer._click; older ones use click itself.
if hasattr(typer.core, "_click"):
    from typer._click import exceptions as click_errors
else:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_errors

# transformers' config warnings about the random-weight configs are noise for this tool.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from .. import __version__  # noqa: E402
from ..errors import ExitCode  # noqa: E402
from . import check, compare, graphs, models, plan, predict, profile, report, sweep  # noqa: E402
from .common import err  # noqa: E402

EPILOG = """\
Examples:

  encgraph profile --model Qwen2-VL --budgets 1024,2048,4096 --json report.json

  encgraph predict --model Qwen2-VL --budgets 1024,2048,4096,8192    # no GPU needed

  encgraph check main.json report.json --format markdown

  encgraph plan --from report.json --gpu-memory-utilization 0.9

  encgraph graphs --max-num-seqs 128 --budgets 1024,2048,4096

  encgraph models

Exit codes: 0 ok, 1 regression, 2 usage, 3 environment, 4 a budget failed, 5 bad report,
6 does not fit, 7 report not gateable, 8 report written elsewhere, 130/143 interrupted.
Set ENCGRAPH_DEBUG=1 for tracebacks.
"""


class OneLineErrors(TyperGroup):
    """Usage errors as one line that says where help is, instead of a usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except getattr(click_errors, "NoArgsIsHelpError", ()) as error:
            typer.echo(error.ctx.get_help())
            code = ExitCode.USAGE
        except click_errors.UsageError as error:
            command = error.ctx.command_path if error.ctx else "encgraph"
            err.print(f"[red]error:[/] {escape(error.format_message())} (see `{command} --help`)", soft_wrap=True)
            code = ExitCode.USAGE
        except click_errors.ClickException as error:
            err.print(f"[red]error:[/] {error.format_message()}", markup=False, soft_wrap=True)
            code = error.exit_code
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
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    pass


app.command("profile", epilog=profile.EPILOG)(profile.profile)
app.command("graphs", epilog=graphs.EPILOG)(graphs.graphs)
app.command("check", epilog=check.EPILOG)(check.check)
app.command("compare", epilog=compare.EPILOG)(compare.compare)
app.command("plan", epilog=plan.EPILOG)(plan.plan)
app.command("models", epilog=models.EPILOG)(models.models)
app.command("report", epilog=report.EPILOG)(report.report)
app.command("sweep", epilog=sweep.EPILOG)(sweep.sweep)
app.command("predict", epilog=predict.EPILOG)(predict.predict)


def main() -> None:
    app()
