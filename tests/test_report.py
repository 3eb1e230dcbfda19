"""The committed real report: schema round trip, invariants, rendering."""

import json

import pytest
from rich.console import Console

from encgraph_profiler import render, report_io
from encgraph_profiler.errors import ReportError
from encgraph_profiler.schema import SCHEMA_VERSION, GraphKey


def test_round_trip_is_lossless(recorded_report_path, tmp_path):
    data = json.loads(report_io.to_json(report_io.load(recorded_report_path)))
    assert data["schema_version"] == SCHEMA_VERSION
    report_io.save(report_io.from_dict(data), tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == data
    assert [p.name for p in tmp_path.iterdir()] == ["again.json"]  # no temporary file left behind


def test_recorded_report_adds_up(recorded_report_path):
    report = report_io.load(recorded_report_path)
    # The pool rows add up to what NVML reported for the process.
    assert report.total_bytes == report.process_used_bytes
    for pool in report.pools:
        assert sum(pool.parts.values()) == pool.reserved_bytes
    # Largest first: the largest budget's capture makes the pool; the others fit in it.
    budgets = sorted(report.budgets, key=lambda b: b.budget)
    assert budgets[-1].pool_growth_bytes == report.pool("encoder_graphs").reserved_bytes
    assert all(b.pool_reserved_bytes == budgets[-1].pool_reserved_bytes for b in budgets)
    assert all(b.replay_matches_eager for b in budgets)
    assert report.graph_counts.line.endswith("ENCODER=4 (largest=8192)")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=99), "schema_version 99"),
        (lambda d: d.pop("budgets"), "report.budgets is missing"),
        (lambda d: d.update(pools={}), "should be a list"),
        (
            lambda d: [b.update(path="local" if i == 0 else "global") for i, b in enumerate(d["budgets"])],
            "local path ends at budget 1024, not at the largest",
        ),
    ],
)
def test_bad_reports_are_refused(recorded_report_data, tmp_path, mutate, message):
    mutate(recorded_report_data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(recorded_report_data))
    with pytest.raises(ReportError, match=message):
        report_io.load(path)


def test_truncated_and_missing_files(recorded_report_path, tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(recorded_report_path.read_text()[:500])
    with pytest.raises(ReportError, match="truncated"):
        report_io.load(path)
    with pytest.raises(ReportError, match="no such report"):
        report_io.load(tmp_path / "absent.json")


def test_tables_show_the_measured_figures(recorded_report_path):
    report = report_io.load(recorded_report_path)
    console = Console(width=200, record=True)
    console.print(render.budget_table(report))
    console.print(render.pool_table(report))
    text = console.export_text()
    assert "2,526.0" in text and "8,192" in text and "encoder graph pool" in text
    assert "outside the allocator" in text and "yes" in text
    assert "2,648,702,976 bytes" in render.totals_line(report)


def test_a_hugging_face_id_is_named_with_its_revision_and_snapshot(recorded_report_data, tmp_path):
    settings = recorded_report_data["settings"]
    settings.update(model="Qwen/Qwen2-VL-7B-Instruct", commit="51c47430f97dd7c74aa1fa6825e68a813478097f")
    path = tmp_path / "by-id.json"
    path.write_text(json.dumps(recorded_report_data))
    console = Console(width=200, record=True)
    console.print(render.budget_table(report_io.load(path)))
    assert "Qwen/Qwen2-VL-7B-Instruct at the default branch, snapshot 51c47430f97d" in console.export_text()
    settings.update(revision="v1.0")
    path.write_text(json.dumps(recorded_report_data))
    assert report_io.load(path).settings.model_label == "Qwen/Qwen2-VL-7B-Instruct at v1.0, snapshot 51c47430f97d"


def test_version_1_reports_are_migrated(recorded_report_data, tmp_path):
    """encgraph 0.1 wrote schema 1, whose default-pool live bytes also counted the encoder pool's
    live outputs, and which had no record of unmeasured budgets."""
    old = {k: v for k, v in recorded_report_data.items() if k not in ("unmeasured", "stopped_by", "complete")}
    old = json.loads(json.dumps(old))
    old["schema_version"] = 1
    pools = {p["pool"]: p for p in old["pools"]}
    pools["default"]["live_bytes"] += pools["encoder_graphs"]["live_bytes"]
    old["budgets"] = old["budgets"][1:]  # a v1 partial report: its first budget was never measured
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    report = report_io.load(path)
    assert (
        report.pool("default").live_bytes
        == next(p for p in recorded_report_data["pools"] if p["pool"] == "default")["live_bytes"]
    )
    assert [(u.budget, u.status.value) for u in report.unmeasured] == [(1024, "not_run")] and not report.complete


def test_graphs_sit_in_tables_by_path_with_numbers_by_value_then_by_budget():
    keys = [GraphKey("rows of 140", 70), GraphKey("rows of 70", 140), GraphKey("rows of 70", 70), GraphKey("", 8)]
    assert [key.label for key in sorted(keys, key=lambda key: key.order)] == [
        "8",
        "rows of 70:70",
        "rows of 70:140",
        "rows of 140:70",
    ]


def test_a_sweeps_merged_results_stand_for_its_cells_reports_in_report_and_are_named_elsewhere(tmp_path):
    from typer.testing import CliRunner

    from encgraph_profiler.cli import build_app

    app = build_app()

    runner = CliRunner()
    ladders = ["--budgets", "64", "--budgets", "128"]
    swept = runner.invoke(app, ["sweep", "--predict", "--model", "tiny-siglip", *ladders, "--out", str(tmp_path)])
    assert swept.exit_code == 0, swept.output
    merged = tmp_path / "sweep.json"
    cells = report_io.sweep_reports(merged)
    assert cells == [tmp_path / "tiny-siglip.64.vllm.cc9.0.json", tmp_path / "tiny-siglip.128.vllm.cc9.0.json"]
    assert report_io.sweep_reports(cells[0]) is None  # a report is not a sweep
    page = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(merged), str(cells[1]), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert page.read_text().count("tiny-siglip.128.vllm.cc9.0") >= 1 and "tiny-siglip.64.vllm.cc9.0" in page.read_text()
    checked = runner.invoke(app, ["check", str(merged), str(cells[0])])
    assert checked.exit_code == 5 and "a sweep's merged results (sweep.json), not a report" in checked.output
