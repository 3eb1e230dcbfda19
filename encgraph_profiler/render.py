"""Rich tables for the terminal. Rendering only: every figure comes from a Report."""

from __future__ import annotations

from rich.table import Table

from rich.markup import escape

from .schema import PoolName, Report, UnmeasuredBudget
from .units import mib

POOL_TITLES = {
    PoolName.ENCODER_GRAPHS: "encoder graph pool",
    PoolName.DEFAULT: "default pool",
    PoolName.OUTSIDE_ALLOCATOR: "outside the allocator",
}


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _replay(b) -> str:
    if b.replay_matches_eager is None:
        return "n/a"
    return "yes" if b.replay_matches_eager else f"[red]no (max |diff| {_diff(b.replay_max_abs_diff)})[/]"


def budget_table(report: Report) -> Table:
    what = "Predicted encoder CUDA graphs" if report.predicted else "Encoder CUDA graphs"
    table = Table(title=f"{what} per budget: {report.settings.model_label} ({report.provenance.gpu_name})")
    if report.settings.layout:
        table.caption = f"largest budget: {report.settings.layout}"
    for name in ("budget", "items", "patches", "pool growth MiB", "pool total MiB", "static I/O MiB",
                 "non-alloc MiB", "capture ms", "eager ms", "replay ms", "replay = eager"):
        table.add_column(name, justify="left" if name == "replay = eager" else "right")
    rows = sorted([*report.budgets, *report.unmeasured], key=lambda b: b.key)
    for b in rows:
        name = b.key.name
        if isinstance(b, UnmeasuredBudget):  # why it has no figures, across the row
            asked = "" if b.requested_bytes is None else f"; {b.requested_bytes:,} bytes requested"
            table.add_row(name, "", "", f"[red]{b.status.value.replace('_', ' ')}[/]", "", "", "", "", "", "",
                          f"[red]{escape(b.reason)}{asked}[/]")
            continue
        table.add_row(
            name, str(b.items), f"{b.input_patches:,}", mib(b.pool_growth_bytes), mib(b.pool_reserved_bytes),
            mib(b.static_io_bytes), mib(b.non_allocator_bytes, signed=True), _ms(b.capture_ms), _ms(b.eager_ms),
            _ms(b.replay_ms), _replay(b),
        )
    return table


def _diff(value: float | None) -> str:
    return "not finite" if value is None else f"{value:.3g}"


def pool_table(report: Report) -> Table:
    table = Table(title="Memory by pool, predicted (what a GPU run adds outside the allocator is not)" if report.predicted
                  else "Memory by pool (rows add up to what NVML reports for this process)")
    for name in ("pool", "reserved MiB", "live MiB", "segments", "graphs", "made of (MiB)"):
        table.add_column(name, justify="left" if name in ("pool", "made of (MiB)") else "right")
    for p in report.pools:
        parts = ", ".join(f"{k.replace('_', ' ')} {mib(v)}" for k, v in p.parts.items())
        table.add_row(
            POOL_TITLES[p.pool], mib(p.reserved_bytes), mib(p.live_bytes),
            "" if p.segments is None else str(p.segments), "" if p.graphs is None else str(p.graphs), parts,
        )
    table.add_section()
    table.add_row("total", mib(report.total_bytes), "", "", "", f"NVML process used {mib(report.process_used_bytes)}")
    return table


def totals_line(report: Report) -> str:
    encoder = report.pool(PoolName.ENCODER_GRAPHS)
    line = (
        f"Encoder graphs {'would hold (predicted)' if report.predicted else 'hold'} {mib(encoder.reserved_bytes)} MiB ({encoder.reserved_bytes:,} bytes) in "
        f"{encoder.graphs} graph{'' if encoder.graphs == 1 else 's'}; process total {mib(report.total_bytes)} MiB; wall {report.wall_ms / 1000:.1f} s"
    )
    if not report.complete:
        line += f" [incomplete: {len(report.budgets)} of {len(report.settings.budgets)} budgets measured]"
    return line


def release_line(report: Report) -> str | None:
    """What --check-release found, or None without it."""
    release = report.release
    if release is None:
        return None
    nvml = "n/a" if release.nvml_returned_bytes is None else f"{release.nvml_returned_bytes:,}"
    if release.pool_bytes_after == 0:
        return (f"Release: all {release.pool_bytes_before:,} bytes of the encoder pools came back once the graphs were dropped "
                f"(allocator: {release.reserved_returned_bytes:,} bytes returned to the driver; NVML: {nvml})")
    return (f"Release: {release.pool_bytes_after:,} of {release.pool_bytes_before:,} bytes stayed in the encoder pools: "
            f"{release.held_by} (allocator returned {release.reserved_returned_bytes:,}; NVML: {nvml})")


def vllm_estimate_line(report: Report) -> str | None:
    """vLLM's own estimate beside the pool, and what the difference is made of (--as vllm)."""
    est = report.vllm_estimate
    if est is None:
        return None
    return (f"vLLM's estimate (free memory dropped by {mib(est.free_drop_bytes)} MiB, {est.free_drop_bytes:,} bytes) = "
            f"graph pool {mib(est.pool_bytes)} + static inputs {mib(est.static_input_bytes)} + output buffers "
            f"{mib(est.output_buffer_bytes)} + cached warm-up blocks {mib(est.cached_bytes)} + outside the allocator "
            f"{mib(est.outside_allocator_bytes)} MiB")
