"""The census of vLLM's encoder CUDA graphs (vllm_census.json, written by tools/vllm_census.py from
a vLLM wheel) and where each of its places stands in encgraph: supported by a family adapter,
refused by a Refusal, or missing. No torch, no transformers: the drift test reads it in CI."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Adapter, Refusal, VllmSource

CENSUS_FILE = Path(__file__).resolve().parent / "vllm_census.json"


@dataclass(frozen=True)
class MethodLocation:
    """Where vLLM defines one capture method: ``file:line``, the file relative to the vllm package."""

    method: str
    file: str
    line: int

    @property
    def label(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Inheritor:
    """A vLLM class that inherits a place's capture, its architectures and the capture methods it overrides."""

    source: VllmSource
    line: int
    architectures: tuple[str, ...]
    overrides: tuple[MethodLocation, ...] = ()


@dataclass(frozen=True)
class Dispatcher:
    """A registered vLLM class that picks one of the place's classes in ``__new__`` (MiniCPM-V)."""

    source: VllmSource
    architectures: tuple[str, ...]
    to: tuple[str, ...]


@dataclass(frozen=True)
class CensusEntry:
    """One place that implements SupportsEncoderCudaGraph: a class whose bases name it."""

    source: VllmSource
    line: int
    architectures: tuple[str, ...]
    methods: tuple[MethodLocation, ...]
    inheritors: tuple[Inheritor, ...] = ()
    dispatchers: tuple[Dispatcher, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.source.file}:{self.source.cls}"

    def method(self, name: str) -> MethodLocation | None:
        return next((m for m in self.methods if m.method == name), None)

    @property
    def all_architectures(self) -> tuple[str, ...]:
        """Its architectures and those of the classes that inherit it or dispatch to it."""
        found = {*self.architectures}
        found.update(a for i in self.inheritors for a in i.architectures)
        found.update(a for d in self.dispatchers for a in d.architectures)
        return tuple(sorted(found))


@dataclass(frozen=True)
class Census:
    vllm_version: str
    entries: tuple[CensusEntry, ...]

    def sources(self) -> frozenset[VllmSource]:
        return frozenset(entry.source for entry in self.entries)

    def entry(self, source: VllmSource) -> CensusEntry | None:
        return next((e for e in self.entries if e.source == source), None)


def _locations(data: Mapping[str, Any]) -> tuple[MethodLocation, ...]:
    found = []
    for method, where in sorted(data.items()):
        if where is None:
            continue
        file, _, line = str(where).rpartition(":")
        found.append(MethodLocation(method, file, int(line)))
    return tuple(found)


def parse(data: Mapping[str, Any]) -> Census:
    """A census from its JSON form."""
    entries = tuple(
        CensusEntry(
            VllmSource(e["file"], e["class"]),
            int(e["line"]),
            tuple(e["architectures"]),
            _locations(e["methods"]),
            tuple(
                Inheritor(
                    VllmSource(i["file"], i["class"]),
                    int(i["line"]),
                    tuple(i["architectures"]),
                    _locations(i.get("overrides", {})),
                )
                for i in e.get("inheritors", ())
            ),
            tuple(
                Dispatcher(VllmSource(d["file"], d["class"]), tuple(d["architectures"]), tuple(d["to"]))
                for d in e.get("dispatchers", ())
            ),
        )
        for e in data["entries"]
    )
    return Census(str(data["vllm_version"]), entries)


def load(path: Path = CENSUS_FILE) -> Census:
    return parse(json.loads(path.read_text()))


@dataclass(frozen=True)
class EntryStatus:
    """Where a census entry stands: the families whose adapters cite it, the model types whose
    Refusal lists it; supported where any family does, else refused where any Refusal does, else missing."""

    entry: CensusEntry
    supported_by: tuple[str, ...] = ()  # adapter families
    refused_by: tuple[str, ...] = ()  # refused model types

    @property
    def state(self) -> str:
        if self.supported_by:
            return "supported"
        return "refused" if self.refused_by else "missing"


def status(
    census: Census, adapters: Iterable[Adapter], refusals: Iterable[Refusal] | Mapping[str, Refusal]
) -> tuple[EntryStatus, ...]:
    """Each census entry's status, in the census's order. ``refusals`` may be registry.refusals()' mapping."""
    adapters = tuple(adapters)
    refused = tuple(refusals.values() if isinstance(refusals, Mapping) else refusals)
    return tuple(
        EntryStatus(
            entry,
            tuple(sorted({a.family for a in adapters if entry.source in (a.vllm, *a.vllm_also)})),
            tuple(sorted({r.model_type for r in refused if entry.source in r.vllm})),
        )
        for entry in census.entries
    )
