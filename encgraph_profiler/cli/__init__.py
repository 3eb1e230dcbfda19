"""The `encgraph` command line. Each command parses, calls one core function and renders."""

from __future__ import annotations

import os

import typer

# transformers' config warnings about the random-weight configs are noise for this tool.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from . import check, graphs, models, plan, profile

app = typer.Typer(
    name="encgraph",
    help="How much GPU memory a vision encoder's CUDA graphs hold, budget by budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("profile", epilog=profile.EPILOG)(profile.profile)
app.command("graphs", epilog=graphs.EPILOG)(graphs.graphs)
app.command("check", epilog=check.EPILOG)(check.check)
app.command("plan", epilog=plan.EPILOG)(plan.plan)
app.command("models")(models.models)


def main() -> None:
    app()
