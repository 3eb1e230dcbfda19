"""`encgraph models`: what is bundled, with tower sizes counted on the meta device (no GPU)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from .common import Format, handled, out

EPILOG = """\
Examples:

  encgraph models

  encgraph models --format json

  encgraph models --tiny            # with the tiny configs the tests use

Any name or alias listed works as `encgraph profile --model NAME`; so does a path to a model's
config.json or its directory.
"""


@handled
def models(
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
    tiny: Annotated[bool, typer.Option("--tiny", help="Also list the tiny test configs.")] = False,
) -> None:
    """List the bundled model configs and their aliases."""
    from ..models.facts import model_facts
    from ..models.registry import ALIASES, bundled_names, resolve

    rows = []
    for name in bundled_names(include_tiny=tiny):
        spec = resolve(name)
        facts = model_facts(spec, "bfloat16")
        rows.append({
            "name": name,
            "family": spec.adapter.family,
            "aliases": sorted(a for a, target in ALIASES.items() if target == name),
            "tower_parameters": facts.tower_parameters,
            "total_parameters": facts.total_parameters,
            "dynamic_resolution": spec.adapter.dynamic_resolution,
        })
    if output_format is Format.json:
        out.print(json.dumps(rows, indent=2), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title="Bundled models (weights are random: graph memory does not depend on them)")
    for name in ("model", "family", "alias", "tower params", "model params", "resolution"):
        table.add_column(name, justify="right" if "params" in name else "left")
    for r in rows:
        total = "encoder only" if r["total_parameters"] is None else f"{r['total_parameters'] / 1e9:.2f} B"
        table.add_row(
            r["name"], r["family"], ", ".join(r["aliases"]), f"{r['tower_parameters'] / 1e6:.2f} M", total,
            "dynamic" if r["dynamic_resolution"] else "fixed",
        )
    out.print(table)
