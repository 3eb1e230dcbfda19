"""profile's per-budget and per-pool arithmetic, partial reports and interrupted runs, on the fake
device: every expected figure is computed here from the fake's cost model, not read from profile."""

import json

import pytest
from fake_device import FakeDevice, MiB, round_up, tensor_bytes
from helpers import measured, request
from typer.testing import CliRunner

from encgraph_profiler import cuda_device, report_io
from encgraph_profiler.check import compare
from encgraph_profiler.cli import build_app
from encgraph_profiler.errors import NotGateable, Terminated
from encgraph_profiler.request import ProfileRequest, parse_strategy, prepare
from encgraph_profiler.schema import BudgetStatus, PoolName

app = build_app()

MODEL, BUDGETS = "tiny-qwen2-vl", (64, 128, 256)


def _run(device, budgets=BUDGETS, model=MODEL):
    return measured(request(model, budgets), device)


def _expected_pool(device, report, budget):
    outputs = sum(round_up(b.output_bytes, 512) for b in report.budgets if b.budget == budget)
    return round_up(device.scratch_per_token * budget + outputs)


def test_complete_run_adds_up_exactly():
    device = FakeDevice()
    report = _run(device)
    assert report.complete and report.stopped_by is None and not report.warnings
    assert [b.budget for b in report.budgets] == [64, 128, 256]
    # Largest first into one pool: the 256 capture makes it, the smaller ones fit inside.
    largest = _expected_pool(device, report, 256)
    assert {b.budget: b.pool_growth_bytes for b in report.budgets} == {256: largest, 128: 0, 64: 0}
    assert all(b.pool_reserved_bytes == largest for b in report.budgets)
    # Outside the allocator, per capture: the graph executable's cost, exactly.
    assert all(b.non_allocator_bytes == device.exec_per_capture for b in report.budgets)

    encoder, default, outside = (report.pool(n) for n in PoolName)
    outputs = sum(round_up(b.output_bytes, 512) for b in report.budgets)
    assert (encoder.reserved_bytes, encoder.live_bytes, encoder.graphs) == (largest, outputs, 3)
    assert encoder.parts == {"live_outputs": outputs, "scratch": largest - outputs}
    # The default pool's live bytes do not count the graph pool's outputs a second time.
    setup = prepare(ProfileRequest(model=MODEL, budgets=BUDGETS))
    weights = tensor_bytes(
        FakeDevice().measure_allocated(lambda: setup.spec.adapter.build_tower(setup.tower_config, "bfloat16", "sdpa"))[
            0
        ]
    )
    static_io = sum(b.static_io_bytes for b in report.budgets)
    assert default.live_bytes == weights + static_io + device.workspace
    assert default.parts["weights"] == weights and default.parts["static_inputs"] == static_io
    assert default.reserved_bytes == round_up(weights + static_io + device.workspace)
    assert outside.parts == {
        "cuda_context": device.context,
        "graph_executables": 3 * device.exec_per_capture,
        "other": 0,
    }
    held = largest + round_up(weights + static_io + device.workspace)
    assert report.total_bytes == report.process_used_bytes == device.context + held + 3 * device.exec_per_capture


def test_report_survives_a_json_round_trip(tmp_path):
    report = _run(FakeDevice())
    report_io.save(report, tmp_path / "r.json")
    assert report_io.load(tmp_path / "r.json") == report


HUNGRY = dict(activation_factor=20)  # eager peaks well above the pool's needs


def _capacity_without_256() -> int:
    """Room for 64 and 128 (warm-ups and captures), 1 MiB short of what 128's figures say 256 needs."""
    probe = _run(FakeDevice(**HUNGRY))
    device, b = FakeDevice(**HUNGRY), {x.budget: x for x in probe.budgets}
    weights = probe.pool(PoolName.DEFAULT).parts["weights"]
    held_after_warm_ups = round_up(weights + b[64].static_io_bytes + b[128].static_io_bytes + device.workspace)
    needed_256 = (b[128].static_io_bytes + b[128].eager_peak_bytes) * b[256].tokens // b[128].tokens
    return device.context + held_after_warm_ups + needed_256 - MiB


