"""``encgraph check``: compare two profile reports, figure by figure. No torch.

A figure regresses when current > baseline + max(relative x baseline, absolute), and improves when
current < baseline - max(relative x baseline, absolute). Defaults: 5% and 8 MiB.

A gate must never pass what it cannot vouch for: a report that is incomplete (budgets not
measured, a run stopped early), has no budgets, or whose replay differed from eager is refused
with its own exit code, unless the caller allows it explicitly; a budget the baseline has and the
current report lacks fails the gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .errors import ExitCode, NotGateable, ReportError, UsageError
from .report_relations import clipped
from .schema import Report, Settings, StopReason
from .units import MiB, listed, parse_percent, parse_size

BUDGET_FIGURES = ("pool_reserved_bytes", "pool_growth_bytes", "static_io_bytes", "non_allocator_bytes")
POOL_FIGURE = "reserved_bytes"
TOTAL_FIGURE = "total_bytes"
FIGURES = (*BUDGET_FIGURES, POOL_FIGURE, TOTAL_FIGURE)

DEFAULT_RELATIVE = 0.05
DEFAULT_ABSOLUTE_BYTES = 8 * MiB


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
    rel, rel_by = _by_figure(relative, lambda text: parse_percent(text, "--tolerance"), DEFAULT_RELATIVE)
    abs_, abs_by = _by_figure(absolute, lambda text: parse_size(text, "--tolerance-abs"), DEFAULT_ABSOLUTE_BYTES)
    return Tolerance(rel, abs_, rel_by, abs_by)


class RowStatus(str, Enum):
    PASS = "pass"
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NOT_AVAILABLE = "n/a"  # one side could not measure the figure (NVML hidden)
    ONLY_IN_BASELINE = "only in baseline"  # the current report lacks the budget: fails the gate
    ONLY_IN_CURRENT = "only in current"


@dataclass(frozen=True)
class Row:
    scope: str  # "budget 8192", "pool encoder_graphs", "total"
    figure: str
    baseline: int | None
    current: int | None
    allowed_bytes: int | None
    status: RowStatus

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
    allowed_problems: tuple[str, ...] = ()  # what --allow-incomplete let through

    @property
    def regressions(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.status is RowStatus.REGRESSION)

    @property
    def improvements(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.status is RowStatus.IMPROVEMENT)

    @property
    def missing(self) -> tuple[Row, ...]:
        """Budgets the baseline measured and the current report did not."""
        return tuple(r for r in self.rows if r.status is RowStatus.ONLY_IN_BASELINE and not self.allowed_problems)

    @property
    def passed(self) -> bool:
        return not self.regressions and not self.missing and not (self.fail_on_improvement and self.improvements)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.REGRESSION

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"environment differs (allowed): {m}" for m in self.fingerprint_mismatches) + tuple(
            f"compared although {p} (allowed)" for p in self.allowed_problems
        )


@dataclass(frozen=True)
class Assessment:
    """Whether a report vouches for every figure it was asked for, and the exit code that follows
    for the command that made it. Each problem is a clause that reads after "the run" or "the
    current report": "did not measure budget 256 (out of memory)"."""

    exit_code: ExitCode
    problems: tuple[str, ...]

    @property
    def acceptable(self) -> bool:
        return not self.problems


_STOPPED = {StopReason.SIGINT: ExitCode.INTERRUPTED, StopReason.SIGTERM: ExitCode.TERMINATED}


def assess(report: Report) -> Assessment:
    """The one judgement of a report: a run stopped by a signal exits with the signal's code; a
    budget not measured, or a replay that differed from eager, with CAPTURE; a gate refuses any
    report with a problem (NOT_GATEABLE, see ``compare``)."""
    problems = []
    if not report.budgets:
        problems.append("has no measured budgets")
    if report.stopped_by:
        problems.append(
            f"stopped early ({report.stopped_by}) after {len(report.budgets)} of {len(report.settings.budgets)} budgets"
        )
    not_measured = [f"{u.label} ({u.status.words})" for u in report.unmeasured]
    if not_measured:
        problems.append(f"did not measure budget {listed(not_measured)}")
    if report.replay_mismatches:
        problems.append(f"has graphs whose replay differed from eager at budget {listed(report.replay_mismatches)}")
    if not problems:
        return Assessment(ExitCode.OK, ())
    return Assessment(
        _STOPPED.get(report.stopped_by, ExitCode.CAPTURE) if report.stopped_by else ExitCode.CAPTURE, tuple(problems)
    )


def runs_exit_code(codes: list[int]) -> ExitCode:
    """The exit code of several runs (``compare``'s strategies, ``sweep``'s cells): OK when every
    run measured everything; ENVIRONMENT when one could not run here (no GPU, say); else CAPTURE."""
    if all(code == ExitCode.OK for code in codes):
        return ExitCode.OK
    return ExitCode.ENVIRONMENT if ExitCode.ENVIRONMENT in codes else ExitCode.CAPTURE


