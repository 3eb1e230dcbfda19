"""Writing and reading the JSON report, and validating it when read. No torch.

Every field is checked when read: byte counts are ints within 64 bits, and only the fields in
``SIGNED_BYTES`` may be negative (they are differences of two samples). Then the relations between
fields that every report encgraph writes keeps (``relations``): a report that contradicts itself is
refused, never trusted. ``load`` refuses schema versions it does not know and migrates the ones it
does. Checking is linear in the report's size, and every message is bounded in length.
"""

from __future__ import annotations

import dataclasses
import json
import math
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import ReportError
from .files import write_atomic
from .report_relations import check_derived, check_relations, shown
from .schema import (
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    BudgetResult,
    BudgetStatus,
    Capture,
    GraphCountsReport,
    GraphGroupReport,
    ModelFacts,
    Order,
    Pool,
    PoolName,
    PoolUsage,
    Provenance,
    ReleaseCheck,
    Report,
    Settings,
    StopReason,
    UnmeasuredBudget,
    VllmEstimate,
)
from .units import listed


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


# -- reading --------------------------------------------------------------------------------------

# Byte figures that are differences of two samples and so may be negative.
SIGNED_BYTES = frozenset(
    {
        "non_allocator_bytes",
        "workspaces_and_cache",
        "other",
        "reserved_returned_bytes",
        "nvml_returned_bytes",
        "free_drop_bytes",
        "cached_bytes",
        "outside_allocator_bytes",
    }
)

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
_ENUMS: dict[str, type[Enum]] = {
    "BudgetStatus": BudgetStatus,
    "PoolName": PoolName,
    "Pool": Pool,
    "Order": Order,
    "Capture": Capture,
    "StopReason": StopReason,
}


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
        kwargs[f.name] = _convert(str(f.type), data[f.name], f"{where}.{f.name}", f.name)
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
            raise ReportError(f"{where} is {shown(value)}; expected one of {', '.join(choices)}")
        return _ENUMS[type_name](value)
    if type_name == "int":
        return _integer(value, where, name)
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ReportError(f"{where} is {shown(value)}; expected a finite, non-negative number")
        return float(value)
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ReportError(f"{where} is {shown(value)}; expected true or false")
        return value
    if type_name == "str":
        if not isinstance(value, str):
            raise ReportError(f"{where} is {shown(value)}; expected a string")
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


INT64 = 2**63  # a report's integers are within 64 bits, as a C or JSON reader elsewhere holds them


