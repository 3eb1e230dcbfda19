"""The profile report: frozen dataclasses, their JSON form, and validation when read. No torch.

The JSON report is a contract that ``check`` and ``plan`` (and users' dashboards) read. A change
that breaks readers bumps ``SCHEMA_VERSION``; ``load`` refuses versions it does not know and
migrates the ones it does. Every field is checked when read: byte counts are ints, and only the
fields in ``SIGNED_BYTES`` may be negative (they are differences of two samples).

Schema history: 1 (encgraph 0.1); 2 adds ``unmeasured`` and ``stopped_by``, and the default
pool's ``live_bytes`` no longer counts the encoder pool's live outputs a second time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import ReportError
from .units import graph_label

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


class BudgetStatus(str, Enum):
    """Why a requested budget has no measured row."""

    OUT_OF_MEMORY = "out_of_memory"  # its warm-up or capture did not fit, or it could not fit
    CAPTURE_FAILED = "capture_failed"  # capture failed for another reason; the ladder stopped there
    NOT_RUN = "not_run"  # the run stopped (signal, failure) before this budget's turn


class PoolName(str, Enum):
    ENCODER_GRAPHS = "encoder_graphs"
    DEFAULT = "default"
    OUTSIDE_ALLOCATOR = "outside_allocator"


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
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES of the run: which GPU of the host it used


@dataclass(frozen=True)
class Settings:
    model: str  # bundled name, path given, or Hugging Face id
    family: str
    dtype: str
    attn: str
    budgets: tuple[int, ...]  # every budget requested, measured or not
    max_items: int
    seed: int
    revision: str | None = None  # for a Hugging Face id: the revision asked for (None: the default branch)
    commit: str | None = None  # for a Hugging Face id: the snapshot commit its config came from
    layout: str = ""  # what the largest budget is, in images and patches
    pool: str = "shared"  # "shared": one private pool for every graph; "per-graph": one each
    order: str = "largest-first"  # the order of the captures
    capture: str = "plain"  # "plain": the tower's own inputs; "vllm": vLLM's capture inputs and steps
    max_frames_per_batch: int = 0  # vLLM's video layout for this many frames per batch; 0: images

    @property
    def model_label(self) -> str:
        """The model as the report names it: a Hugging Face id with its revision and snapshot commit."""
        if self.commit is None:
            return self.model
        return f"{self.model} at {self.revision or 'the default branch'}, snapshot {self.commit[:12]}"


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
    output_bytes: int  # the graph's outputs, live inside the encoder pool (--as vllm: the buffers outside it they go to)
    non_allocator_bytes: int | None  # process NVML delta minus reserved delta around the capture
    eager_peak_bytes: int  # peak allocated above the baseline during one eager forward
    capture_ms: float | None  # None in a prediction: nothing ran
    eager_ms: float | None
    replay_ms: float | None
    replay_matches_eager: bool | None  # None in a prediction
    replay_max_abs_diff: float | None  # None where the difference is not finite (NaN or inf in an output)
    path: str = ""  # the encoder path of this budget's graph, for families with more than one

    @property
    def label(self) -> str:
        return graph_label(self.path, self.budget)


@dataclass(frozen=True)
class UnmeasuredBudget:
    """A requested budget with no measurement, and why."""

    budget: int
    status: BudgetStatus
    reason: str  # one line
    requested_bytes: int | None = None  # the allocation that did not fit, when the allocator said
    path: str = ""  # as in BudgetResult

    @property
    def label(self) -> str:
        return graph_label(self.path, self.budget)


@dataclass(frozen=True)
class PoolUsage:
    """One row of the per-pool table. ``parts`` break ``reserved_bytes`` down and add up to it."""

    pool: PoolName
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
class ReleaseCheck:
    """What dropping every graph and emptying the cache gave back (``profile --check-release``)."""

    pool_bytes_before: int  # the encoder pools' reserved bytes with the graphs alive
    pool_bytes_after: int  # what the encoder pools still hold afterwards: 0 when all came back
    reserved_returned_bytes: int  # drop in the allocator's reserved counter
    nvml_returned_bytes: int | None  # drop in this process's memory as NVML reports it
    held_by: str = ""  # what still holds the bytes that did not come back, when it can be named


@dataclass(frozen=True)
class VllmEstimate:
    """What vLLM's own estimate of the encoder graphs would be (``--as vllm``): the drop in the
    device's free memory across every budget's inputs, warm-up and capture, the cache never
    emptied in between, split into its parts. The parts add up to ``free_drop_bytes``."""

    free_drop_bytes: int  # the device's free memory before minus after (cudaMemGetInfo)
    pool_bytes: int  # the encoder pools' reserved bytes: what the graphs hold
    static_input_bytes: int  # every budget's input buffers, in the default pool
    output_buffer_bytes: int  # the buffers each graph copies its outputs to, in the default pool
    cached_bytes: int  # default-pool memory reserved during the captures that nothing uses: warm-up leftovers
    outside_allocator_bytes: int  # the rest of the drop: graph executables, library workspaces


@dataclass(frozen=True)
class Report:
    schema_version: int
    provenance: Provenance
    settings: Settings
    model: ModelFacts
    budgets: tuple[BudgetResult, ...]  # measured budgets, ascending
    pools: tuple[PoolUsage, ...]
    graph_counts: GraphCountsReport
    process_used_bytes: int | None  # NVML, this process, at the end of the run
    wall_ms: float
    warnings: tuple[str, ...] = ()
    unmeasured: tuple[UnmeasuredBudget, ...] = ()  # requested budgets without a measurement
    stopped_by: str | None = None  # "SIGINT", "SIGTERM" or "capture failure" when the ladder stopped early
    release: ReleaseCheck | None = None  # with --check-release
    vllm_estimate: VllmEstimate | None = None  # with --as vllm
    predicted: bool = False  # made by `encgraph predict`, without a GPU: nothing here was measured

    def pool(self, name: PoolName | str) -> PoolUsage:
        return next(p for p in self.pools if p.pool == name)

    def budget(self, budget: int) -> BudgetResult:
        return next(b for b in self.budgets if b.budget == budget)

    @property
    def complete(self) -> bool:
        """Every requested budget was measured."""
        return not self.unmeasured and self.stopped_by is None

    @property
    def replay_mismatches(self) -> tuple[str, ...]:
        return tuple(b.label for b in self.budgets if b.replay_matches_eager is False)

    @property
    def total_bytes(self) -> int | None:
        """What the process holds on the device: the pools' rows added up."""
        rows = [p.reserved_bytes for p in self.pools]
        return None if any(r is None for r in rows) else sum(rows)