def test_out_of_memory_budget_is_recorded_and_the_ladder_goes_on():
    # Judged from the smaller budgets' figures, 256 cannot fit: it is not even started.
    report = _run(FakeDevice(capacity=_capacity_without_256(), **HUNGRY))
    assert [b.budget for b in report.budgets] == [64, 128]
    (failed,) = report.unmeasured
    assert failed.budget == 256 and failed.status is BudgetStatus.OUT_OF_MEMORY and "not run" in failed.reason
    assert not report.complete and report.stopped_by is None


def test_out_of_memory_in_warm_up_keeps_the_requested_bytes():
    report = _run(FakeDevice(capacity=530 * MiB), budgets=(64,))
    (failed,) = report.unmeasured
    assert failed.status is BudgetStatus.OUT_OF_MEMORY and failed.requested_bytes > 0
    assert report.budgets == () and report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes == 0


@pytest.mark.parametrize("signal, name", [(KeyboardInterrupt, "SIGINT"), (Terminated, "SIGTERM")])
def test_signal_after_two_captures_keeps_them(signal, name):
    report = _run(FakeDevice(stop_at_capture=(3, signal)))
    assert report.stopped_by == name and [b.budget for b in report.budgets] == [128, 256]
    assert [(u.budget, u.status) for u in report.unmeasured] == [(64, BudgetStatus.NOT_RUN)]
    assert report.pool(PoolName.ENCODER_GRAPHS).graphs == 2


def test_capture_failure_stops_the_ladder_and_keeps_the_rest():
    report = _run(FakeDevice(fail_capture={128}))
    assert report.stopped_by == "capture failure" and [b.budget for b in report.budgets] == [256]
    assert {u.budget: u.status for u in report.unmeasured} == {
        128: BudgetStatus.CAPTURE_FAILED,
        64: BudgetStatus.NOT_RUN,
    }


def test_without_nvml_the_outside_figures_are_unknown_not_wrong():
    report = _run(FakeDevice(nvml=False))
    assert report.process_used_bytes is None and report.total_bytes is None
    assert report.pool(PoolName.OUTSIDE_ALLOCATOR).reserved_bytes is None
    assert any("NVML" in w for w in report.warnings)
    assert all(b.non_allocator_bytes is None for b in report.budgets)


def test_gate_refuses_partial_and_mismatched_reports():
    good = _run(FakeDevice())
    partial = _run(FakeDevice(stop_at_capture=(3, KeyboardInterrupt)))
    mismatched = _run(FakeDevice(mismatch={128}))
    assert mismatched.replay_mismatches == ("128",)
    for bad in (partial, mismatched):
        with pytest.raises(NotGateable):
            compare(good, bad)
    allowed = compare(good, partial, allow_incomplete=True)
    assert allowed.warnings and not allowed.missing


# -- the command line, on the fake device ----------------------------------------------------------
runner = CliRunner()


@pytest.fixture
def fake(monkeypatch):
    """`encgraph profile` on a FakeDevice made with the given options."""
    made = {}

    def use(**options):
        monkeypatch.setattr(cuda_device, "CudaDevice", lambda: made.setdefault("device", FakeDevice(**options)))

    return use


def _cli(*args):
    return runner.invoke(app, ["profile", "--model", MODEL, "--budgets", "64,128,256", *args])


def test_cli_sigint_writes_what_was_measured_and_exits_130(fake, tmp_path):
    fake(stop_at_capture=(3, KeyboardInterrupt))
    result = _cli("--json", str(tmp_path / "r.json"))
    assert result.exit_code == 130, result.output
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [b["budget"] for b in saved["budgets"]] == [128, 256] and saved["stopped_by"] == "SIGINT"
    assert saved["complete"] is False
    stopped = "error: the run stopped early (SIGINT) after 2 of 3 budgets; did not measure budget 64 (not run)"
    assert stopped in result.output


