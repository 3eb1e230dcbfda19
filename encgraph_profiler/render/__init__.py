"""Every table and line the commands show on a terminal. Rendering only: each figure comes from a
report, a check result, a plan or a graph count, and every piece of text from them is shown as it
is, never read as rich markup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..schema import BudgetResult, PoolName, Report, UnmeasuredBudget
from ..units import gib, listed, mib

if TYPE_CHECKING:
    from ..check import CheckResult
    from ..graphcounts import GraphCounts
    from ..plan import CapacityPlan, PlanInputs
    from ..sweep import CellResult

POOL_TITLES = {
    PoolName.ENCODER_GRAPHS: "encoder graph pool",
    PoolName.DEFAULT: "default pool",
    PoolName.OUTSIDE_ALLOCATOR: "outside the allocator",
}

Cell = str | Text


def new_table(
    title: str | None, columns: Sequence[str], right: Sequence[str] = (), caption: str | None = None
) -> Table:
    """A table whose title, caption and column names are shown as given; ``right`` are right-aligned."""
    table = Table(title=None if title is None else escape(title), caption=None if caption is None else escape(caption))
    for name in columns:
        table.add_column(escape(name), justify="right" if name in right else "left")
    return table


def new_row(table: Table, *cells: Cell) -> None:
    """A row whose text is shown as it is; a Text cell keeps its style."""
    table.add_row(*(cell if isinstance(cell, Text) else escape(cell) for cell in cells))


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _diff(value: float | None) -> str:
    return "not finite" if value is None else f"{value:.3g}"


def _replay(b: BudgetResult) -> Cell:
    if b.replay_matches_eager is None:
        return "n/a"
    return "yes" if b.replay_matches_eager else Text(f"no (max |diff| {_diff(b.replay_max_abs_diff)})", style="red")


# -- profile and predict ----------------------------------------------------------------------------

_BUDGET_COLUMNS = (
    "budget",
    "items",
    "patches",
    "pool growth MiB",
    "pool total MiB",
    "static I/O MiB",
    "non-alloc MiB",
    "capture ms",
    "eager ms",
    "replay ms",
    "replay = eager",
)


def budget_table(report: Report) -> Table:
    what = "Predicted encoder CUDA graphs" if report.predicted else "Encoder CUDA graphs"
    # A prediction runs nothing: no times, no replay, nothing outside the allocator, so no such columns.
    columns = _BUDGET_COLUMNS[:6] if report.predicted else _BUDGET_COLUMNS
    table = new_table(
        f"{what} per budget: {report.settings.model_label} ({report.provenance.gpu_name})",
        columns,
        right=_BUDGET_COLUMNS[:-1],
        caption=f"largest budget: {report.settings.layout}" if report.settings.layout else None,
    )
    rows: list[BudgetResult | UnmeasuredBudget] = [*report.budgets, *report.unmeasured]
    for b in sorted(rows, key=lambda row: row.key.order):
        if isinstance(b, UnmeasuredBudget):  # why it has no figures, across the row
            asked = "" if b.requested_bytes is None else f"; {b.requested_bytes:,} bytes requested"
            cells: list[Cell] = [b.key.name, "", "", Text(b.status.words, style="red"), *[""] * 6]
            new_row(table, *cells[: len(columns) - 1], Text(f"{b.reason}{asked}", style="red"))
            continue
        cells = [
            b.key.name,
            str(b.items),
            f"{b.input_patches:,}",
            mib(b.pool_growth_bytes),
            mib(b.pool_reserved_bytes),
            mib(b.static_io_bytes),
            mib(b.non_allocator_bytes, signed=True),
            _ms(b.capture_ms),
            _ms(b.eager_ms),
            _ms(b.replay_ms),
            _replay(b),
        ]
        new_row(table, *cells[: len(columns)])
    return table


def pool_table(report: Report) -> Table:
    title = (
        "Memory by pool, predicted (what a GPU run adds outside the allocator is not)"
        if report.predicted
        else "Memory by pool (rows add up to what NVML reports for this process)"
    )
    table = new_table(
        title,
        ("pool", "reserved MiB", "live MiB", "segments", "graphs", "made of (MiB)"),
        right=("reserved MiB", "live MiB", "segments", "graphs"),
    )
    for p in report.pools:
        parts = ", ".join(f"{k.replace('_', ' ')} {mib(v)}" for k, v in p.parts.items())
        new_row(
            table,
            POOL_TITLES[p.pool],
            mib(p.reserved_bytes),
            mib(p.live_bytes),
            "" if p.segments is None else str(p.segments),
            "" if p.graphs is None else str(p.graphs),
            parts,
        )
    table.add_section()
    new_row(table, "total", mib(report.total_bytes), "", "", "", f"NVML process used {mib(report.process_used_bytes)}")
    return table


def totals_line(report: Report) -> str:
    encoder = report.pool(PoolName.ENCODER_GRAPHS)
    hold = "would hold (predicted)" if report.predicted else "hold"
    graphs = f"{encoder.graphs} graph{'' if encoder.graphs == 1 else 's'}"
    line = (
        f"Encoder graphs {hold} {mib(encoder.reserved_bytes)} MiB ({encoder.reserved_bytes:,} bytes) in {graphs}; "
        f"process total {mib(report.total_bytes)} MiB; wall {report.wall_ms / 1000:.1f} s"
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
        return (
            f"Release: all {release.pool_bytes_before:,} bytes of the encoder pools came back once the graphs were "
            f"dropped (allocator: {release.reserved_returned_bytes:,} bytes returned to the driver; NVML: {nvml})"
        )
    return (
        f"Release: {release.pool_bytes_after:,} of {release.pool_bytes_before:,} bytes stayed in the encoder pools: "
        f"{release.held_by} (allocator returned {release.reserved_returned_bytes:,}; NVML: {nvml})"
    )


def vllm_estimate_line(report: Report) -> str | None:
    """vLLM's own estimate beside the pool, and what the difference is made of (--as vllm)."""
    est = report.vllm_estimate
    if est is None:
        return None
    cached = (
        f"+ cached warm-up blocks {mib(est.cached_bytes)}"
        if est.cached_bytes >= 0
        else f"- room the weights' segments already had {mib(-est.cached_bytes)}"
    )
    return (
        f"vLLM's estimate (free memory dropped by {mib(est.free_drop_bytes)} MiB, {est.free_drop_bytes:,} bytes) = "
        f"graph pool {mib(est.pool_bytes)} + static inputs {mib(est.static_input_bytes)} + output buffers "
        f"{mib(est.output_buffer_bytes)} {cached} + outside the allocator {mib(est.outside_allocator_bytes)} MiB"
    )


