"""``encgraph check``: compare two profile reports, figure by figure. No torch.

A figure regresses when current > baseline + max(relative x baseline, absolute), and improves when
current < baseline - max(relative x baseline, absolute). Defaults: 5% and 8 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ExitCode, ReportError, UsageError
from .report import Report
from .units import parse_size

BUDGET_FIGURES = ("pool_reserved_bytes", "pool_growth_bytes", "static_io_bytes", "non_allocator_bytes")
POOL_FIGURE = "reserved_bytes"
TOTAL_FIGURE = "total_bytes"
FIGURES = BUDGET_FIGURES + (POOL_FIGURE, TOTAL_FIGURE)

DEFAULT_RELATIVE = 0.05
DEFAULT_ABSOLUTE_BYTES = 8 * 1024**2


@dataclass(frozen=True)
class Tolerance:
    relative: float = DEFAULT_RELATIVE
    absolute_bytes: int = DEFAULT_ABSOLUTE_BYTES
    relative_by_figure: dict[str, float] = field(default_factory=dict)
    absolute_by_figure: dict[str, int] = field(default_factory=dict)

    def allowed_bytes(self, figure: str, baseline: int) -> int:
        relative = self.relative_by_figure.get(figure, self.relative)
        absolute = self.absolute_by_figure.get(figure, self.absolute_bytes)
        return max(int(relative * abs(baseline)), absolute)


def _parse_fraction(text: str) -> float:
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageError(f"cannot read tolerance {text!r}: use a percentage such as 5% (or 0.05)") from None
    if value < 0:
        raise UsageError(f"tolerance {text!r} cannot be negative")
    return value


def _split_figure(text: str) -> tuple[str | None, str]:
    if "=" not in text:
        return None, text
    figure, value = text.split("=", 1)
    figure = figure.strip()
    if figure not in FIGURES:
        raise UsageError(f"unknown figure {figure!r} in a tolerance; figures are {', '.join(FIGURES)}")
    return figure, value


def _by_figure(items: list[str], parse, default):
    """A global value (``5%``) and per-figure values (``pool_reserved_bytes=2%``) from one option."""
    value, by_figure = default, {}
    for item in items:
        figure, text = _split_figure(item)
        if figure is None:
            value = parse(text)
        else:
            by_figure[figure] = parse(text)
    return value, by_figure


def parse_tolerance(relative: list[str], absolute: list[str]) -> Tolerance:
    """``--tolerance 5%`` / ``--tolerance pool_reserved_bytes=2%`` and
    ``--tolerance-abs 16MiB`` / ``--tolerance-abs static_io_bytes=1MiB``, each repeatable."""
    rel, rel_by = _by_figure(relative, _parse_fraction, DEFAULT_RELATIVE)
    abs_, abs_by = _by_figure(absolute, parse_size, DEFAULT_ABSOLUTE_BYTES)
    return Tolerance(rel, abs_, rel_by, abs_by)


@dataclass(frozen=True)
class Row:
    scope: str  # "budget 8192", "pool encoder_graphs", "total"
    figure: str
    baseline: int | None
    current: int | None
    allowed_bytes: int | None
    status: str  # pass, regression, improvement, n/a, only in baseline, only in current

    @property
    def delta(self) -> int | None:
        return None if self.baseline is None or self.current is None else self.current - self.baseline

    @property
    def delta_fraction(self) -> float | None:
        return None if self.delta is None or not self.baseline else self.delta / self.baseline


@dataclass(frozen=True)
class CheckResult:
    model: str
    rows: tuple[Row, ...]
    fingerprint_mismatches: tuple[str, ...]
    fail_on_improvement: bool

    @property
    def regressions(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.status == "regression")

    @property
    def improvements(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.status == "improvement")

    @property
    def passed(self) -> bool:
        return not self.regressions and not (self.fail_on_improvement and self.improvements)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.REGRESSION

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"environment differs (allowed): {m}" for m in self.fingerprint_mismatches)


def fingerprint(report: Report) -> dict[str, object]:
    s, p = report.settings, report.provenance
    return {
        "model": s.model, "dtype": s.dtype, "attn": s.attn, "budgets": tuple(s.budgets), "max_items": s.max_items,
        "gpu": p.gpu_name, "torch": p.torch, "transformers": p.transformers,
    }


def _row(scope: str, figure: str, baseline: int | None, current: int | None, tolerance: Tolerance) -> Row:
    if baseline is None or current is None:
        return Row(scope, figure, baseline, current, None, "n/a")
    allowed = tolerance.allowed_bytes(figure, baseline)
    if current > baseline + allowed:
        status = "regression"
    elif current < baseline - allowed:
        status = "improvement"
    else:
        status = "pass"
    return Row(scope, figure, baseline, current, allowed, status)


def compare(
    baseline: Report, current: Report, tolerance: Tolerance = Tolerance(), allow_env_mismatch: bool = False,
    fail_on_improvement: bool = False,
) -> CheckResult:
    base_fp, cur_fp = fingerprint(baseline), fingerprint(current)
    mismatches = tuple(f"{k}: {base_fp[k]} -> {cur_fp[k]}" for k in base_fp if base_fp[k] != cur_fp[k])
    if mismatches and not allow_env_mismatch:
        raise ReportError(
            f"the reports were made under different conditions ({'; '.join(mismatches)}); "
            "refresh the baseline, or pass --allow-env-mismatch to compare anyway"
        )
    rows: list[Row] = []
    base_budgets = {b.budget: b for b in baseline.budgets}
    cur_budgets = {b.budget: b for b in current.budgets}
    for budget in sorted(set(base_budgets) | set(cur_budgets), reverse=True):
        scope = f"budget {budget}"
        if budget not in cur_budgets:
            rows.append(Row(scope, "pool_reserved_bytes", base_budgets[budget].pool_reserved_bytes, None, None, "only in baseline"))
            continue
        if budget not in base_budgets:
            rows.append(Row(scope, "pool_reserved_bytes", None, cur_budgets[budget].pool_reserved_bytes, None, "only in current"))
            continue
        for figure in BUDGET_FIGURES:
            rows.append(_row(scope, figure, getattr(base_budgets[budget], figure), getattr(cur_budgets[budget], figure), tolerance))
    base_pools = {p.pool: p for p in baseline.pools}
    for pool in current.pools:
        before = base_pools.get(pool.pool)
        rows.append(_row(f"pool {pool.pool}", POOL_FIGURE, before.reserved_bytes if before else None, pool.reserved_bytes, tolerance))
    rows.append(_row("total", TOTAL_FIGURE, baseline.total_bytes, current.total_bytes, tolerance))
    return CheckResult(current.settings.model, tuple(rows), mismatches, fail_on_improvement)