def test_cli_out_of_memory_exits_4_with_the_other_budgets(fake, tmp_path):
    fake(capacity=_capacity_without_256(), **HUNGRY)
    result = _cli("--json", str(tmp_path / "r.json"))
    assert result.exit_code == 4, result.output
    saved = report_io.load(tmp_path / "r.json")
    assert saved.budgets and saved.unmeasured
    assert "error: the run did not measure budget 256 (out of memory)" in result.output
    gate = runner.invoke(app, ["check", str(tmp_path / "r.json"), str(tmp_path / "r.json")])
    assert gate.exit_code == 7 and "did not measure budget" in gate.output


def test_cli_failed_write_falls_back_and_loses_nothing(fake, tmp_path, monkeypatch):
    target = tmp_path / "gone" / "r.json"
    target.parent.mkdir()
    fake(on_capture=lambda n: target.parent.exists() and target.parent.rmdir())
    monkeypatch.chdir(tmp_path)
    result = _cli("--json", str(target))
    assert result.exit_code == 8, result.output
    (fallback,) = tmp_path.glob("encgraph-report-*.json")
    assert f"the report is in {fallback}" in result.output.replace("\n", "")
    assert len(report_io.load(fallback).budgets) == 3
    assert "Encoder graphs hold" in result.output  # the table is printed too


def test_memory_snapshot_labels_every_event_by_budget(fake, tmp_path):
    """Events made during a budget's warm-up or capture carry that budget's category; the rest are
    `unknown`, which the viewer needs whenever categories are used. Pickled with protocol 4."""
    import pickle

    fake()
    path = tmp_path / "run.pickle"
    result = _cli("--json", str(tmp_path / "r.json"), "--memory-snapshot", str(path))
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    assert data[:2] == b"\x80\x04"  # protocol 4: pytorch.org/memory_viz's unpickler refuses 5
    snapshot = pickle.loads(data)
    events = snapshot["device_traces"][0]
    by_category = {}
    for event in events:
        by_category.setdefault(event["category"], []).append(event["action"])
    # The fake makes one alloc and one free per warm-up, and one segment per capture that grows the pool.
    for budget in (64, 128, 256):
        assert by_category[f"warm-up budget={budget}"] == ["alloc", "free_completed"]
    assert by_category["budget=256"] == ["segment_alloc"]  # the largest, first, grows the pool
    assert set(by_category["unknown"]) == {"segment_free"}  # emptying the cache between phases
    assert set(by_category) == {
        "unknown",
        "budget=64",
        "budget=128",
        "budget=256",
        "warm-up budget=64",
        "warm-up budget=128",
        "warm-up budget=256",
    }


def test_memory_snapshot_path_is_checked_before_any_work(fake, tmp_path):
    fake()
    result = _cli("--memory-snapshot", str(tmp_path / "missing" / "run.pickle"))
    assert result.exit_code == 2 and "--memory-snapshot" in result.output


def _strategy(pool, order, budgets=BUDGETS):
    device = FakeDevice()
    report = measured(request(MODEL, budgets, pool=pool, order=order), device)
    assert report.complete and (report.settings.pool, report.settings.order) == (pool, order)
    return device, report


def test_per_graph_pools_add_up_to_the_lone_budgets():
    """One pool per graph: each budget's pool is its own need, and the whole equals the sum of the
    budgets profiled alone (each alone in a shared pool)."""
    device, report = _strategy("per-graph", "largest-first")
    needs = {b: _expected_pool(device, report, b) for b in BUDGETS}
    assert {b.budget: b.pool_growth_bytes for b in report.budgets} == needs
    assert report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes == sum(needs.values())
    alone = [
        _strategy("shared", "largest-first", (b,))[1].pool(PoolName.ENCODER_GRAPHS).reserved_bytes for b in BUDGETS
    ]
    assert sum(alone) == sum(needs.values())
    assert len(device.graph_pools) == 3


