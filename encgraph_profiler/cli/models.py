"""`encgraph models`: the families, bundled configs, refusals and vLLM's captures. Imports neither
torch nor transformers: the parameter counts come from configs/parameters.json, which a test recounts."""

from __future__ import annotations

from typing import Annotated

import typer

from . import options
from .options import Format
from .output import emit_json, handled, show

EXIT_CODES = options.returns({})
EPILOG = options.epilog(
    """\
Examples:

  encgraph models

  encgraph models --format json

  encgraph models --tiny            # with the tiny configs the tests use

Any model name or alias listed works as `encgraph profile --model NAME` (a family's name, only where
it is also an alias); so does a path to a model's config.json or its directory. The last table lists
every place the vLLM release whose rules encgraph follows captures encoder graphs, and whether
encgraph supports or refuses it.""",
    EXIT_CODES,
)


@handled
def models(
    output_format: options.OutputFormat = Format.table,
    tiny: Annotated[bool, typer.Option("--tiny", help="Also list the tiny test configs.")] = False,
) -> None:
    """List the model families encgraph profiles, the bundled configs with their aliases, and vLLM's captures."""
    from ..models.catalog import catalog

    found = catalog(include_tiny=tiny)
    if output_format is Format.json:
        emit_json(_as_json(found))
        return
    from ..render.catalog import catalog_view

    show(*catalog_view(found))


def _source(source) -> dict[str, str] | None:
    return None if source is None else {"file": source.file, "class": source.cls}


def _as_json(found) -> dict:
    return {
        "vllm_version": found.vllm_version,
        "families": [
            {
                "family": f.family,
                "model_types": list(f.model_types),
                "authors_own_forms": list(f.own_forms),
                "resolution": f.resolution,
                "vllm": _source(f.vllm),
            }
            for f in found.families
        ],
        "models": [
            {
                "name": b.name,
                "family": b.family,
                "aliases": list(b.aliases),
                "tower_parameters": b.tower_parameters,
                "total_parameters": b.total_parameters,
            }
            for b in found.bundled
        ],
        "by_id_only": found.hub_ids,
        "refused": [
            {
                "model_type": r.model_type,
                "names": list(r.names),
                "reason": r.reason,
                "vllm": [_source(s) for s in r.vllm],
            }
            for r in found.refused
        ],
        "vllm_captures": [
            {
                **(_source(s.entry.source) or {}),
                "status": s.state,
                "supported_by": list(s.supported_by),
                "refused_by": list(s.refused_by),
            }
            for s in found.captures
        ],
    }
