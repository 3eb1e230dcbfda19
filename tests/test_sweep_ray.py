"""`encgraph sweep --on ray` on a real local Ray cluster started by these tests: predictions on its
CPUs, each report the same as `encgraph predict` run alone; measurements on the fake device behind
the device seam, each taking a custom resource that stands for a GPU; a failing cell and a lost one
recorded while the rest go on; Ctrl-C (a real SIGINT) cancels what has not started and keeps what
finished. Skipped where Ray is not installed (`pip install 'encgraph[ray]'`)."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Ray's switch for a cluster on one host: it keeps the test cluster on the loopback address (read as Ray loads).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")

import fake_device  # noqa: E402 - after the skip above, as everything that needs Ray
from fake_device import FakeDevice  # noqa: E402
from test_sweep import comparable  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from encgraph_profiler import report_io, sweep_ray  # noqa: E402
from encgraph_profiler.cli import build_app  # noqa: E402
from encgraph_profiler.errors import EnvironmentProblem  # noqa: E402
from encgraph_profiler.sweep import Cell  # noqa: E402

app = build_app()

runner = CliRunner()
GPU = "fake_gpu"  # the custom resource that stands for a GPU on the test cluster
GPU_TYPE = "FakeH100"  # its accelerator type
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module: 2 CPUs, 2 fake GPUs of one type. The fake device and this
    module travel to the workers by value: they are not importable there."""
    ray.cloudpickle.register_pickle_by_value(fake_device)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        address="local",
        num_cpus=2,
        resources={GPU: 2, f"accelerator_type:{GPU_TYPE}": 1},
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_a_prediction_sweep_gives_each_cell_the_report_predict_gives_alone(cluster, tmp_path, monkeypatch):
    # Set here, after the cluster started: the workers see it only because the sweep sends it.
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    strategies = ("vllm", "sglang", "tensorrt-llm")
    args = ["--model", "tiny-qwen2-vl", "--model", "tiny-siglip", "--budgets", "64,128", "--as", ",".join(strategies)]
    result = runner.invoke(
        app, ["sweep", "--on", "ray", "--predict", *args, "--out", str(tmp_path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)["cells"]
    assert json.loads((tmp_path / "sweep.json").read_text())["cells"] == cells
    assert [(c["model"], c["strategy"]) for c in cells] == [
        (m, s) for m in ("tiny-qwen2-vl", "tiny-siglip") for s in strategies
    ]
    node = ray.util.get_node_ip_address()
    for c in cells:
        assert (c["exit_code"], c["message"], c["gpu_capability"], c["node"], c["gpu"]) == (0, "", "9.0", node, None)
        alone = tmp_path / f"alone.{c['report']}"
        run_alone = ["predict", "--model", c["model"], "--budgets", "64,128", "--as", c["strategy"], "--json", alone]
        assert runner.invoke(app, [str(a) for a in run_alone]).exit_code == 0
        swept = comparable(tmp_path / c["report"])
        expected = comparable(alone)
        assert (swept["provenance"].pop("node"), expected["provenance"].pop("node")) == (node, None)
        assert swept == expected
        assert swept["provenance"]["allocator_conf"] == "expandable_segments:True"


class DiesAt512(FakeDevice):
    """A fake GPU whose process dies at the capture of budget 512, as one a failed capture poisoned might."""

    def capture(self, fn, pool, stream, what):
        if what.endswith(" 512"):
            os._exit(9)
        return super().capture(fn, pool, stream, what)


def test_measurements_take_a_gpu_each_and_a_failed_or_lost_cell_does_not_stop_the_rest(cluster, tmp_path):
    cells = [Cell("tiny-qwen2-vl", ladder, "vllm", gpu_type=GPU_TYPE) for ladder in ((64, 128), (64, 256), (64, 512))]
    seen = []
    results = sweep_ray.run(
        cells,
        tmp_path,
        on_result=lambda result, done, total: seen.append((result, done, total)),
        gpu_resource=GPU,
        device=functools.partial(DiesAt512, fail_capture=(256,)),
    )
    assert [r.cell for r in results] == cells
    assert seen[0] == (None, 0, 3)  # the cluster has taken the sweep
    assert [(done, total) for _, done, total in seen[1:]] == [(1, 3), (2, 3), (3, 3)]
    assert {result for result, *_ in seen[1:]} == set(results)
    ok, failed, lost = results
    assert (ok.exit_code, ok.message, ok.node) == (0, "", ray.util.get_node_ip_address())
    report = report_io.load(ok.report)
    assert report.provenance.gpu_name == "Fake GPU 80GB"  # measured on the fake device, in the worker
    assert report.provenance.node == ok.node
    assert ok.report == tmp_path / "tiny-qwen2-vl.64-128.vllm.FakeH100.json"
    assert failed.exit_code == 4 and "256 (capture failed)" in failed.message and failed.report.is_file()
    assert lost.exit_code == 70 and lost.message.startswith("lost on Ray (") and lost.report is None


def test_each_cell_asks_ray_for_what_it_needs():
    measured, predicted = Cell("m", (64,), "vllm", gpu_type="H100"), Cell("m", (64,), "vllm", capability=(9, 0))
    assert sweep_ray._options(predicted, "GPU") == {"num_cpus": 1}
    assert sweep_ray._options(measured, "GPU") == {"num_cpus": 1, "num_gpus": 1, "accelerator_type": "H100"}
    assert sweep_ray._options(Cell("m", (64,), "vllm"), GPU) == {"num_cpus": 1, "resources": {GPU: 1}}


@pytest.mark.parametrize(
    "resources, cell, message",
    [
        ({"CPU": 2}, Cell("m", (64,), "vllm"), "the Ray cluster has no GPU (GPU resource)"),
        (
            {"CPU": 2, "GPU": 8, "accelerator_type:H100": 1},
            Cell("m", (64,), "vllm", gpu_type="L40S"),
            "--gpu-type L40S: no node of the Ray cluster has one; it has H100",
        ),
    ],
)
def test_a_sweep_that_would_wait_forever_is_refused(resources, cell, message):
    sweep_ray.check_room(resources, [Cell("m", (64,), "vllm", capability=(9, 0))], "GPU")  # predictions: CPUs
    with pytest.raises(EnvironmentProblem, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        sweep_ray.check_room(resources, [cell], "GPU")


def test_measurements_on_a_cluster_without_gpus_are_refused_before_any_cell_runs(cluster, tmp_path):
    """The test cluster's GPUs are a custom resource: to the CLI, which asks for Ray's GPUs, it has none."""
    result = runner.invoke(
        app, ["sweep", "--on", "ray", "--model", "tiny-qwen2-vl", "--budgets", "64", "--out", str(tmp_path)]
    )
    assert result.exit_code == 3
    assert result.output == "error: the Ray cluster has no GPU (GPU resource); `sweep --predict` runs on its CPUs\n"
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_cancels_the_cells_not_started_and_keeps_what_finished(cluster, tmp_path):
    ladders = [arg for budget in (64, 128, 192, 256, 320, 384) for arg in ("--budgets", str(budget))]
    args = ["sweep", "--on", "ray", "--predict", "--model", "tiny-siglip", *ladders, "--workers", "1"]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "encgraph_profiler", *args, "--out", str(tmp_path)],
        env={**os.environ, "RAY_ADDRESS": cluster},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # Ctrl-C reaches it even where this test runs with SIGINT ignored (a background job).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("tiny-siglip.*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        sweep.send_signal(signal.SIGINT)
        _, stderr = sweep.communicate(timeout=90)
    finally:
        sweep.kill()
    assert sweep.returncode == 130, stderr
    cells = json.loads((tmp_path / "sweep.json").read_text())["cells"]
    assert len(cells) == 6 and cells[0]["exit_code"] == 0  # one cell at a time: the first finished
    assert cells[-1] == cells[-1] | {"exit_code": 130, "report": None, "message": "not run: the sweep was interrupted"}
    kept = sorted(p.name for p in tmp_path.glob("tiny-siglip.*.json"))
    assert kept == sorted(c["report"] for c in cells if c["exit_code"] == 0)


@pytest.mark.parametrize("where", ["submitting", "recording"])
def test_ctrl_c_in_the_middle_of_a_submission_or_a_recording_loses_no_cell(cluster, tmp_path, monkeypatch, where):
    # The moments the SIGINT above can fall on by chance, made certain: Ctrl-C while the second cell
    # is being submitted, or while the first one's report is being written.
    calls = {"n": 0}
    if where == "submitting":
        options = sweep_ray._options

        def interrupted_options(cell, gpu_resource):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return options(cell, gpu_resource)

        monkeypatch.setattr(sweep_ray, "_options", interrupted_options)
    else:
        write = sweep_ray.write_atomic

        def interrupted_write(path, text):
            calls["n"] += 1
            write(path, text)
            if calls["n"] == 1:
                raise KeyboardInterrupt

        monkeypatch.setattr(sweep_ray, "write_atomic", interrupted_write)
    cells = [Cell("tiny-siglip", (budget,), "vllm", capability=(9, 0)) for budget in (64, 128, 192)]
    results = sweep_ray.run(cells, tmp_path, workers=1)
    assert [r.cell for r in results] == cells
    assert results[0].exit_code == 0 and report_io.load(results[0].report).pools
    assert [(r.exit_code, r.message) for r in results[1:]] == [(130, "not run: the sweep was interrupted")] * 2