def test_smallest_first_grows_one_shared_pool_at_every_capture():
    device, report = _strategy("shared", "smallest-first")
    needs = [_expected_pool(device, report, b) for b in sorted(BUDGETS)]
    growth = [b.pool_growth_bytes for b in sorted(report.budgets, key=lambda b: b.budget)]
    assert growth == [needs[0], needs[1] - needs[0], needs[2] - needs[1]]
    assert report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes == needs[2] and len(device.graph_pools) == 1


def test_reports_of_different_strategies_are_not_compared():
    from encgraph_profiler.errors import ReportError

    _, shared = _strategy("shared", "largest-first")
    _, per_graph = _strategy("per-graph", "largest-first")
    with pytest.raises(ReportError, match="pool"):
        compare(shared, per_graph)


@pytest.mark.parametrize(
    "args, pool, order",
    [
        (("--as", "sglang"), "per-graph", "largest-first"),
        (("--as", "TensorRT-LLM"), "shared", "smallest-first"),
        (("--pool", "per-graph", "--order", "smallest-first"), "per-graph", "smallest-first"),
        ((), "shared", "largest-first"),
    ],
)
def test_cli_strategies(fake, tmp_path, args, pool, order):
    fake()
    result = _cli("--json", str(tmp_path / "r.json"), *args)
    assert result.exit_code == 0, result.output
    saved = report_io.load(tmp_path / "r.json")
    assert (saved.settings.pool, saved.settings.order) == (pool, order)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--as", "vllm", "--pool", "per-graph"), "--as vllm means --pool shared"),
        (("--as", "lmdeploy"), "--as 'lmdeploy': choose one of vllm"),
        (("--pool", "private"), "--pool 'private': choose shared or per-graph"),
        (("--order", "random"), "--order 'random': choose largest-first or smallest-first"),
    ],
)
def test_cli_strategy_mistakes_are_refused(fake, args, message):
    fake()
    result = _cli(*args)
    assert result.exit_code == 2 and message in result.output


def test_compare_runs_each_strategy_apart_and_sets_them_side_by_side(monkeypatch, tmp_path):
    """Each strategy's profile runs as its own command (a fresh process outside tests); the table
    and the JSON put their pools side by side, and a failed strategy does not stop the others."""
    from encgraph_profiler.cli import compare as compare_cli

    calls = []

    def child(args):
        calls.append(args)
        device = FakeDevice(
            fail_capture=(256,) if "tensorrt-llm" in args else ()
        )  # a fresh device, as a fresh process has
        monkeypatch.setattr(cuda_device, "CudaDevice", lambda: device)
        result = CliRunner().invoke(app, ["profile", *args])
        return result.exit_code, "child error line"

    monkeypatch.setattr(compare_cli, "_run_child", child)
    monkeypatch.setattr(cuda_device, "require_cuda", lambda: None)  # the fake device stands for a GPU
    result = runner.invoke(
        app,
        ["compare", "--model", MODEL, "--budgets", "64,128,256", "--format", "json", "--keep", str(tmp_path / "kept")],
    )
    assert result.exit_code == 4, result.output  # one strategy did not measure every budget
    data = json.loads(result.stdout)
    assert [c[c.index("--as") + 1] for c in calls] == ["vllm", "vllm-legacy", "tensorrt-llm"]
    shared, per_graph = (
        report_io.load(tmp_path / "kept" / "vllm.json"),
        report_io.load(tmp_path / "kept" / "vllm-legacy.json"),
    )
    assert data["vllm"]["total_bytes"] == shared.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    assert data["vllm-legacy"]["total_bytes"] == sum(b.pool_growth_bytes for b in per_graph.budgets)
    assert data["vllm-legacy"]["total_bytes"] > data["vllm"]["total_bytes"]
    assert data["tensorrt-llm"]["total_bytes"] is None and data["tensorrt-llm"]["exit_code"] == 4
    table = runner.invoke(app, ["compare", "--model", MODEL, "--budgets", "64,128,256", "--as", "vllm,sglang"])
    assert table.exit_code == 0 and "vs vllm" in table.output and "sglang" in table.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("--as", "vllm,nope"), "choose from vllm"),
        (("--as", "vllm,vllm"), "names a strategy twice"),
        (("--keep", "/dev/null/reports"), "--keep /dev/null/reports: cannot make that folder"),
    ],
)
def test_compare_refuses_bad_input(args, message):
    result = runner.invoke(app, ["compare", "--model", MODEL, "--budgets", "64,128", *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("--model", "nope", "--budgets", "1024"), 2, "unknown model 'nope'"),
        (("--model", MODEL, "--budgets", "64,128", "--max-items", "0"), 2, "--max-items"),
        (("--model", MODEL, "--budgets", "64,128"), 3, "no CUDA device is visible"),  # this machine has none
    ],
)
def test_compare_refuses_in_one_line_before_starting_any_run(monkeypatch, args, code, message):
    """A bad input or a missing GPU is every strategy's: said once, with its own exit code, no run started."""
    import torch

    from encgraph_profiler.cli import compare as compare_cli

    started = []
    monkeypatch.setattr(compare_cli, "_run_child", lambda args: started.append(args) or (0, ""))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["compare", *args])
    assert (result.exit_code, started) == (code, []), result.output
    assert message in result.output and result.output.count("error:") == 1


