"""Rows from samples: the per-budget and per-pool arithmetic of a profile, pure and testable on any
machine. ``capture`` takes the samples on the device; everything here only subtracts and adds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .device import PoolBytes, Sample
from .models.base import Layout
from .schema import BudgetResult, PoolName, PoolUsage, ReleaseCheck, VllmEstimate


def difference(after: int | None, before: int | None) -> int | None:
    """``after - before``, or None where either side could not be read (NVML hidden)."""
    return None if after is None or before is None else after - before


@dataclass(frozen=True)
class Warmed:
    """A budget whose inputs exist and whose eager warm-up ran: ready to capture."""

    layout: Layout
    run: Any  # the forward to capture, over the budget's static inputs: () -> tuple of outputs
    io_bytes: int  # static inputs, and with vLLM's capture the buffers the outputs are copied to
    reference: tuple[Any, ...]  # the eager outputs, on the host
    eager_ms: float
    peak_bytes: int
    buffer_bytes: int = 0  # of io_bytes, the output buffers


def fit_estimate(warmed: list[Warmed], layout: Layout) -> int | None:
    """Bytes the budget's inputs and eager forward need, scaled from the largest budget of its path
    warmed up so far. Activation memory grows at least in proportion to the tokens, so this
    undercounts rather than overcounts: a budget it says cannot fit would not have fitted."""
    same_path = [w for w in warmed if w.layout.path == layout.path]  # each path has its own tower work
    if not same_path:
        return None
    largest = max(same_path, key=lambda w: w.layout.tokens)
    return (largest.io_bytes + largest.peak_bytes) * layout.tokens // largest.layout.tokens


def budget_row(
    item: Warmed,
    before: Sample,
    after: Sample,
    output_bytes: int,
    capture_ms: float,
    replay_ms: float,
    matches: bool,
    max_abs_diff: float | None,
) -> BudgetResult:
    """One captured budget's row, from the samples taken around its capture."""
    layout = item.layout
    nvml_delta = difference(after.process_used_bytes, before.process_used_bytes)
    return BudgetResult(
        budget=layout.budget,
        items=layout.items,
        tokens=layout.tokens,
        input_patches=layout.input_patches,
        pool_growth_bytes=after.encoder.reserved_bytes - before.encoder.reserved_bytes,
        pool_reserved_bytes=after.encoder.reserved_bytes,
        static_io_bytes=item.io_bytes,
        output_bytes=output_bytes,
        non_allocator_bytes=None if nvml_delta is None else nvml_delta - (after.reserved_bytes - before.reserved_bytes),
        eager_peak_bytes=item.peak_bytes,
        capture_ms=capture_ms,
        eager_ms=item.eager_ms,
        replay_ms=replay_ms,
        replay_matches_eager=matches,
        replay_max_abs_diff=max_abs_diff,
        path=layout.path,
    )


def pool_rows(
    final: Sample,
    default: PoolBytes,
    weights_bytes: int,
    static_io_bytes: int,
    context_bytes: int | None,
    results: list[BudgetResult],
) -> tuple[tuple[PoolUsage, ...], list[str]]:
    """The per-pool rows at the end of the run, and warnings.

    Each pool's reserved and live bytes are summed from its own segments, and what lies outside
    the allocator is NVML's figure minus the allocator's own reserved counter. So the rows add up
    to NVML's figure only if the segments add up to the counter: a real check, not a remainder."""
    outside = difference(final.process_used_bytes, final.reserved_bytes)
    non_allocator = [r.non_allocator_bytes for r in results]
    graph_exec = None if any(b is None for b in non_allocator) else sum(b for b in non_allocator if b is not None)
    other = (
        None if outside is None or context_bytes is None or graph_exec is None else outside - context_bytes - graph_exec
    )
    encoder = final.encoder
    rows = (
        PoolUsage(
            PoolName.ENCODER_GRAPHS,
            encoder.reserved_bytes,
            encoder.live_bytes,
            encoder.segments,
            len(results),
            {"live_outputs": encoder.live_bytes, "scratch": encoder.reserved_bytes - encoder.live_bytes},
        ),
        PoolUsage(
            PoolName.DEFAULT,
            default.reserved_bytes,
            default.live_bytes,
            default.segments,
            None,
            {
                "weights": weights_bytes,
                "static_inputs": static_io_bytes,
                "workspaces_and_cache": default.reserved_bytes - weights_bytes - static_io_bytes,
            },
        ),
        PoolUsage(
            PoolName.OUTSIDE_ALLOCATOR,
            outside,
            None,
            None,
            None,
            {"cuda_context": context_bytes, "graph_executables": graph_exec, "other": other},
        ),
    )
    return rows, _unaccounted(final, default)


def _unaccounted(final: Sample, default: PoolBytes) -> list[str]:
    """Where the pools' segments and live blocks do not add up to the allocator's own counters."""
    warnings = []
    segments_reserved = final.encoder.reserved_bytes + default.reserved_bytes
    if segments_reserved != final.reserved_bytes:
        warnings.append(
            f"the pools' segments add up to {segments_reserved:,} bytes but the allocator reserves "
            f"{final.reserved_bytes:,}: another private pool holds {final.reserved_bytes - segments_reserved:,} bytes"
        )
    segments_live = final.encoder.live_bytes + default.live_bytes
    if segments_live != final.allocated_bytes:
        warnings.append(
            f"the pools' live blocks add up to {segments_live:,} bytes but the allocator counts "
            f"{final.allocated_bytes:,} allocated"
        )
    return warnings


def vllm_estimate(
    before: Sample, free_before: int, after: Sample, free_after: int, warmed: list[Warmed]
) -> VllmEstimate:
    """vLLM's estimate, read as vLLM reads it (the drop in free memory across the captures, the
    cache never emptied), and what it is made of."""
    drop = free_before - free_after
    pool = after.encoder.reserved_bytes - before.encoder.reserved_bytes
    held = sum(w.io_bytes for w in warmed)  # inputs and output buffers, both in the default pool
    buffers = sum(w.buffer_bytes for w in warmed)
    default_reserved = (after.reserved_bytes - after.encoder.reserved_bytes) - (
        before.reserved_bytes - before.encoder.reserved_bytes
    )
    return VllmEstimate(
        free_drop_bytes=drop,
        pool_bytes=pool,
        static_input_bytes=held - buffers,
        output_buffer_bytes=buffers,
        cached_bytes=default_reserved - held,
        outside_allocator_bytes=drop - pool - default_reserved,
    )


def release_check(held: Sample, after: Sample) -> ReleaseCheck:
    """What came back once the graphs were dropped, and what still holds what did not."""
    left = after.encoder
    if left.reserved_bytes == 0:
        holder = ""
    elif left.live_bytes:
        holder = f"{left.live_bytes:,} bytes of graph outputs are still referenced, and with them their graphs' pool"
    else:
        holder = "a graph is still referenced somewhere: a live graph keeps its whole pool"
    nvml = difference(held.process_used_bytes, after.process_used_bytes)
    return ReleaseCheck(
        held.encoder.reserved_bytes, left.reserved_bytes, held.reserved_bytes - after.reserved_bytes, nvml, holder
    )