def report_view(report: Report) -> list[RenderableType]:
    """What `profile` and `predict` show: the two tables, the totals, and what the run adds."""
    lines = [
        totals_line(report),
        release_line(report),
        vllm_estimate_line(report),
        None if report.predicted else report.graph_counts.line,
    ]
    return [budget_table(report), pool_table(report), *(line for line in lines if line is not None)]


# -- check ------------------------------------------------------------------------------------------


CHECK_ROWS = 60  # more, and the table shows what did not pass, then how many rows it left out


def check_table(result: CheckResult) -> Table:
    from ..check import RowStatus
    from ..check_formats import percent

    style = {
        RowStatus.PASS: "green",
        RowStatus.REGRESSION: "bold red",
        RowStatus.IMPROVEMENT: "cyan",
        RowStatus.NOT_AVAILABLE: "dim",
        RowStatus.ONLY_IN_BASELINE: "bold red",
        RowStatus.ONLY_IN_CURRENT: "yellow",
    }
    columns = ("status", "scope", "figure", "baseline MiB", "current MiB", "delta MiB", "delta %")
    table = new_table(f"encgraph check: {result.model}", columns, right=columns[3:])
    rows = result.rows
    if len(rows) > CHECK_ROWS:  # a long ladder: what did not pass, the pools and the total
        rows = tuple(r for r in rows if r.status is not RowStatus.PASS or not r.scope.startswith("budget "))
        rows = rows[:CHECK_ROWS]
    for r in rows:
        new_row(
            table,
            Text(r.status.value, style=style[r.status]),
            r.scope,
            r.figure,
            mib(r.baseline),
            mib(r.current),
            "" if r.delta is None else mib(r.delta, signed=True),
            percent(r),
        )
    if len(rows) < len(result.rows):
        hidden = len(result.rows) - len(rows)
        new_row(table, "", f"{hidden:,} more rows", "(--format json lists every row)", "", "", "", "")
    return table


def check_verdict(result: CheckResult) -> list[Text]:
    """The gate's last lines, for stderr: what is missing or regressed, and whether it passed."""
    from ..check_formats import percent

    lines = []
    if result.missing:
        scopes = listed(r.scope for r in result.missing)
        lines.append(Text.assemble(("missing:", "red"), f" {scopes} measured in the baseline only"))
    if result.regressions:
        names = listed(f"{r.scope} {r.figure} ({percent(r)})" for r in result.regressions)
        lines.append(Text.assemble(("regression:", "red"), f" {names}"))
    elif not result.passed and not result.missing:
        lines.append(
            Text.assemble(
                ("failed:", "red"), " figures improved beyond tolerance (--fail-on-improvement): refresh the baseline"
            )
        )
    if result.passed:
        lines.append(Text("passed", style="green"))
    return lines


# -- compare and sweep ------------------------------------------------------------------------------


def compare_table(reports: dict[str, Report | None], totals: dict[str, int | None], budgets: list[int]) -> Table:
    """Each strategy's encoder pool after each budget's capture, its total, and the total against vLLM's."""
    table = new_table(
        "Encoder graph pool by strategy (MiB after each budget's capture)",
        ["budget", *reports],
        right=["budget", *reports],
    )
    for budget in budgets:
        cells = []
        for report in reports.values():
            row = next((b for b in report.budgets if b.budget == budget), None) if report else None
            cells.append(mib(row.pool_reserved_bytes) if row else "n/a")
        new_row(table, f"{budget:,}", *cells)
    table.add_section()
    new_row(table, "total", *["failed" if total is None else mib(total) for total in totals.values()])
    base = totals.get("vllm")
    if base:
        new_row(
            table, "vs vllm", *["" if total is None else f"{(total - base) / base:+.1%}" for total in totals.values()]
        )
    return table