def test_check_release_gets_every_pool_byte_back():
    device = FakeDevice()
    report = measured(request(MODEL, BUDGETS, check_release=True), device)
    release = report.release
    pool = report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    assert (release.pool_bytes_before, release.pool_bytes_after, release.held_by) == (pool, 0, "")
    assert release.reserved_returned_bytes >= pool and release.nvml_returned_bytes == release.reserved_returned_bytes
    assert report_io.from_dict(json.loads(report_io.to_json(report))).release == release  # the schema keeps it


def test_check_release_names_a_graph_still_referenced():
    """A graph referenced elsewhere keeps its whole pool, and the check says so."""
    report = measured(request(MODEL, BUDGETS, check_release=True), FakeDevice(keep_graphs=True))
    release = report.release
    assert release.pool_bytes_after == release.pool_bytes_before > 0
    assert "graph outputs are still referenced" in release.held_by


def test_cli_check_release_line(fake):
    fake()
    result = _cli("--check-release")
    assert result.exit_code == 0, result.output
    assert "Release: all" in result.output and "came back once the graphs were dropped" in result.output


def test_capture_as_vllm_interleaves_copies_outputs_out_and_explains_its_estimate(tmp_path):
    """vLLM's capture: each budget's inputs, warm-up and capture in turn, largest first; outputs
    copied to buffers outside the pool (so the pool holds scratch only); its estimate is the drop in
    free memory, and the parts it is made of add up to it."""
    import pickle

    from encgraph_profiler.errors import ReportError

    device = FakeDevice()
    plain = measured(request(MODEL, BUDGETS), FakeDevice())
    snapshot = tmp_path / "run.pickle"
    report = measured(request(MODEL, BUDGETS, capture="vllm", memory_snapshot=snapshot), device)
    assert report.complete and report.settings.capture == "vllm"
    pool = report.pool(PoolName.ENCODER_GRAPHS)
    assert (
        pool.reserved_bytes
        == round_up(device.scratch_per_token * 256)
        < plain.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    )
    assert pool.live_bytes == 0  # no graph output lives in the pool
    est = report.vllm_estimate
    buffers = sum(round_up(b.output_bytes, 512) for b in report.budgets)
    assert est.pool_bytes == pool.reserved_bytes and est.output_buffer_bytes == buffers
    assert est.static_input_bytes == sum(b.static_io_bytes for b in report.budgets) - buffers
    assert est.free_drop_bytes == (
        est.pool_bytes
        + est.static_input_bytes
        + est.output_buffer_bytes
        + est.cached_bytes
        + est.outside_allocator_bytes
    )
    assert est.outside_allocator_bytes == 3 * device.exec_per_capture
    events = pickle.loads(snapshot.read_bytes())["device_traces"][0]
    phases = [e["category"] for e in events if e["category"] != "unknown"]
    order = [c for i, c in enumerate(phases) if i == 0 or phases[i - 1] != c]
    assert order == [
        "warm-up budget=256",
        "budget=256",
        "warm-up budget=128",
        "budget=128",
        "warm-up budget=64",
        "budget=64",
    ]
    assert plain.vllm_estimate is None
    with pytest.raises(ReportError, match="capture"):
        compare(plain, report)


