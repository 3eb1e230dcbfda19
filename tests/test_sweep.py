"""`encgraph sweep` on the fake device: every cell in its own forked process (which inherits the
fake), placed on the GPUs named, merged; a failing cell is recorded and the sweep goes on."""

import json

import pytest
from fake_device import FakeDevice
from typer.testing import CliRunner

from encgraph_profiler import cuda_device, report_io, sweep
from encgraph_profiler.cli import app
from encgraph_profiler.schema import PoolName

runner = CliRunner()
MODEL = "tiny-qwen2-vl"


@pytest.fixture
def fake(monkeypatch):
    """Each forked cell makes its own FakeDevice, as each process has its own GPU state."""
    monkeypatch.setattr(cuda_device, "CudaDevice", lambda: FakeDevice(fail_capture=(256,)))
    monkeypatch.setattr(sweep, "device_count", lambda: 2)


def _sweep(out, *args):
    return runner.invoke(app, ["sweep", "--out", str(out), "--model", MODEL, *args])


def test_cells_run_apart_over_the_gpus_and_merge(fake, tmp_path):
    result = _sweep(
        tmp_path,
        "--budgets",
        "64,128",
        "--budgets",
        "64,256",
        "--as",
        "vllm,sglang",
        "--gpus",
        "0,1",
        "--format",
        "json",
    )
    assert result.exit_code == 4, result.output  # the 64,256 cells fail their 256 capture
    cells = json.loads(result.stdout)["cells"]
    assert json.loads((tmp_path / "sweep.json").read_text())["cells"] == cells
    assert [(c["budgets"], c["strategy"]) for c in cells] == [
        ([64, 128], "vllm"),
        ([64, 128], "sglang"),
        ([64, 256], "vllm"),
        ([64, 256], "sglang"),
    ]
    assert {c["gpu"] for c in cells} == {"0", "1"}  # both GPUs took cells
    for c in cells:
        saved = report_io.load(tmp_path / c["report"])
        assert saved.provenance.visible_devices == c["gpu"]  # the report says which GPU it ran on
        assert (saved.settings.pool == "per-graph") == (c["strategy"] == "sglang")
    ok = [c for c in cells if c["budgets"] == [64, 128]]
    assert all(c["exit_code"] == 0 and c["message"] == "" for c in ok)
    failed = [c for c in cells if c["budgets"] == [64, 256]]
    assert all(
        c["exit_code"] == 4 and "did not measure budget 64 (not run), 256 (capture failed)" in c["message"]
        for c in failed
    )
    # Per-graph pools add up: the sglang cell holds more than the vllm cell of the same ladder.
    pools = {
        c["strategy"]: report_io.load(tmp_path / c["report"]).pool(PoolName.ENCODER_GRAPHS).reserved_bytes for c in ok
    }
    assert pools["sglang"] > pools["vllm"]


def test_a_cell_that_crashes_does_not_stop_the_sweep(monkeypatch, tmp_path):
    """A cell whose process dies without a word is recorded as such; the next cell still runs."""
    first = tmp_path / "first-cell-ran"

    def device():  # runs in each cell's own process: a file tells the second cell from the first
        if not first.exists():
            first.touch()
            import os

            os._exit(9)  # the first cell's process dies, as one poisoned by a failed capture might
        return FakeDevice()

    monkeypatch.setattr(cuda_device, "CudaDevice", device)
    result = _sweep(tmp_path, "--budgets", "64", "--as", "vllm,tensorrt-llm", "--format", "json")
    cells = json.loads(result.stdout)["cells"]
    assert result.exit_code == 4
    assert cells[0]["exit_code"] == 9 and "ended with 9 and said nothing" in cells[0]["message"]
    assert cells[1]["exit_code"] == 0 and cells[1]["gpu"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (("--gpus", "0,5"), "--gpus: no GPU 5; this host has 2 (0 to 1)"),
        (("--gpus", "1,1"), "names a GPU twice"),
        (("--as", "vllm,other"), "choose from vllm"),
        (("--budgets", "0"), "budget 0 must be a positive"),
    ],
)
def test_bad_sweeps_are_refused_before_any_cell_runs(fake, tmp_path, args, message):
    result = _sweep(tmp_path / "out", *(args if "--budgets" in args else ("--budgets", "64", *args)))
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out" / "sweep.json").exists()
