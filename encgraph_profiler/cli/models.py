"""`encgraph models`: the families and bundled configs. Imports neither torch nor transformers: the
parameter counts come from configs/parameters.json, which a test recounts on the meta device."""

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
    """List the model families encgraph profiles, and the bundled configs with their aliases."""
    from ..models.registry import adapters, aliases, bundled_names, bundled_parameters, hub_ids, own_forms, refusals, resolve

    counts = bundled_parameters()
    families = [{"family": a.family, "model_types": list(a.model_types),
                 "authors_own_forms": [own for own in own_forms(a) if own not in a.model_types],
                 "resolution": "dynamic" if a.dynamic_resolution else "fixed",
                 "vllm": None if a.vllm is None else {"file": a.vllm.file, "class": a.vllm.cls}} for a in adapters()]
    rows = []
    for name in bundled_names(include_tiny=tiny):
        spec = resolve(name)
        rows.append({
            "name": name,
            "family": spec.adapter.family,
            "aliases": sorted(a for a, target in aliases().items() if target == name),
            **counts[name],
        })
    refused = [{"model_type": r.model_type, "names": list(r.names), "reason": r.reason} for r in refusals().values()]
    if output_format is Format.json:
        out.print(json.dumps({"families": families, "models": rows, "by_id_only": hub_ids(), "refused": refused}, indent=2),
                  markup=False, highlight=False, soft_wrap=True)
        return
    kinds = Table(title="Families (any config.json or Hugging Face id of these model types)")
    for name in ("family", "model_type", "resolution"):
        kinds.add_column(name)
    for f in families:
        forms = "".join(f", {own} (authors' own form)" for own in f["authors_own_forms"])
        kinds.add_row(f["family"], ", ".join(f["model_types"]) + forms, f["resolution"])
    out.print(kinds)
    table = Table(title="Bundled configs (weights are random: graph memory does not depend on them)")
    for name in ("model", "family", "alias", "tower params", "model params"):
        table.add_column(name, justify="right" if "params" in name else "left")
    for r in rows:
        total = "encoder only" if r["total_parameters"] is None else f"{r['total_parameters'] / 1e9:.2f} B"
        table.add_row(r["name"], r["family"], ", ".join(r["aliases"]), f"{r['tower_parameters'] / 1e6:.2f} M", total)
    out.print(table)
    for repo_id in sorted(set(hub_ids().values())):
        names = ", ".join(name for name, target in hub_ids().items() if target == repo_id)
        out.print(f"No bundled config for {names}: give its Hugging Face id ({repo_id}) or a local model folder.",
                  markup=False, highlight=False)
    listed = "; ".join(f"{r['model_type']} ({', '.join(r['names'])})" for r in refused)
    out.print(f"Not supported, each refused with its reason (`encgraph predict --model NAME` prints it): {listed}.",
              markup=False, highlight=False)