def test_the_estimate_line_says_where_inputs_took_room_the_weights_segments_had():
    """On an H100, Kimi-K3's inputs fitted 12 MiB into the weights' segments: the cached part was negative."""
    from dataclasses import replace

    from encgraph_profiler.render import vllm_estimate_line

    report = measured(request(MODEL, BUDGETS, capture="vllm"), FakeDevice())
    est = report.vllm_estimate
    taken = replace(est, cached_bytes=-12_376_064, outside_allocator_bytes=est.outside_allocator_bytes + 12_376_064)
    line = vllm_estimate_line(replace(report, vllm_estimate=taken))
    assert "- room the weights' segments already had 11.8 " in line and "cached warm-up blocks" not in line
    assert "+ cached warm-up blocks" in vllm_estimate_line(report)


def test_cli_as_vllm_prints_the_estimate_and_refuses_a_plain_capture(fake):
    fake()
    result = _cli("--as", "vllm")
    assert result.exit_code == 0, result.output
    assert "vLLM's estimate (free memory dropped by" in result.output
    refused = _cli("--as", "vllm", "--capture", "plain")
    assert refused.exit_code == 2 and "--as vllm means --capture vllm" in refused.output


def test_a_two_path_family_captures_and_reports_every_path(tmp_path):
    """Step-3.7: each path on vLLM's own ladder (from one item up to the largest budget), captured
    path by path, largest first, into one pool; the report, its JSON, check and the table name each
    graph by path and budget."""
    from encgraph_profiler import render

    device = FakeDevice()
    report = _run(device, budgets=(81, 162), model="tiny-step3p7")
    assert device.captured == [
        "budget global:162",
        "budget global:128",
        "budget global:64",
        "budget local:162",
        "budget local:81",
    ]
    assert [(b.path, b.budget) for b in report.budgets] == [
        ("global", 64),
        ("global", 128),
        ("global", 162),
        ("local", 81),
        ("local", 162),
    ]
    assert [b.items for b in report.budgets] == [1, 2, 2, 1, 2]
    assert report.settings.layout == (
        "162 tokens = 2 global images of 448x448 px, 2,048 ViT patches downsampled to 64 tokens each; "
        "162 tokens = 2 local crops of 504x504 px, 2,592 ViT patches downsampled to 81 tokens each"
    )
    assert report.complete and report.pool(PoolName.ENCODER_GRAPHS).graphs == 5
    assert [g.count for g in report.graph_counts.groups if g.kind == "ENCODER"] == [5]
    path = tmp_path / "two-paths.json"
    report_io.save(report, path)
    again = report_io.load(path)
    assert again.budgets == report.budgets
    scopes = [row.scope for row in compare(again, report).rows if row.figure == "pool_reserved_bytes"]
    assert scopes[:5] == [
        "budget global:162",
        "budget global:128",
        "budget global:64",
        "budget local:162",
        "budget local:81",
    ]
    assert [cell for cell in render.budget_table(report).columns[0].cells] == [
        "global 64",
        "global 128",
        "global 162",
        "local 81",
        "local 162",
    ]
    stopped = _run(FakeDevice(fail_capture={162}), budgets=(81, 162), model="tiny-step3p7")
    assert [(u.label, u.status) for u in stopped.unmeasured] == [
        ("global:64", BudgetStatus.NOT_RUN),
        ("global:128", BudgetStatus.NOT_RUN),
        ("global:162", BudgetStatus.CAPTURE_FAILED),
        ("local:81", BudgetStatus.NOT_RUN),
        ("local:162", BudgetStatus.NOT_RUN),
    ]


