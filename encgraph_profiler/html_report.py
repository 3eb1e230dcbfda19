"""One self-contained HTML page for one or more reports: bar charts drawn as inline SVG by this
module (no script, no network at view time) and the tables. No torch.

Charts: per report, each budget's encoder-pool bytes after its capture and its static I/O (bars side
by side), and the per-pool split of the process's memory (one stacked bar); across reports, the
encoder pool per budget, report beside report, and each report's whole pool. Every bar carries its
exact byte count in ``data-bytes``, which the page's tests read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from .render import POOL_TITLES
from .schema import PoolName, Report
from .units import counted, listed, mib

COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


@dataclass(frozen=True)
class Bar:
    group: str  # the x-axis label the bar stands in ("8192", or a report's label)
    series: str  # what the bar measures, shown in the legend
    value_bytes: int
    report: int  # index of the report it comes from


def _bar_chart(title: str, bars: list[Bar], series: list[str], chart_id: str) -> str:
    """Grouped vertical bars, one group per distinct ``group``, one bar per series in it."""
    groups = list(dict.fromkeys(b.group for b in bars))
    top = max((b.value_bytes for b in bars), default=0) or 1
    width, height, left, bottom, gap = 760, 300, 70, 40, 18
    slot = (width - left - 10) / max(len(groups), 1)
    bar_width = max(4.0, (slot - gap) / max(len(series), 1))
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height + 40}" width="{width}" '
        f'height="{height + 40}" '
        f'role="img" aria-label="{escape(title)}">'
    ]
    for step in range(5):  # gridlines at 0, 25, 50, 75, 100 % of the largest bar
        y = height - bottom - (height - bottom - 10) * step / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{mib(round(top * step / 4))}</text>'
        )
    for g, group in enumerate(groups):
        x0 = left + g * slot + gap / 2
        for b in (b for b in bars if b.group == group):
            s = series.index(b.series)
            h = (height - bottom - 10) * b.value_bytes / top
            x, y = x0 + s * bar_width, height - bottom - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_width - 2:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[s % len(COLOURS)]}" data-group="{escape(group)}" data-series="{escape(b.series)}" '
                f'data-report="{b.report}" data-bytes="{b.value_bytes}"><title>{escape(b.series)}, {escape(group)}: '
                f"{b.value_bytes:,} bytes ({mib(b.value_bytes)} MiB)</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + len(series) * bar_width / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'class="axis">{escape(group)}</text>'
        )
    parts.append(f'<text x="{left}" y="{height + 8}" class="axis">MiB</text>')
    for s, name in enumerate(series):
        parts.append(
            f'<rect x="{left + 10 + s * 190}" y="{height + 18}" width="12" height="12" '
            f'fill="{COLOURS[s % len(COLOURS)]}"/>'
            f'<text x="{left + 28 + s * 190}" y="{height + 29}" class="legend">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def _pool_split(report: Report, index: int) -> str:
    """One stacked horizontal bar: the process's memory by pool. A pool not measured (a prediction's
    default pool, memory outside the allocator) has no bar and reads n/a."""
    rows = [(p, p.reserved_bytes) for p in report.pools]
    total = sum(v for _, v in rows if v) or 1
    x, parts = 0.0, []
    for s, (pool, value) in enumerate(rows):
        if value is None:
            continue
        w = 700 * value / total
        parts.append(
            f'<rect class="pool" x="{x:.1f}" y="0" width="{w:.1f}" height="28" fill="{COLOURS[s % len(COLOURS)]}" '
            f'data-pool="{pool.pool.value}" data-report="{index}" data-bytes="{value}"><title>'
            f"{POOL_TITLES[pool.pool]}: {value:,} bytes</title></rect>"
        )
        x += w
    legend = " · ".join(
        f'<span style="color:{COLOURS[s % len(COLOURS)]}">■</span> {POOL_TITLES[p.pool]} '
        + ("n/a" if v is None else f"{mib(v)} MiB")
        for s, (p, v) in enumerate(rows)
    )
    return (
        f'<figure><figcaption>Memory by pool</figcaption><svg class="chart" viewBox="0 0 700 28" width="700" '
        f'height="28">{"".join(parts)}</svg><div class="legend">{legend}</div></figure>'
    )


def _table(report: Report) -> str:
    head = (
        "budget",
        "items",
        "encoder pool MiB",
        "growth MiB",
        "static I/O MiB",
        "outputs MiB",
        "eager peak MiB",
        "capture ms",
        "replay ms",
        "replay = eager",
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{c}</td>"
            for c in (
                b.key.name,
                b.items,
                mib(b.pool_reserved_bytes),
                mib(b.pool_growth_bytes),
                mib(b.static_io_bytes),
                mib(b.output_bytes),
                mib(b.eager_peak_bytes),
                "n/a" if b.capture_ms is None else f"{b.capture_ms:.1f}",
                "n/a" if b.replay_ms is None else f"{b.replay_ms:.2f}",
                {None: "n/a", True: "yes", False: "NO"}[b.replay_matches_eager],
            )
        )
        + "</tr>"
        for b in sorted(report.budgets, key=lambda b: b.key.order)
    )
    missing = "".join(
        f"<tr><td>{u.key.name}</td><td colspan='9'>not measured: {escape(u.status.value)}: {escape(u.reason)}</td></tr>"
        for u in report.unmeasured
    )
    return (
        f"<table><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead><tbody>{rows}{missing}</tbody></table>"
    )


def _section(report: Report, label: str, index: int) -> str:
    p, s = report.provenance, report.settings
    pool = report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    bars = [
        Bar(b.key.name, series, value, index)
        for b in sorted(report.budgets, key=lambda b: b.key.order)
        for series, value in (("encoder pool after capture", b.pool_reserved_bytes), ("static I/O", b.static_io_bytes))
    ]
    status = "complete" if report.complete else "INCOMPLETE"
    layout = f"; {s.layout}" if s.layout else ""
    # A prediction, or a run where NVML was hidden, has no driver or CUDA version: leave them out.
    where = [p.gpu_name] + [f"{name} {value}" for name, value in (("driver", p.driver), ("CUDA", p.cuda)) if value]
    where += [f"torch {p.torch}", f"transformers {p.transformers}", f"encgraph {p.encgraph}", p.created_at]
    hold = "would hold (predicted)" if report.predicted else "hold"
    return (
        f'<section id="report-{index}"><h2>{escape(label)}</h2>'
        f"<p>{escape(s.model_label)} ({escape(s.family)}), {escape(s.dtype)}, {escape(s.attn)}, budgets "
        f"{listed((f'{b:,}' for b in s.budgets), 12)}, {counted(s.max_items, 'items')} per batch{escape(layout)}.<br>"
        f"{escape(', '.join(where))}.<br>"
        f"<strong>Encoder graphs {hold} {mib(pool)} MiB ({pool or 0:,} bytes)</strong>; report {status}.</p>"
        + _bar_chart(
            "Encoder pool and static I/O per budget",
            bars,
            ["encoder pool after capture", "static I/O"],
            f"budgets-{index}",
        )
        + _pool_split(report, index)
        + _table(report)
        + "</section>"
    )


def render(reports: list[tuple[str, Report]], title: str = "encgraph report") -> str:
    """The page for ``reports``, each (label, report)."""
    parts = []
    if len(reports) > 1:
        labels = [label for label, _ in reports]
        per_budget = [
            Bar(b.key.name, label, b.pool_reserved_bytes, i)
            for i, (label, r) in enumerate(reports)
            for b in sorted(r.budgets, key=lambda b: b.key.order)
        ]
        totals = [
            Bar(label, "encoder graph pool", r.pool(PoolName.ENCODER_GRAPHS).reserved_bytes or 0, i)
            for i, (label, r) in enumerate(reports)
        ]
        parts.append(
            '<section id="compare"><h2>Side by side</h2>'
            + _bar_chart("Encoder pool after each budget's capture", per_budget, labels, "compare-budgets")
            + _bar_chart("Encoder graph pool", totals, ["encoder graph pool"], "compare-totals")
            + "</section>"
        )
    parts += [_section(report, label, i) for i, (label, report) in enumerate(reports)]
    style = (
        "body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 24px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
        ".axis,.legend{font-size:11px;fill:#444}figure{margin:12px 0}figcaption{font-weight:600}"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{style}</style></head><body><h1>{escape(title)}</h1>{''.join(parts)}</body></html>\n"
    )
