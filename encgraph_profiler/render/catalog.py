"""`encgraph models` on a terminal: the families, the bundled configs, the names read by id only,
the refusals and where each place vLLM captures encoder graphs stands."""

from __future__ import annotations

from rich.console import RenderableType

from ..models.catalog import Catalog
from . import new_row, new_table


def _vllm(source) -> str:
    return "" if source is None else f"{source.file} ({source.cls})"


def catalog_view(catalog: Catalog) -> list[RenderableType]:
    families = new_table(
        "Families (any config.json or Hugging Face id of these model types)",
        ("family", "model_type", "resolution", f"vLLM {catalog.vllm_version} rules"),
    )
    for f in catalog.families:
        forms = "".join(f", {own} (authors' own form)" for own in f.own_forms)
        new_row(families, f.family, ", ".join(f.model_types) + forms, f.resolution, _vllm(f.vllm))
    bundled = new_table(
        "Bundled configs (weights are random: graph memory does not depend on them)",
        ("model", "family", "alias", "tower params", "model params"),
        right=("tower params", "model params"),
    )
    for b in catalog.bundled:
        total = "encoder only" if b.total_parameters is None else f"{b.total_parameters / 1e9:.2f} B"
        new_row(bundled, b.name, b.family, ", ".join(b.aliases), f"{b.tower_parameters / 1e6:.2f} M", total)
    captures = new_table(
        f"Where vLLM {catalog.vllm_version} captures encoder CUDA graphs", ("vLLM file", "class", "status")
    )
    for s in catalog.captures:
        parts = [f"supported: {', '.join(s.supported_by)}"] if s.supported_by else []
        parts += [f"refused: {', '.join(s.refused_by)}"] if s.refused_by else []
        new_row(captures, s.entry.source.file, s.entry.source.cls, "; ".join(parts) or s.state)
    lines: list[RenderableType] = [families, bundled]
    for repo_id in sorted(set(catalog.hub_ids.values())):
        names = ", ".join(name for name, target in catalog.hub_ids.items() if target == repo_id)
        lines.append(f"No bundled config for {names}: give its Hugging Face id ({repo_id}) or a local model folder.")
    listed = "; ".join(f"{r.model_type} ({', '.join(r.names)})" for r in catalog.refused)
    lines += [
        f"Not supported, each refused with its reason (`encgraph predict --model NAME` prints it): {listed}.",
        captures,
    ]
    return lines
