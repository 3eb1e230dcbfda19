"""The regression gate, built from the committed real report."""

import json
from pathlib import Path

import pytest
from helpers import MiB, grow_largest_pool

from encgraph_profiler import check_formats
from encgraph_profiler.check import Tolerance, assess, compare, parse_tolerance, runs_exit_code
from encgraph_profiler.errors import ExitCode, ReportError, UsageError
from encgraph_profiler.report_io import from_dict

GOLDEN = Path(__file__).parent / "golden"


def _reports(data, fraction):
    return from_dict(data), from_dict(grow_largest_pool(data, fraction))


def test_ten_percent_growth_fails_and_names_budget_and_figure(recorded_report_data):
    base, grown = _reports(recorded_report_data, 0.10)
    result = compare(base, grown)
    assert not result.passed and int(result.exit_code) == 1
    names = {(r.scope, r.figure) for r in result.regressions}
    assert ("budget 8192", "pool_reserved_bytes") in names
    assert ("budget 8192", "pool_growth_bytes") in names
    assert ("pool encoder_graphs", "reserved_bytes") in names


def test_two_percent_growth_passes(recorded_report_data):
    base, grown = _reports(recorded_report_data, 0.02)
    assert compare(base, grown).passed


def test_per_figure_override(recorded_report_data):
    base, grown = _reports(recorded_report_data, 0.02)
    strict = parse_tolerance(["pool_reserved_bytes=1%"], [])
    result = compare(base, grown, strict)
    assert {r.figure for r in result.regressions} == {"pool_reserved_bytes"}
    loose = parse_tolerance(
        ["pool_reserved_bytes=11%", "pool_growth_bytes=11%", "reserved_bytes=11%", "total_bytes=11%"], []
    )
    assert compare(*_reports(recorded_report_data, 0.10), loose).passed


def test_absolute_floor(recorded_report_data):
    # Growth of 6 MiB on the 2.5 GiB pool: under 5% anyway. On static inputs (74.5 MiB) a 6 MiB rise
    # is 8%, but under the 8 MiB floor; with the floor at 1 MiB it fails.
    data = recorded_report_data
    bigger = {**data, "budgets": [dict(b) for b in data["budgets"]]}
    bigger["budgets"][-1]["static_io_bytes"] += 6 * MiB
    base, current = from_dict(data), from_dict(bigger)
    assert compare(base, current).passed
    result = compare(base, current, parse_tolerance([], ["1MiB"]))
    assert [(r.scope, r.figure) for r in result.regressions] == [("budget 8192", "static_io_bytes")]
    assert Tolerance().allowed_bytes("pool_reserved_bytes", 2_000 * MiB) == 100 * MiB


def test_improvements_reported_and_optionally_fatal(recorded_report_data):
    base, grown = _reports(recorded_report_data, 0.10)
    result = compare(grown, base)
    assert result.passed and result.improvements
    assert not compare(grown, base, fail_on_improvement=True).passed


def test_fingerprint_mismatch(recorded_report_data):
    other = {**recorded_report_data, "provenance": {**recorded_report_data["provenance"], "gpu_name": "NVIDIA L4"}}
    with pytest.raises(ReportError, match="gpu: NVIDIA H100 80GB HBM3 -> NVIDIA L4"):
        compare(from_dict(recorded_report_data), from_dict(other))
    result = compare(from_dict(recorded_report_data), from_dict(other), allow_env_mismatch=True)
    assert result.warnings and result.passed


def test_budgets_on_one_side_only(recorded_report_data):
    fewer = {**recorded_report_data, "budgets": recorded_report_data["budgets"][1:]}
    fewer["settings"] = {**fewer["settings"], "budgets": [2048, 4096, 8192]}
    result = compare(from_dict(recorded_report_data), from_dict(fewer), allow_env_mismatch=True)
    assert [r.status for r in result.rows if r.scope == "budget 1024"] == ["only in baseline"]


@pytest.mark.parametrize("bad", [["fast"], ["-5%"], ["pool_bytes=2%"]])
def test_bad_tolerances(bad):
    with pytest.raises(UsageError):
        parse_tolerance(bad, [])


@pytest.mark.parametrize(
    "fmt, golden",
    [
        ("markdown", "check-10pct.md"),
        ("json", "check-10pct.json"),
        ("bencher", "check-10pct.bencher.json"),
        ("github", "check-10pct.github.json"),
    ],
)
def test_formats_match_golden_outputs(recorded_report_data, fmt, golden):
    result = compare(*_reports(recorded_report_data, 0.10))
    assert check_formats.FORMATS[fmt](result) == (GOLDEN / golden).read_text()


def _changed(data, **fields):
    """The report changed by ``fields``, without the derived ``complete`` that they would change."""
    return from_dict({**{k: v for k, v in data.items() if k != "complete"}, "schema_version": 2, **fields})