def to_dict(report: Report) -> dict[str, Any]:
    data = dataclasses.asdict(report, dict_factory=lambda items: {k: _plain(v) for k, v in items})
    data["total_bytes"] = report.total_bytes  # derived, written for readers of the JSON alone
    data["complete"] = report.complete
    return data


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"


def save(report: Report, path: Path) -> None:
    write_atomic(path, to_json(report))


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write atomically, so an interrupted run never leaves a truncated file behind; a failed
    write leaves no temporary file either."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path: Path) -> None:
    """Raise OSError now if ``save(…, path)`` would fail for want of a folder or permission."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder")
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    probe.write_text("")
    probe.unlink()


# -- reading --------------------------------------------------------------------------------------

# Byte figures that are differences of two samples and so may be negative.
SIGNED_BYTES = frozenset({"non_allocator_bytes", "workspaces_and_cache", "other", "reserved_returned_bytes", "nvml_returned_bytes",
                          "free_drop_bytes", "cached_bytes", "outside_allocator_bytes"})

_NESTED = {
    "ReleaseCheck": ReleaseCheck,
    "VllmEstimate": VllmEstimate,
    "Provenance": Provenance,
    "Settings": Settings,
    "ModelFacts": ModelFacts,
    "GraphCountsReport": GraphCountsReport,
}
_SEQUENCES = {
    "tuple[BudgetResult, ...]": BudgetResult,
    "tuple[UnmeasuredBudget, ...]": UnmeasuredBudget,
    "tuple[PoolUsage, ...]": PoolUsage,
    "tuple[GraphGroupReport, ...]": GraphGroupReport,
}
_ENUMS = {"BudgetStatus": BudgetStatus, "PoolName": PoolName}


def _build(cls, data: Any, where: str):
    """Build dataclass ``cls`` from ``data``, checking every field's type and range."""
    if not isinstance(data, dict):
        raise ReportError(f"{where} should be an object")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ReportError(f"{where}.{f.name} is missing")
        kwargs[f.name] = _convert(f.type, data[f.name], f"{where}.{f.name}", f.name)
    return cls(**kwargs)


def _convert(type_name: str, value: Any, where: str, name: str) -> Any:
    optional = type_name.endswith(" | None")
    if optional:
        if value is None:
            return None
        type_name = type_name[: -len(" | None")]
    if type_name in _NESTED:
        return _build(_NESTED[type_name], value, where)
    if type_name in _SEQUENCES:
        if not isinstance(value, list):
            raise ReportError(f"{where} should be a list")
        return tuple(_build(_SEQUENCES[type_name], item, f"{where}[{i}]") for i, item in enumerate(value))
    if type_name in _ENUMS:
        choices = [e.value for e in _ENUMS[type_name]]
        if value not in choices:
            raise ReportError(f"{where} is {value!r}; expected one of {', '.join(choices)}")
        return _ENUMS[type_name](value)
    if type_name == "int":
        return _integer(value, where, name)
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ReportError(f"{where} is {value!r}; expected a finite, non-negative number")
        return float(value)
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ReportError(f"{where} is {value!r}; expected true or false")
        return value
    if type_name == "str":
        if not isinstance(value, str):
            raise ReportError(f"{where} is {value!r}; expected a string")
        return value
    if type_name == "tuple[int, ...]":
        if not isinstance(value, list):
            raise ReportError(f"{where} should be a list")
        return tuple(_integer(v, f"{where}[{i}]", name) for i, v in enumerate(value))
    if type_name == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ReportError(f"{where} should be a list of strings")
        return tuple(value)
    if type_name == "dict[str, int | None]":
        if not isinstance(value, dict):
            raise ReportError(f"{where} should be an object")
        return {k: _convert("int | None", v, f"{where}.{k}", k) for k, v in value.items()}
    if type_name == "dict[str, Any]":
        if not isinstance(value, dict):
            raise ReportError(f"{where} should be an object")
        return value
    raise AssertionError(f"no reader for field type {type_name}")  # a schema edit without a reader


