"""What encgraph knows about models, gathered from the registry for `encgraph models` and for
docs/models.md: the families, the bundled configs, the names read by id only, the refusals, and where
each place vLLM captures encoder graphs stands. Neither torch nor transformers is imported: the
parameter counts come from configs/parameters.json, which a test recounts."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from . import census, registry
from .base import Refusal, VllmSource


@dataclass(frozen=True)
class FamilyEntry:
    family: str
    model_types: tuple[str, ...]
    own_forms: tuple[str, ...]  # the authors' own config forms read as this family, by model_type
    resolution: str  # "dynamic" or "fixed"
    vllm: VllmSource | None
    module: str  # the family module, whose docstring says how vLLM lays its budgets out


@dataclass(frozen=True)
class BundledConfig:
    name: str
    family: str
    aliases: tuple[str, ...]
    tower_parameters: int
    total_parameters: int | None  # None for a bare vision tower


@dataclass(frozen=True)
class Catalog:
    vllm_version: str  # the vLLM release whose capture rules encgraph follows
    families: tuple[FamilyEntry, ...]
    bundled: tuple[BundledConfig, ...]
    hub_ids: dict[str, str]  # names without a bundled config -> the Hugging Face id to give
    refused: tuple[Refusal, ...]
    captures: tuple[census.EntryStatus, ...]  # every place vLLM captures encoder graphs, and its status

    def module_doc(self, module: str) -> str:
        return sys.modules[module].__doc__ or ""


def catalog(include_tiny: bool = False) -> Catalog:
    adapters, refusals = registry.adapters(), registry.refusals()
    families = tuple(
        FamilyEntry(
            a.family,
            a.model_types,
            tuple(own for own in registry.own_forms(a) if own not in a.model_types),
            "dynamic" if a.dynamic_resolution else "fixed",
            a.vllm,
            type(a).__module__,
        )
        for a in adapters
    )
    counts, aliases = registry.bundled_parameters(), registry.aliases()
    bundled = []
    for name in registry.bundled_names(include_tiny=include_tiny):
        count = counts[name]
        bundled.append(
            BundledConfig(
                name,
                registry.resolve(name).adapter.family,
                tuple(sorted(alias for alias, target in aliases.items() if target == name)),
                int(count["tower_parameters"] or 0),
                count["total_parameters"],
            )
        )
    followed = census.load()
    return Catalog(
        followed.vllm_version,
        families,
        tuple(bundled),
        registry.hub_ids(),
        tuple(refusals.values()),
        census.status(followed, adapters, refusals),
    )
