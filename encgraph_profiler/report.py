"""The profile report: frozen dataclasses and their JSON form. No torch.

The JSON report is a contract that ``check`` and ``plan`` (and users' dashboards) read. A change
that breaks readers bumps ``SCHEMA_VERSION``; ``load`` refuses versions it does not know.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ReportError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Provenance:
    gpu_name: str
    gpu_total_bytes: int
    driver: str | None
    cuda: str | None
    torch: str
    transformers: str
    encgraph: str
    allocator_conf: str
    created_at: str


@dataclass(frozen=True)
class Settings:
    model: str  # bundled name, or the path given
    family: str
    dtype: str
    attn: str
    budgets: tuple[int, ...]
    max_items: int
    seed: int


@dataclass(frozen=True)
class ModelFacts:
    """Counted on the meta device from the full config, so no weights are needed."""

    tower_parameters: int
    total_parameters: int | None  # vision + language model; None for encoder-only checkpoints
    weight_bytes: int | None  # total_parameters x dtype size
    kv_bytes_per_token: int | None  # 2 x layers x KV heads x head dim x dtype size
    max_position_embeddings: int | None


@dataclass(frozen=True)
class BudgetResult:
    """One captured budget. Bytes are exact allocator or NVML figures; times are milliseconds."""

    budget: int
    items: int
    tokens: int  # tokens laid out, >= budget (items x ceil(budget / items))
    input_patches: int
    pool_growth_bytes: int  # encoder pool reserved after minus before this capture
    pool_reserved_bytes: int  # encoder pool reserved after this capture
    static_io_bytes: int  # this budget's static inputs, held in the default pool
    output_bytes: int  # the graph's outputs, live inside the encoder pool
    non_allocator_bytes: int | None  # process NVML delta minus reserved delta around the capture
    eager_peak_bytes: int  # peak allocated above the baseline during one eager forward
    capture_ms: float
    eager_ms: float
    replay_ms: float
    replay_matches_eager: bool
    replay_max_abs_diff: float


@dataclass(frozen=True)
class PoolUsage:
    """One row of the per-pool table. ``parts`` break ``reserved_bytes`` down and add up to it."""

    pool: str  # "encoder_graphs", "default" or "outside_allocator"
    reserved_bytes: int | None
    live_bytes: int | None = None
    segments: int | None = None
    graphs: int | None = None
    parts: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphGroupReport:
    kind: str
    count: int
    largest: int
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class GraphCountsReport:
    line: str
    groups: tuple[GraphGroupReport, ...]
    decoder_settings: dict[str, Any]


@dataclass(frozen=True)
class Report:
    schema_version: int
    provenance: Provenance
    settings: Settings
    model: ModelFacts
    budgets: tuple[BudgetResult, ...]
    pools: tuple[PoolUsage, ...]
    graph_counts: GraphCountsReport
    process_used_bytes: int | None  # NVML, this process, at the end of the run
    wall_ms: float
    warnings: tuple[str, ...] = ()

    def pool(self, name: str) -> PoolUsage:
        return next(p for p in self.pools if p.pool == name)

    def budget(self, budget: int) -> BudgetResult:
        return next(b for b in self.budgets if b.budget == budget)

    @property
    def total_bytes(self) -> int | None:
        """What the process holds on the device: the pools' rows added up."""
        rows = [p.reserved_bytes for p in self.pools]
        return None if any(r is None for r in rows) else sum(rows)


def to_dict(report: Report) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["total_bytes"] = report.total_bytes  # derived, written for readers of the JSON alone
    return data


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"


def save(report: Report, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a truncated report behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_json(report))
    tmp.replace(path)


def _build(cls, data: Any, where: str):
    """Build dataclass ``cls`` from ``data``, converting nested dataclasses and tuples."""
    if not isinstance(data, dict):
        raise ReportError(f"report field {where!r} should be an object")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ReportError(f"report is missing {where}.{f.name}")
        kwargs[f.name] = _convert(f.type, data[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


_NESTED = {
    "Provenance": Provenance,
    "Settings": Settings,
    "ModelFacts": ModelFacts,
    "GraphCountsReport": GraphCountsReport,
}
_SEQUENCES = {
    "tuple[BudgetResult, ...]": BudgetResult,
    "tuple[PoolUsage, ...]": PoolUsage,
    "tuple[GraphGroupReport, ...]": GraphGroupReport,
}


def _convert(type_name: str, value: Any, where: str) -> Any:
    if type_name in _NESTED:
        return _build(_NESTED[type_name], value, where)
    if type_name in _SEQUENCES:
        if not isinstance(value, list):
            raise ReportError(f"report field {where!r} should be a list")
        return tuple(_build(_SEQUENCES[type_name], item, f"{where}[{i}]") for i, item in enumerate(value))
    if type_name.startswith("tuple[") and isinstance(value, list):
        return tuple(value)
    return value


def from_dict(data: Any) -> Report:
    if not isinstance(data, dict):
        raise ReportError("report is not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"report has schema_version {version!r}; this encgraph reads version {SCHEMA_VERSION}: "
            "re-run `encgraph profile` with this version to refresh it"
        )
    return _build(Report, data, "report")


def load(path: Path) -> Report:
    """Read a report, turning every way a file can be unreadable into one ReportError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot read report ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not a valid JSON report ({err.msg} at line {err.lineno}); is it truncated?") from None
    try:
        return from_dict(data)
    except ReportError as err:
        raise ReportError(f"{path}: {err}") from None
    except TypeError as err:
        raise ReportError(f"{path}: malformed report ({err})") from None