def _integer(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        what = "a whole number of bytes" if name.endswith("bytes") or name in SIGNED_BYTES else "a whole number"
        raise ReportError(f"{where} is {shown(value)}; expected {what}")
    if not -INT64 <= value < INT64:
        raise ReportError(f"{where} is {shown(value)}; beyond a 64-bit integer, no GPU holds that")
    if value < 0 and name not in SIGNED_BYTES and name != "seed":
        raise ReportError(f"{where} is {value}; it cannot be negative")
    return value


def _check_consistency(report: Report) -> None:
    """What the types alone cannot say: budgets that add up, figures that must be positive."""
    requested = set(report.settings.budgets)
    if any(b <= 0 for b in requested):
        raise ReportError("report.settings.budgets must be positive token counts")
    measured = [b.key for b in report.budgets]
    unmeasured = [u.key for u in report.unmeasured]
    if len(set(measured + unmeasured)) != len(measured) + len(unmeasured):
        raise ReportError("report lists a budget twice (in budgets or unmeasured)")
    by_path: dict[str, set[int]] = {}
    for path, budget in measured + unmeasured:
        by_path.setdefault(path, set()).add(budget)
    if set(by_path) == {""}:  # one graph per budget requested
        if by_path[""] != requested:
            missing, extra = sorted(requested - by_path[""]), sorted(by_path[""] - requested)
            raise ReportError(
                "report.budgets and report.unmeasured do not cover report.settings.budgets ("
                + "; ".join(
                    f"{what} {listed(map(str, budgets))}"
                    for what, budgets in (("requested only:", missing), ("not requested:", extra))
                    if budgets
                )
                + ")"
            )
    else:  # each encoder path on its own ladder, up to the largest budget requested
        for path, budgets in sorted(by_path.items()):
            if max(budgets) != max(requested):
                raise ReportError(
                    f"report's {path or 'default'} path ends at budget {max(budgets)}, "
                    f"not at the largest of report.settings.budgets ({max(requested)})"
                )
    if report.model.kv_bytes_per_token == 0:
        raise ReportError(
            "report.model.kv_bytes_per_token is 0; a model with a KV cache has a positive figure (null for "
            "encoder-only models)"
        )
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
        if (
            encoder
            and default
            and isinstance(encoder.get("live_bytes"), int)
            and isinstance(default.get("live_bytes"), int)
        ):
            default["live_bytes"] -= encoder["live_bytes"]
        measured = {b.get("budget") for b in data.get("budgets", []) if isinstance(b, dict)}
        requested = data.get("settings", {}).get("budgets", [])
        if isinstance(requested, list):
            data["unmeasured"] = [
                {"budget": b, "status": "not_run", "reason": "not in this version 1 report"}
                for b in requested
                if b not in measured
            ]
        data["schema_version"] = 2
    return data


def from_dict(data: Any) -> Report:
    if not isinstance(data, dict):
        raise ReportError("this is not an encgraph report (not a JSON object)")
    version = data.get("schema_version")
    if version is None and isinstance(data.get("cells"), list):
        raise ReportError(
            "this is a sweep's merged results (sweep.json), not a report: give the cells' reports beside it, "
            "each named in its cells[].report"
        )
    if version is None:
        raise ReportError(
            "this is not an encgraph report (it has no schema_version); give a report written by `encgraph profile "
            "--json`, `encgraph predict --json` or `encgraph sweep`"
        )
    if version not in READABLE_VERSIONS:
        raise ReportError(
            f"report has schema_version {version!r}; this encgraph reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: re-run `encgraph profile` with this version to refresh it"
        )
    migrated = _migrate(data)
    report = _build(Report, {k: v for k, v in migrated.items() if k not in ("total_bytes", "complete")}, "report")
    _check_consistency(report)
    check_relations(report)
    if version == SCHEMA_VERSION:  # what this version writes for readers of the JSON alone
        check_derived(data, report)
    return report


def sweep_reports(path: Path) -> list[Path] | None:
    """The cells' reports that a sweep's merged results (sweep.json) name, beside it; None for any
    other file (``load`` then says what is wrong with it)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or "schema_version" in data or not isinstance(data.get("cells"), list):
        return None
    cells = [cell for cell in data["cells"] if isinstance(cell, dict)]
    return [Path(path).parent / cell["report"] for cell in cells if isinstance(cell.get("report"), str)]


def load(path: Path) -> Report:
    """Read a report, turning every way a file can be unreadable or malformed into one ReportError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark, as some editors save, is read past
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a folder, not a report file") from None
    except UnicodeDecodeError as err:
        raise ReportError(
            f"{path}: not a report (not UTF-8 text: byte {err.start:,} is {err.object[err.start]:#04x})"
        ) from None
    except OSError as err:
        raise ReportError(f"{path}: cannot read report ({err.strerror or err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(
            f"{path}: not a valid JSON report ({err.msg} at line {err.lineno}); is it truncated?"
        ) from None
    except RecursionError:
        raise ReportError(f"{path}: not an encgraph report (nested too deeply)") from None
    except ValueError:  # Python reads no integer of more digits
        raise ReportError(f"{path}: not an encgraph report (a number in it has over 4,300 digits)") from None
    try:
        return from_dict(data)
    except ReportError as err:
        raise ReportError(f"{path}: {err}") from None