def _where(r: CellResult) -> str:
    """Where a cell ran: the compute capability it was predicted for, or its GPU (on its Ray node)."""
    if r.cell.capability is not None:
        return "cc {}.{}".format(*r.cell.capability)
    gpu = r.gpu or "-"
    return f"{r.node} GPU {gpu}" if r.node else gpu


def sweep_table(results: Sequence[CellResult], pools: Sequence[int | None]) -> Table:
    """One row per cell: what it ran, where, its encoder pool (``pools``, in the same order) and its result."""
    table = new_table(
        "Sweep",
        ("model", "budgets", "strategy", "GPU", "encoder pool MiB", "seconds", "result"),
        right=("encoder pool MiB", "seconds"),
    )
    for r, pool in zip(results, pools, strict=True):
        new_row(
            table,
            r.cell.model,
            ",".join(map(str, r.cell.budgets)),
            r.cell.strategy,
            _where(r),
            mib(pool),
            f"{r.wall_s:.1f}",
            "ok" if r.exit_code == 0 else f"exit {r.exit_code}: {r.message}",
        )
    return table


# -- plan and graphs --------------------------------------------------------------------------------


def plan_table(plan: CapacityPlan) -> Table:
    table = new_table(
        f"Capacity plan: {plan.model} on {plan.gpu}", ("", "term", "GiB", "bytes", "source"), right=("GiB", "bytes")
    )
    for i, term in enumerate(plan.terms):
        new_row(table, "" if i == 0 else "-", term.name, gib(term.bytes), f"{term.bytes:,}", term.source)
    table.add_section()
    if plan.kv_cache_bytes >= 0:
        new_row(table, "=", "KV cache", gib(plan.kv_cache_bytes), f"{plan.kv_cache_bytes:,}", "derived")
    else:  # the terms take more than was requested: no KV cache, and by how much they are over
        over = -plan.kv_cache_bytes
        new_row(table, "=", "KV cache: none, the terms exceed the request by", gib(over), f"{over:,}", "derived")
    if plan.kv_bytes_per_token:
        new_row(table, "/", "KV bytes per token", "", f"{plan.kv_bytes_per_token:,}", "config")
        new_row(table, "=", "KV tokens", "", f"{plan.kv_tokens:,}", "derived")
        new_row(table, "/", "max model len", "", f"{plan.max_model_len:,}", plan.max_model_len_source)
        new_row(table, "=", "concurrent max-length requests", "", f"{plan.concurrency:.2f}", "derived")
    return table


def plan_lines(plan: CapacityPlan) -> list[Cell]:
    """Under the plan's table: the verdict, what would fit instead, and the vLLM flags."""
    lines: list[Cell] = [Text(plan.verdict, style="green" if plan.fits else "bold red")]
    if not plan.fits:
        if plan.fitting_ladder:
            lines.append(
                f"largest ladder of this report that fits (pool estimated): {','.join(map(str, plan.fitting_ladder))}"
            )
        elif plan.fitting_ladder == ():
            lines.append("only without encoder graphs would it fit")
        else:
            lines.append("no ladder of this report fits, nor does running without encoder graphs")
    if plan.tokens_per_graph_gib:
        lines.append(f"each GiB of graph pool costs {plan.tokens_per_graph_gib:,} KV tokens")
    if plan.fits:
        lines.append(
            "vLLM flags (--kv-cache-memory is an upper bound: see the activation note):"
            if plan.kv_is_upper_bound
            else "vLLM flags:"
        )
        lines.append(f"  {plan.vllm_flags}")
    return lines


def what_if_table(scenarios: Sequence[PlanInputs], plans: Sequence[CapacityPlan]) -> Table:
    table = new_table("What if", ("GPU", "utilization", "KV cache GiB", "KV tokens", "requests", "verdict"))
    for s, p in zip(scenarios, plans, strict=True):
        new_row(
            table,
            s.gpu,
            f"{s.utilization:g}",
            gib(max(p.kv_cache_bytes, 0)),
            "" if p.kv_tokens is None else f"{p.kv_tokens:,}",
            "" if p.concurrency is None else f"{p.concurrency:.2f}",
            p.verdict,
        )
    return table


def graphs_table(counts: GraphCounts, encoder_items: int | None) -> Table:
    """vLLM's graphs by kind: how many, the largest and smallest size, and every size."""
    table = new_table(None, ("mode", "graphs", "largest", "smallest", "sizes"), right=("graphs", "largest", "smallest"))
    for g in counts.groups:
        sizes = ", ".join(map(str, g.sizes))
        if g.cases > 1:
            sizes += f"  (x{g.cases} LoRA cases)"
        if g.kind == "ENCODER":
            sizes = f"budgets {sizes}; {encoder_items} images per batch"
        new_row(table, g.kind, str(g.count), str(g.largest), str(g.smallest), sizes)
    return table
