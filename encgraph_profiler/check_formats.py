"""Serialized forms of a check result: Markdown for pull requests, JSON, and the two formats
dashboards read (Bencher Metric Format, github-action-benchmark's customSmallerIsBetter)."""

from __future__ import annotations

import json

from .check import CheckResult, Row, RowStatus
from .units import mib

STATUS_MARK = {
    RowStatus.PASS: "✅ pass",
    RowStatus.REGRESSION: "❌ regression",
    RowStatus.IMPROVEMENT: "⬇️ improvement",
    RowStatus.NOT_AVAILABLE: "n/a",
    RowStatus.ONLY_IN_BASELINE: "\N{HEAVY MINUS SIGN} only in baseline",
    RowStatus.ONLY_IN_CURRENT: "\N{HEAVY PLUS SIGN} only in current",
}


def percent(row: Row) -> str:
    """The change as a percentage of the baseline ("from 0" where the baseline is 0); a change that
    rounds to nothing is 0.0%, never -0.0%."""
    if row.delta is None:
        return ""
    if not row.baseline:
        return "from 0" if row.delta else ""
    shown = round(row.delta / row.baseline, 3)
    return f"{shown:+.1%}" if shown else "0.0%"


def markdown(result: CheckResult) -> str:
    verdict = "passed" if result.passed else "failed"
    lines = [
        f"### encgraph check {verdict}: {result.model}",
        "",
        f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s)"
        + (f", {len(result.missing)} budget(s) missing." if result.missing else "."),
        "",
        "| status | scope | figure | baseline MiB | current MiB | delta MiB | delta % |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in result.rows:
        delta = "" if r.delta is None else mib(r.delta, signed=True)
        lines.append(
            f"| {STATUS_MARK[r.status]} | {r.scope} | `{r.figure}` | {mib(r.baseline)} | {mib(r.current)} | {delta} | "
            f"{percent(r)} |"
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
            {
                "scope": r.scope,
                "figure": r.figure,
                "status": r.status.value,
                "baseline": r.baseline,
                "current": r.current,
                "delta": r.delta,
                "allowed": r.allowed_bytes,
            }
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
        {
            "name": f"{result.model} {r.scope} {r.figure}",
            "unit": "bytes",
            "value": r.current,
            "extra": f"baseline {r.baseline}; status {r.status.value}",
        }
        for r in result.rows
        if r.current is not None
    ]
    return json.dumps(data, indent=2) + "\n"


FORMATS = {"markdown": markdown, "json": as_json, "bencher": bencher, "github": github_benchmark}
