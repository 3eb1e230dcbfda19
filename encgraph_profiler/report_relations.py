"""What the types alone cannot say about a report: the relations between its fields that every
report encgraph writes keeps, measured (``capture``, ``accounting``) or predicted (``predict``).
A report that breaks one contradicts itself and is refused, never trusted. No torch.

Each relation follows from how the figures are made:

- a budget's ``pool_growth_bytes`` is the encoder pools' reserved bytes after its capture minus
  before it, and ``pool_reserved_bytes`` the bytes after it; private pools only grow while their
  graphs live, so no budget's figures exceed the encoder pool row, which is sampled at the end;
- when every budget was captured (``complete``), nothing else entered the encoder pools: the row
  equals the last capture's reserved bytes (the largest) and the growths add up to it. A capture
  that ran out of memory, failed or was cut short by a signal may leave blocks behind, so a report
  that is not complete keeps only the bounds;
- each pool row's ``parts`` break its ``reserved_bytes`` down and add up to it, where all are known;
- vLLM's estimate's parts add up to its ``free_drop_bytes``;
- ``total_bytes`` and ``complete``, written for readers of the JSON alone, are what the report's
  rows and ``unmeasured`` / ``stopped_by`` say.
"""

from __future__ import annotations

from typing import Any

from .errors import ReportError
from .schema import PoolName, Report

SHOWN = 60  # characters of a value a message shows


def shown(value: Any) -> str:
    """A value as a message shows it: its repr, at most ``SHOWN`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit number"
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}..."


def clipped(value: Any) -> str:
    """A value as text, at most ``SHOWN`` characters (a 200,000-budget list is not a message)."""
    text = str(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}..."


def check_derived(data: dict[str, Any], report: Report) -> None:
    """``complete`` and ``total_bytes`` as written in the JSON agree with the report's rows."""
    if "complete" in data:
        complete = data["complete"]
        if not isinstance(complete, bool):
            raise ReportError(f"report.complete is {shown(complete)}; expected true or false")
        if complete != report.complete:
            says = (
                "every requested budget was measured and the run was not stopped"
                if report.complete
                else f"{len(report.unmeasured):,} requested budgets are unmeasured and stopped_by is "
                f"{'null' if report.stopped_by is None else report.stopped_by}"
            )
            raise ReportError(f"report.complete is {str(complete).lower()}, but {says}: the report contradicts itself")
    if "total_bytes" in data:
        total, rows = data["total_bytes"], report.total_bytes
        if total != rows or isinstance(total, bool):
            added = "n/a (a row is unknown)" if rows is None else f"{rows:,}"
            raise ReportError(f"report.total_bytes is {shown(total)}, but the pool rows add up to {added}")


def check_relations(report: Report) -> None:
    """Refuse a report whose figures contradict each other (see the module docstring)."""
    for i, b in enumerate(report.budgets):
        if b.items < 1:
            raise ReportError(f"report.budgets[{i}].items is {b.items}; a captured batch holds at least 1 item")
        if b.pool_growth_bytes > b.pool_reserved_bytes:
            raise ReportError(
                f"report.budgets[{i}].pool_growth_bytes ({b.pool_growth_bytes:,}) is more than its "
                f"pool_reserved_bytes ({b.pool_reserved_bytes:,}): the pool cannot grow by more than it holds"
            )
    _encoder_pool(report)
    for row in report.pools:
        parts = [p for p in row.parts.values() if p is not None]
        known = row.reserved_bytes is not None and parts and len(parts) == len(row.parts)
        if known and sum(parts) != row.reserved_bytes:
            raise ReportError(
                f"report's {row.pool.value} pool parts add up to {sum(parts):,} bytes, not its reserved_bytes "
                f"{row.reserved_bytes:,}"
            )
        if row.live_bytes is not None and row.reserved_bytes is not None and row.live_bytes > row.reserved_bytes:
            raise ReportError(
                f"report's {row.pool.value} pool has live_bytes {row.live_bytes:,} above its reserved_bytes "
                f"{row.reserved_bytes:,}"
            )
    estimate = report.vllm_estimate
    if estimate is not None:
        parts = (
            estimate.pool_bytes
            + estimate.static_input_bytes
            + estimate.output_buffer_bytes
            + estimate.cached_bytes
            + estimate.outside_allocator_bytes
        )
        if parts != estimate.free_drop_bytes:
            raise ReportError(
                f"report.vllm_estimate's parts add up to {parts:,} bytes, not its free_drop_bytes "
                f"{estimate.free_drop_bytes:,}"
            )


def _encoder_pool(report: Report) -> None:
    """The encoder pool row against what the budgets say it holds."""
    row = report.pool(PoolName.ENCODER_GRAPHS)
    if row.reserved_bytes is None or not report.budgets:
        return
    largest = max(report.budgets, key=lambda b: b.pool_reserved_bytes)
    if largest.pool_reserved_bytes > row.reserved_bytes:
        raise ReportError(
            f"report's encoder_graphs pool reserves {row.reserved_bytes:,} bytes but budget {largest.label} says the "
            f"pool held {largest.pool_reserved_bytes:,} after its capture: the pool row contradicts the budgets"
        )
    grown = sum(b.pool_growth_bytes for b in report.budgets)
    if grown > row.reserved_bytes:
        raise ReportError(
            f"the budgets' pool_growth_bytes add up to {grown:,} bytes, more than the encoder_graphs pool's "
            f"{row.reserved_bytes:,}"
        )
    if report.complete and not grown == largest.pool_reserved_bytes == row.reserved_bytes:
        raise ReportError(
            f"report's encoder_graphs pool reserves {row.reserved_bytes:,} bytes, but its budgets grew it by "
            f"{grown:,} and the last capture left {largest.pool_reserved_bytes:,}: in a complete report all three "
            "are the same"
        )
    if report.complete and report.vllm_estimate is not None and report.vllm_estimate.pool_bytes != row.reserved_bytes:
        raise ReportError(
            f"report.vllm_estimate.pool_bytes is {report.vllm_estimate.pool_bytes:,}, not the encoder_graphs pool's "
            f"{row.reserved_bytes:,}"
        )