def _integer(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        what = "a whole number of bytes" if name.endswith("bytes") or name in SIGNED_BYTES else "a whole number"
        raise ReportError(f"{where} is {value!r}; expected {what}")
    if value < 0 and name not in SIGNED_BYTES and name != "seed":
        raise ReportError(f"{where} is {value}; it cannot be negative")
    return value


def _check_consistency(report: Report) -> None:
    """What the types alone cannot say: budgets that add up, figures that must be positive."""
    requested = set(report.settings.budgets)
    if any(b <= 0 for b in requested):
        raise ReportError("report.settings.budgets must be positive token counts")
    measured = [(b.path, b.budget) for b in report.budgets]
    unmeasured = [(u.path, u.budget) for u in report.unmeasured]
    if len(set(measured + unmeasured)) != len(measured) + len(unmeasured):
        raise ReportError("report lists a budget twice (in budgets or unmeasured)")
    by_path: dict[str, set[int]] = {}
    for path, budget in measured + unmeasured:
        by_path.setdefault(path, set()).add(budget)
    if set(by_path) == {""}:  # one graph per budget requested
        if by_path[""] != requested:
            raise ReportError("report.budgets and report.unmeasured do not cover report.settings.budgets "
                              f"({sorted(by_path[''])} against {sorted(requested)})")
    else:  # each encoder path on its own ladder, up to the largest budget requested
        for path, budgets in sorted(by_path.items()):
            if max(budgets) != max(requested):
                raise ReportError(f"report's {path or 'default'} path ends at budget {max(budgets)}, "
                                  f"not at the largest of report.settings.budgets ({max(requested)})")
    if report.model.kv_bytes_per_token == 0:
        raise ReportError("report.model.kv_bytes_per_token is 0; a model with a KV cache has a positive figure (null for encoder-only models)")
    if report.settings.max_items <= 0:
        raise ReportError("report.settings.max_items must be at least 1")
    for name in PoolName:
        if sum(p.pool == name for p in report.pools) != 1:
            raise ReportError(f"report.pools should have exactly one {name.value!r} row")


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older report up to this schema, exactly where the old figures allow it."""
    if data.get("schema_version") == 1:
        data = json.loads(json.dumps(data))  # a deep copy
        pools = {p.get("pool"): p for p in data.get("pools", []) if isinstance(p, dict)}
        encoder, default = pools.get("encoder_graphs"), pools.get("default")
        # Version 1 took the default pool's live bytes from memory_allocated(), which also counts
        # the encoder pool's live outputs.
        if encoder and default and isinstance(encoder.get("live_bytes"), int) and isinstance(default.get("live_bytes"), int):
            default["live_bytes"] -= encoder["live_bytes"]
        measured = {b.get("budget") for b in data.get("budgets", []) if isinstance(b, dict)}
        requested = data.get("settings", {}).get("budgets", [])
        if isinstance(requested, list):
            data["unmeasured"] = [
                {"budget": b, "status": "not_run", "reason": "not in this version 1 report"}
                for b in requested if b not in measured
            ]
        data["schema_version"] = 2
    return data


def from_dict(data: Any) -> Report:
    if not isinstance(data, dict):
        raise ReportError("this is not an encgraph report (not a JSON object)")
    version = data.get("schema_version")
    if version is None:
        raise ReportError("this is not an encgraph report (it has no schema_version); give a report written by `encgraph profile --json`")
    if version not in READABLE_VERSIONS:
        raise ReportError(
            f"report has schema_version {version!r}; this encgraph reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: re-run `encgraph profile` with this version to refresh it"
        )
    data = {k: v for k, v in _migrate(data).items() if k not in ("total_bytes", "complete")}
    report = _build(Report, data, "report")
    _check_consistency(report)
    return report


def load(path: Path) -> Report:
    """Read a report, turning every way a file can be unreadable or malformed into one ReportError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a folder, not a report file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot read report ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not a valid JSON report ({err.msg} at line {err.lineno}); is it truncated?") from None
    except RecursionError:
        raise ReportError(f"{path}: not an encgraph report (nested too deeply)") from None
    try:
        return from_dict(data)
    except ReportError as err:
        raise ReportError(f"{path}: {err}") from None