def test_a_two_path_family_says_which_budgets_do_not_apply():
    """vLLM's paths run their own ladders up to the largest budget; a budget given between that is
    on neither ladder is named in the report's warnings, so nobody looks for its graph."""
    setup = prepare(ProfileRequest(model="tiny-deepseek-ocr2", budgets=(256, 300, 512)))
    assert [layout.key for layout in setup.layouts] == [
        ("global", 512),
        ("global", 256),
        ("local", 512),
        ("local", 288),
        ("local", 144),
    ]
    assert setup.notes == (
        "deepseek-ocr2 captures each encoder path on vLLM's own ladder, from one item of that path doubling "
        "up to the largest budget: global 256-512 (2 graphs); local 144-512 (3 graphs); the smaller "
        "budgets (300) do not apply to these paths",
    )
    assert (
        prepare(ProfileRequest(model="tiny-deepseek-ocr2", budgets=(256, 512))).notes == ()
    )  # both on the global ladder
    assert prepare(ProfileRequest(model=MODEL, budgets=BUDGETS)).notes == ()


@pytest.mark.parametrize(
    "make",
    [
        lambda: _run(FakeDevice()),
        lambda: _strategy("per-graph", "largest-first")[1],
        lambda: _strategy("shared", "smallest-first")[1],
        lambda: _strategy("per-graph", "smallest-first")[1],
        lambda: measured(request(MODEL, BUDGETS, capture="vllm"), FakeDevice()),
        lambda: measured(request(MODEL, BUDGETS, capture="vllm", pool="per-graph"), FakeDevice()),
        lambda: _run(FakeDevice(), budgets=(81, 162), model="tiny-step3p7"),
        lambda: _run(FakeDevice(capacity=_capacity_without_256(), **HUNGRY)),
        lambda: _run(FakeDevice(capacity=530 * MiB), budgets=(64,)),
        lambda: _run(FakeDevice(stop_at_capture=(3, KeyboardInterrupt))),
        lambda: _run(FakeDevice(fail_capture={128})),
        lambda: _run(FakeDevice(nvml=False)),
    ],
    ids=[
        "shared",
        "per-graph",
        "smallest-first",
        "per-graph-smallest-first",
        "vllm",
        "vllm-per-graph",
        "two-paths",
        "out-of-memory",
        "nothing-fits",
        "sigint",
        "capture-failure",
        "no-nvml",
    ],
)
def test_every_kind_of_report_passes_its_own_validation(make):
    """The relations report_io checks (pool row against the budgets, growths, parts, complete and
    total_bytes) hold for every report profile writes: complete or not, every strategy."""
    report = make()
    assert report_io.from_dict(json.loads(report_io.to_json(report))) == report


def test_as_vllm_on_a_family_vllm_does_not_capture_says_so():
    vllm = parse_strategy("vllm")
    note = "captures no encoder graphs for siglip (it runs its encoder eagerly)"
    assert any(note in n for n in prepare(ProfileRequest("tiny-siglip", (64,), strategy=vllm)).notes)
    assert not any("captures no encoder graphs" in n for n in prepare(ProfileRequest("tiny-siglip", (64,))).notes)
    assert not any(
        "captures no encoder graphs" in n for n in prepare(ProfileRequest("tiny-qwen2-vl", (64,), strategy=vllm)).notes
    )
