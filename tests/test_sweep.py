"""`encgraph sweep` on the fake device: every cell in its own forked process (which inherits the
fake), placed on the GPUs named, merged; a failing cell is recorded and the sweep goes on. And
`sweep --predict`: each cell's report the one `encgraph predict` gives alone. (`--on ray`:
test_sweep_ray.py.)"""

import json
import os
import signal
import sys
import time

import pytest
from fake_device import FakeDevice
from typer.testing import CliRunner

from encgraph_profiler import cuda_device, report_io, sweep
from encgraph_profiler.cli import build_app
from encgraph_profiler.schema import PoolName

app = build_app()

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


class CtrlCAtSecondCapture(FakeDevice):
    """A fake GPU whose cell presses Ctrl-C on the sweep at its second capture, and waits there for
    the interruption the sweep passes on."""

    def capture(self, fn, pool, stream, what):
        if self.captures == 1:
            os.kill(os.getppid(), signal.SIGINT)
            time.sleep(30)
        return super().capture(fn, pool, stream, what)


def test_ctrl_c_keeps_what_was_measured_and_records_every_cell(monkeypatch, tmp_path):
    monkeypatch.setattr(cuda_device, "CudaDevice", CtrlCAtSecondCapture)
    monkeypatch.setattr(sweep, "device_count", lambda: 1)
    # Ctrl-C as at a terminal, also where the tests run with it ignored (a background job).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    ladders = ["--budgets", "64,128,256", "--budgets", "64"]
    started = time.monotonic()
    try:
        result = _sweep(tmp_path, *ladders, "--as", "vllm,sglang", "--format", "json")
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == 130, result.output
    assert time.monotonic() - started < 25  # the cell was interrupted, not waited for
    cells = json.loads((tmp_path / "sweep.json").read_text())["cells"]
    assert json.loads(result.stdout)["cells"] == cells
    first, *rest = cells
    assert first["exit_code"] == 130 and "stopped early (SIGINT)" in first["message"]
    kept = report_io.load(tmp_path / first["report"])
    assert (kept.stopped_by, [b.budget for b in kept.budgets]) == ("SIGINT", [256])  # largest first: one captured
    assert [(c["exit_code"], c["message"], c["report"]) for c in rest] == [(130, sweep.NOT_RUN, None)] * 3


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
    monkeypatch.setattr(sweep, "device_count", lambda: 1)
    result = _sweep(tmp_path, "--budgets", "64", "--as", "vllm,tensorrt-llm", "--format", "json")
    cells = json.loads(result.stdout)["cells"]
    assert result.exit_code == 4
    assert cells[0]["exit_code"] == 9 and "ended with 9 and said nothing" in cells[0]["message"]
    assert cells[1]["exit_code"] == 0 and cells[1]["gpu"] is None


def comparable(path):
    """A report as JSON data, less what differs between two runs of the same prediction."""
    data = report_io.to_dict(report_io.load(path))
    data["provenance"].pop("created_at")
    data.pop("wall_ms")
    return data


def test_a_prediction_sweep_gives_each_cell_the_report_predict_gives_alone(tmp_path):
    args = ["--budgets", "64,128", "--as", "vllm,sglang", "--gpu-capability", "9.0,7.5", "--workers", "2"]
    result = _sweep(tmp_path, "--predict", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)["cells"]
    assert [(c["strategy"], c["gpu_capability"], c["report"]) for c in cells] == [
        (s, cc, f"{MODEL}.64-128.{s}.cc{cc}.json") for s in ("vllm", "sglang") for cc in ("9.0", "7.5")
    ]
    for c in cells:
        assert (c["exit_code"], c["gpu"], c["node"], c["gpu_type"]) == (0, None, None, None)
        alone = tmp_path / f"alone.{c['report']}"
        run_alone = ["--model", MODEL, "--budgets", "64,128", "--as", c["strategy"], "--gpu-capability"]
        assert runner.invoke(app, ["predict", *run_alone, c["gpu_capability"], "--json", str(alone)]).exit_code == 0
        assert comparable(tmp_path / c["report"]) == comparable(alone)
    # Compute capability 7.5 has no packed varlen kernel: the reports say what each was predicted for.
    attn = {c["gpu_capability"]: report_io.load(tmp_path / c["report"]).settings.attn for c in cells}
    assert attn == {"9.0": "varlen", "7.5": "sdpa"}


def test_on_ray_without_ray_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as where it is not installed: `import ray` fails
    result = _sweep(tmp_path / "out", "--budgets", "64", "--predict", "--on", "ray")
    assert result.exit_code == 3
    assert result.output == "error: --on ray needs Ray, an optional extra of encgraph: pip install 'encgraph[ray]'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("count", [0, None])  # NVML counts no GPU; no NVML at all
def test_a_measurement_sweep_on_a_host_without_a_gpu_is_refused_before_any_cell(monkeypatch, tmp_path, count):
    monkeypatch.setattr(sweep, "device_count", lambda: count)
    result = _sweep(tmp_path / "out", "--budgets", "64")
    assert result.exit_code == 3
    assert result.output.startswith("error: sweep measures each cell on a GPU and NVML sees none on this host;")
    assert "--predict" in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--gpus", "0,5"), "--gpus: no GPU 5; this host has 2 (0 to 1)"),
        (("--gpus", "1,1"), "names a GPU twice"),
        (("--as", "vllm,other"), "choose from vllm"),
        (("--budgets", "0"), "budget 0 must be a positive"),
        (("--predict", "--gpus", "0"), "--gpus picks GPUs of this host for measurements; a prediction runs on CPUs"),
        (("--on", "ray", "--gpus", "0"), "with --on ray, Ray places each cell (--gpu-type)"),
        (("--gpu-capability", "8.0"), "--gpu-capability names the GPUs a prediction is for; add --predict"),
        (("--predict", "--gpu-capability", "9.x"), "--gpu-capability '9.x': give MAJOR.MINOR"),
        (("--gpu-type", "H100"), "--gpu-type: needs --on ray"),
        (("--predict", "--on", "ray", "--gpu-type", "H100"), "--gpu-type: a prediction runs on CPUs"),
        (("--on", "ray", "--gpu-type", "H100,L40S;"), "--gpu-type 'L40S;': give Ray accelerator types"),
        (("--workers", "2"), "--workers: a local measurement runs one cell at a time on each GPU of --gpus"),
        (("--predict", "--workers", "0"), "--workers 0: give 1 or more cells at once"),
        (("--on", "cloud"), "'cloud' is not one of 'local', 'ray'"),
    ],
)
def test_bad_sweeps_are_refused_before_any_cell_runs(fake, tmp_path, args, message):
    result = _sweep(tmp_path / "out", *(args if "--budgets" in args else ("--budgets", "64", *args)))
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out" / "sweep.json").exists()