def test_assess_gives_each_problem_its_exit_code(recorded_report_data):
    """The one judgement of a report: what profile, sweep, compare and the gate act on."""
    data = recorded_report_data
    not_run = [{"budget": 1024, "status": "not_run", "reason": "not run"}]
    cases = {
        "complete": (from_dict(data), ExitCode.OK, ()),
        "SIGINT": (
            _changed(data, stopped_by="SIGINT", budgets=data["budgets"][1:], unmeasured=not_run),
            ExitCode.INTERRUPTED,
            ("stopped early (SIGINT) after 3 of 4 budgets", "did not measure budget 1024 (not run)"),
        ),
        "SIGTERM": (
            _changed(data, stopped_by="SIGTERM", budgets=data["budgets"][1:], unmeasured=not_run),
            ExitCode.TERMINATED,
            ("stopped early (SIGTERM) after 3 of 4 budgets", "did not measure budget 1024 (not run)"),
        ),
        "out of memory": (
            _changed(
                data,
                budgets=data["budgets"][:-1],
                unmeasured=[{"budget": 8192, "status": "out_of_memory", "reason": "out of memory"}],
            ),
            ExitCode.CAPTURE,
            ("did not measure budget 8192 (out of memory)",),
        ),
        "replay": (
            _changed(data, budgets=[{**data["budgets"][0], "replay_matches_eager": False}, *data["budgets"][1:]]),
            ExitCode.CAPTURE,
            ("has graphs whose replay differed from eager at budget 1024",),
        ),
        "capture failure": (
            _changed(
                data,
                stopped_by="capture failure",
                budgets=[],
                unmeasured=[
                    {
                        "budget": b["budget"],
                        "status": "capture_failed" if b["budget"] == 8192 else "not_run",
                        "reason": "failed",
                    }
                    for b in data["budgets"]
                ],
            ),
            ExitCode.CAPTURE,
            (
                "has no measured budgets",
                "stopped early (capture failure) after 0 of 4 budgets",
                "did not measure budget 1024 (not run), 2048 (not run), 4096 (not run), 8192 (capture failed)",
            ),
        ),
    }
    for name, (report, code, problems) in cases.items():
        assessment = assess(report)
        assert (assessment.exit_code, assessment.problems) == (code, problems), name
        assert assessment.acceptable is (code is ExitCode.OK), name


def test_several_runs_exit_with_the_worst_kind():
    assert runs_exit_code([0, 0]) is ExitCode.OK
    assert runs_exit_code([0, 4, 2]) is ExitCode.CAPTURE
    assert runs_exit_code([4, 3]) is ExitCode.ENVIRONMENT  # nothing could run here: say so
    assert runs_exit_code([70]) is ExitCode.CAPTURE


def test_a_long_ladder_is_checked_with_a_bounded_table_and_verdict(recorded_report_data):
    """Hundreds of budgets: the table shows what did not pass, the pools and the total, then how many
    rows it left out; the verdict names a few regressions and counts the rest."""
    from encgraph_profiler import render

    data = json.loads(json.dumps(recorded_report_data))
    template = data["budgets"][0]
    data["budgets"] = [{**template, "budget": 64 * (i + 1), "pool_growth_bytes": 0} for i in range(500)]
    data["budgets"][-1]["pool_growth_bytes"] = data["pools"][0]["reserved_bytes"]
    data["settings"]["budgets"] = [b["budget"] for b in data["budgets"]]
    grown = json.loads(json.dumps(data))
    for b in grown["budgets"][:20]:
        b["static_io_bytes"] += 1 << 30
    result = compare(from_dict(data), from_dict(grown))
    assert len(result.rows) == 500 * 4 + 4 and len(result.regressions) == 20
    table = render.check_table(result)
    assert table.row_count == 20 + 4 + 1
    verdict = " ".join(line.plain for line in render.check_verdict(result))
    assert "and 15 more" in verdict and len(verdict) < 400


def test_changes_that_round_to_nothing_show_no_negative_zero():
    """512 bytes less is 0.0 MiB and 0.0%, never -0.0; growth from 0 says so."""
    from encgraph_profiler.check import Row, RowStatus
    from encgraph_profiler.units import mib

    assert (mib(-512), mib(-512, signed=True), mib(-52_429, signed=True)) == ("0.0", "0.0", "-0.1")
    rows = [
        Row("budget 1024", "static_io_bytes", 38_797_312, 38_796_800, 0, RowStatus.PASS),
        Row("budget 4096", "pool_growth_bytes", 0, 1_281_359_872, 0, RowStatus.REGRESSION),
        Row("total", "reserved_bytes", 1_000, 1_100, 0, RowStatus.REGRESSION),
    ]
    assert [check_formats.percent(r) for r in rows] == ["0.0%", "from 0", "+10.0%"]