def _settings_fingerprint(settings: Settings) -> dict[str, object]:
    return {
        "model": settings.model,
        "dtype": settings.dtype,
        "attn": settings.attn,
        "budgets": tuple(settings.budgets),
        "max_items": settings.max_items,
        "pool": settings.pool,
        "order": settings.order,
        "capture": settings.capture,
        "max_frames_per_batch": settings.max_frames_per_batch,
    }


def fingerprint(report: Report) -> dict[str, object]:
    """What two reports must share to be compared: the measurement's settings and environment."""
    p = report.provenance
    return {
        **_settings_fingerprint(report.settings),
        "gpu": p.gpu_name,
        "torch": p.torch,
        "transformers": p.transformers,
        "allocator_conf": p.allocator_conf,
        "predicted": report.predicted,
    }


def settings_mismatches(baseline: Report, settings: Settings) -> tuple[str, ...]:
    """The differences a run with ``settings`` would show against ``baseline``, known before it runs."""
    base, cur = _settings_fingerprint(baseline.settings), _settings_fingerprint(settings)
    return tuple(f"{k}: {clipped(base[k])} -> {clipped(cur[k])}" for k in base if base[k] != cur[k])


def _row(scope: str, figure: str, baseline: int | None, current: int | None, tolerance: Tolerance) -> Row:
    if baseline is None or current is None:
        return Row(scope, figure, baseline, current, None, RowStatus.NOT_AVAILABLE)
    allowed = tolerance.allowed_bytes(figure, baseline)
    if current > baseline + allowed:
        status = RowStatus.REGRESSION
    elif current < baseline - allowed:
        status = RowStatus.IMPROVEMENT
    else:
        status = RowStatus.PASS
    return Row(scope, figure, baseline, current, allowed, status)


def compare(
    baseline: Report,
    current: Report,
    tolerance: Tolerance = Tolerance(),
    allow_env_mismatch: bool = False,
    fail_on_improvement: bool = False,
    allow_incomplete: bool = False,
) -> CheckResult:
    """Compare ``current`` with ``baseline``. Raises NotGateable for a report that cannot vouch for
    its figures (see ``assess``) unless ``allow_incomplete``, and ReportError for reports made
    under different conditions unless ``allow_env_mismatch``."""
    if baseline.predicted != current.predicted:
        kinds = {True: "predicted (`encgraph predict`)", False: "measured (`encgraph profile`)"}
        raise ReportError(
            f"the baseline was {kinds[baseline.predicted]} and the current report {kinds[current.predicted]}: check "
            "never gates a measurement against a prediction, --allow-env-mismatch included; gate predictions against "
            "predictions and measurements against measurements, or set the two side by side with "
            "`encgraph report A.json B.json`"
        )
    problems = tuple(
        f"the {role} report {problem}"
        for role, report in (("baseline", baseline), ("current", current))
        for problem in assess(report).problems
    )
    if problems and not allow_incomplete:
        raise NotGateable(
            f"{'; '.join(problems)}: a gate cannot pass it; re-run `encgraph profile`, or pass --allow-incomplete "
            "to compare what was measured"
        )
    base_fp, cur_fp = fingerprint(baseline), fingerprint(current)
    mismatches = tuple(
        f"{k}: {clipped(base_fp[k])} -> {clipped(cur_fp[k])}" for k in base_fp if base_fp[k] != cur_fp[k]
    )
    if mismatches and not allow_env_mismatch:
        raise ReportError(
            f"the reports were made under different conditions ({'; '.join(mismatches)}); "
            "refresh the baseline, or pass --allow-env-mismatch to compare anyway"
        )
    rows = (*_budget_rows(baseline, current, tolerance), *_pool_rows(baseline, current, tolerance))
    return CheckResult(current.settings.model, rows, mismatches, fail_on_improvement, problems)


def _budget_rows(baseline: Report, current: Report, tolerance: Tolerance) -> list[Row]:
    """Each budget's figures, path by path, largest first; a budget on one side only is one row."""
    rows: list[Row] = []
    base = {b.key: b for b in baseline.budgets}
    cur = {b.key: b for b in current.budgets}
    for key in sorted(set(base) | set(cur), key=lambda k: (k.path, -k.budget)):
        scope = f"budget {key.label}"
        if key not in cur:
            rows.append(
                Row(scope, "pool_reserved_bytes", base[key].pool_reserved_bytes, None, None, RowStatus.ONLY_IN_BASELINE)
            )
        elif key not in base:
            rows.append(
                Row(scope, "pool_reserved_bytes", None, cur[key].pool_reserved_bytes, None, RowStatus.ONLY_IN_CURRENT)
            )
        else:
            rows += [_row(scope, f, getattr(base[key], f), getattr(cur[key], f), tolerance) for f in BUDGET_FIGURES]
    return rows


def _pool_rows(baseline: Report, current: Report, tolerance: Tolerance) -> list[Row]:
    """Each pool's reserved bytes, then the process total."""
    before = {p.pool: p.reserved_bytes for p in baseline.pools}
    rows = [
        _row(f"pool {p.pool.value}", POOL_FIGURE, before.get(p.pool), p.reserved_bytes, tolerance)
        for p in current.pools
    ]
    return [*rows, _row("total", TOTAL_FIGURE, baseline.total_bytes, current.total_bytes, tolerance)]
