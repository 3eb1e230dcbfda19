"""Serialized forms of a check result: Markdown for pull requests, JSON, and the two formats
dashboards read (Bencher Metric Format, github-action-benchmark's customSmallerIsBetter)."""

from __future__ import annotations

import json

from .check import CheckResult, Row
from .units import mib

STATUS_MARK = {"pass": "✅ pass", "regression": "❌ regression", "improvement": "⬇️ improvement", "n/a": "n/a",
               "only in baseline": "➖ only in baseline", "only in current": "➕ only in current"}


def _percent(row: Row) -> str:
    return "" if row.delta_fraction is None else f"{row.delta_fraction:+.1%}"


def markdown(result: CheckResult) -> str:
    verdict = "passed" if result.passed else "failed"
    lines = [
        f"### encgraph check {verdict}: {result.model}",
        "",
        f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s).",
        "",
        "| status | scope | figure | baseline MiB | current MiB | delta MiB | delta % |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in result.rows:
        delta = "" if r.delta is None else mib(r.delta, signed=True)
        lines.append(
            f"| {STATUS_MARK[r.status]} | {r.scope} | `{r.figure}` | {mib(r.baseline)} | {mib(r.current)} | {delta} | {_percent(r)} |"
        )
    lines += [f"> {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def as_json(result: CheckResult) -> str:
    data = {
        "passed": result.passed,
        "model": result.model,
        "regressions": len(result.regressions),
        "improvements": len(result.improvements),
        "warnings": list(result.warnings),
        "rows": [
            {"scope": r.scope, "figure": r.figure, "status": r.status, "baseline": r.baseline, "current": r.current,
             "delta": r.delta, "allowed": r.allowed_bytes}
            for r in result.rows
        ],
    }
    return json.dumps(data, indent=2) + "\n"


def _slug(row: Row) -> str:
    return row.scope.replace(" ", "-")


def bencher(result: CheckResult) -> str:
    """Bencher Metric Format: {benchmark: {measure: {value}}}, current figures in bytes."""
    data: dict[str, dict] = {}
    for r in result.rows:
        if r.current is None:
            continue
        data.setdefault(f"{result.model}/{_slug(r)}", {})[r.figure.replace("_", "-")] = {"value": r.current}
    return json.dumps(data, indent=2) + "\n"


def github_benchmark(result: CheckResult) -> str:
    """github-action-benchmark ``customSmallerIsBetter``: a list of {name, unit, value}."""
    data = [
        {"name": f"{result.model} {r.scope} {r.figure}", "unit": "bytes", "value": r.current,
         "extra": f"baseline {r.baseline}; status {r.status}"}
        for r in result.rows
        if r.current is not None
    ]
    return json.dumps(data, indent=2) + "\n"


FORMATS = {"markdown": markdown, "json": as_json, "bencher": bencher, "github": github_benchmark}
