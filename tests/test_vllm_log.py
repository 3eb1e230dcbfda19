"""vLLM start-up logs in: the figures each format carries, and plans made with them (CPU).

The fixtures in tests/data/vllm_logs are log excerpts as posted in public issue threads, each file
naming its thread; their figures below are typed from the excerpts by hand."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from encgraph_profiler.cli import build_app
from encgraph_profiler.errors import UsageError
from encgraph_profiler.plan import LOG, PlanInputs, plan
from encgraph_profiler.report_io import PoolName, load
from encgraph_profiler.vllm_log import parse, read

app = build_app()

LOGS = Path(__file__).parent / "data" / "vllm_logs"
EXAMPLE = Path(__file__).parent.parent / "examples" / "qwen2-vl-7b.h100.json"
GiB = 1024**3


def g(value: float) -> int:
    return round(value * GiB)


# Each fixture's figures as its lines state them.
EXPECTED = {
    "2025-01-v1-llama70b.log": dict(
        model="neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8",
        utilization=0.98,
        weights_bytes=g(67.7229),
        max_model_len=2048,
        concurrency=10.79,
    ),
    "2025-03-v0-profiling.log": dict(
        total_bytes=g(79.19),
        utilization=0.90,
        weights_bytes=g(12.55),
        non_torch_bytes=g(0.16),
        activation_bytes=g(2.38),
        kv_cache_bytes=g(56.18),
    ),
    "2026-04-qwen35-estimate.log": dict(
        graph_estimate_bytes=g(0.73), graph_counts="PIECEWISE=51 (largest=512), FULL=35 (largest=256)"
    ),
    "2026-05-encoder-cache.log": dict(weights_bytes=g(12.66)),
    "2026-05-graph-pool.log": dict(
        graph_actual_bytes=g(0.11),
        graph_estimate_bytes=g(0.14),
        kv_tokens=396_928,
        max_model_len=131_072,
        concurrency=3.03,
    ),
    "2026-05-tp4-kv.log": dict(utilization=0.92, graph_estimate_bytes=g(0.17), kv_cache_bytes=g(15.72)),
    "2026-06-mrv2-model-loading.log": dict(weights_bytes=g(7.64)),
    "2026-08-v0.27.1-tp2-estimate.log": dict(
        utilization=0.82, graph_estimate_bytes=g(0.36), kv_cache_bytes=g(6.87), graph_counts="PIECEWISE=16 (largest=16)"
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_log_gives_the_figures_its_lines_state(name):
    log = read(LOGS / name)
    found = {k: v for k, v in vars(log).items() if k not in ("source", "lines", "encoder_graphs") and v is not None}
    assert found == EXPECTED[name]
    assert set(log.lines) == set(EXPECTED[name])  # every figure names the line it came from


def test_the_fixtures_span_the_formats():
    assert len(EXPECTED) >= 6
    texts = {name: (LOGS / name).read_text() for name in EXPECTED}
    assert any("[worker.py:" in t for t in texts.values())  # V0's worker
    assert any("gpu_worker.py" in t for t in texts.values())  # V1
    assert any("[model_runner.py:" in t for t in texts.values())  # Model Runner V2
    assert all(t.startswith("# Source: https://github.com/") for t in texts.values())


def test_encoder_graphs_in_the_graph_line_are_noticed():
    log = parse(
        "INFO [gpu_model_runner.py:1] Profiling CUDA graph memory: PIECEWISE=51 (largest=512), FULL=35 (largest=256), "
        "ENCODER=3 (largest=4096)\nINFO [gpu_model_runner.py:2] Estimated CUDA graph memory: 1.25 GiB total\n"
    )
    assert log.encoder_graphs and log.graph_estimate_bytes == g(1.25)


def _plan(name, **kwargs):
    # The logs are of other models than the report's: their arithmetic is what these tests check, so the
    # report's model is made large enough for any of them (a log of a larger model is refused otherwise).
    report = load(EXAMPLE)
    report = replace(report, model=replace(report.model, total_parameters=10**12))
    log = read(LOGS / name)
    total = log.total_bytes or report.provenance.gpu_total_bytes
    source = LOG if log.total_bytes else "report"
    inputs = PlanInputs(
        "gpu",
        total,
        source,
        log.utilization or 0.9,
        log=log,
        utilization_source=LOG if log.utilization else "default",
        **kwargs,
    )
    return report, plan(report, inputs)


def test_the_v0_profiling_log_plans_as_a_hand_computation():
    """79.19 GiB x 0.90, less the logged 12.55 GiB weights, 2.38 GiB activation peak and 0.16 GiB
    non-torch memory, less the encoder pool measured in the report."""
    report, result = _plan("2025-03-v0-profiling.log")
    encoder = report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    by_hand = int(g(79.19) * 0.90) - g(12.55) - g(2.38) - g(0.16) - encoder
    assert result.kv_cache_bytes == by_hand
    sources = {t.name: t.source for t in result.terms}
    assert [s for s in sources.values()].count(LOG) == 4  # requested, weights, activation, non-torch
    assert not result.kv_is_upper_bound  # the activation peak is vLLM's own
    # vLLM's own KV cache less the encoder pool is what this plan leaves, to the log's rounding.
    assert abs(result.kv_cache_bytes - (g(56.18) - encoder)) < 0.01 * GiB


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_log_plans_as_a_hand_computation(name):
    report, result = _plan(name)
    log = read(LOGS / name)
    encoder = report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    total = log.total_bytes or report.provenance.gpu_total_bytes
    weights = log.weights_bytes if log.weights_bytes is not None else report.model.weight_bytes
    activation = (
        log.activation_bytes if log.activation_bytes is not None else max(b.eager_peak_bytes for b in report.budgets)
    )
    outside = (
        log.non_torch_bytes
        if log.non_torch_bytes is not None
        else report.pool(PoolName.OUTSIDE_ALLOCATOR).reserved_bytes
    )
    graphs = log.graph_actual_bytes if log.graph_actual_bytes is not None else (log.graph_estimate_bytes or 0)
    assert (
        result.kv_cache_bytes
        == int(total * (log.utilization or 0.9)) - weights - activation - outside - graphs - encoder
    )
    logged = {t.name for t in result.terms if t.source == LOG}
    assert bool(logged) and all(
        n.startswith(("requested", "weights", "activation", "outside", "decoder")) for n in logged
    )


def test_a_log_with_missing_lines_says_what_fell_back_and_to_what():
    _, result = _plan("2026-06-mrv2-model-loading.log")
    missing = next(n for n in result.notes if n.startswith("the vLLM log has no line for"))
    assert "total GPU memory (took report (gpu))" in missing
    assert "gpu_memory_utilization (took default (0.9))" in missing
    assert "activation peak (took measured)" in missing
    assert "CUDA graph memory (took not measured (0))" in missing
    assert "model loading" not in missing
    assert any(n.startswith("the log sets weights to 7.64 GiB") for n in result.notes)
    assert result.kv_is_upper_bound  # the activation peak fell back to the encoder's alone


def test_the_graph_pool_log_takes_the_captured_figure_over_the_estimate():
    _, result = _plan("2026-05-graph-pool.log")
    graphs = next(t for t in result.terms if t.name.startswith("decoder graphs vLLM captured"))
    assert graphs.bytes == g(0.11) and graphs.source == LOG
    assert result.max_model_len == 131_072  # the deployment's, from the concurrency line
    assert result.max_model_len_source == LOG


def test_plan_cli_with_a_vllm_log(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["plan", "--from", str(EXAMPLE), "--vllm-log", str(LOGS / "2025-03-v0-profiling.log"), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["terms"][0]["source"] == LOG and data["terms"][1] == {
        "name": "weights",
        "bytes": g(12.55),
        "source": LOG,
    }
    # The user's utilization wins over the log's.
    data = json.loads(
        runner.invoke(
            app,
            [
                "plan",
                "--from",
                str(EXAMPLE),
                "--vllm-log",
                str(LOGS / "2025-03-v0-profiling.log"),
                "--gpu-memory-utilization",
                "0.8",
                "--format",
                "json",
            ],
        ).stdout
    )
    assert (
        data["terms"][0]["bytes"] == int(g(79.19) * 0.8) and data["terms"][0]["source"] == LOG
    )  # the total is still the log's
    (tmp_path / "other.log").write_text("INFO starting the server\nall good\n")
    for path, message in (
        (tmp_path / "missing.log", "cannot read --vllm-log"),
        (tmp_path / "other.log", "has no line vLLM logs"),
    ):
        result = runner.invoke(app, ["plan", "--from", str(EXAMPLE), "--vllm-log", str(path)])
        assert result.exit_code == 2 and message in result.output


def test_read_refuses_a_log_without_memory_lines(tmp_path):
    (tmp_path / "x.log").write_text("hello\n")
    with pytest.raises(UsageError, match="no line vLLM logs about memory"):
        read(tmp_path / "x.log")


# The shapes of V1's one-line memory summary in two releases (figures made up): one gives weights
# and non-torch memory apart, the newer one together, with the weights on the model-loading line.
SUMMARY_WEIGHT = (
    "INFO [gpu_worker.py:391] Free memory on device (78.00/80.00 GiB) on startup. Desired GPU memory utilization is "
    "(0.9, 72.00 GiB). Actual usage is 14.00 GiB for weight, 2.00 GiB for peak activation, 0.50 GiB for non-torch "
    "memory, and 1.00 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with "
    "`--kv-cache-memory=58000000000` to fit into requested memory, or `--kv-cache-memory=66000000000` to fully "
    "utilize gpu memory. Current kv cache memory in use is 59000000000 bytes."
)
SUMMARY_CONSUMED = (
    "INFO [gpu_model_runner.py:1] Model loading took 10.00 GiB memory and 9.0 seconds\n"
    "INFO [gpu_worker.py:804] Free memory on device (79.99/80.0 GiB) on startup. Desired GPU memory "
    "utilization is (0.92, 73.6 GiB). Actual usage is 10.50 GiB for consumed memory (weights + "
    "non-torch), 2.4 GiB for peak activation, and 0.71 GiB for CUDAGraph memory. Replace "
    "gpu_memory_utilization config with `--kv-cache-memory=20064085607` (18.69 GiB) to fit into "
    "requested memory, or `--kv-cache-memory=26927570944` (25.08 GiB) to fully utilize gpu memory. "
    "Current kv cache memory in use is 19.54 GiB."
)


def test_the_one_line_summary_gives_every_term():
    a = parse(SUMMARY_WEIGHT)
    assert (
        a.total_bytes,
        a.utilization,
        a.weights_bytes,
        a.activation_bytes,
        a.non_torch_bytes,
        a.graph_actual_bytes,
    ) == (g(80), 0.9, g(14), g(2), g(0.5), g(1))
    assert (a.kv_cache_bytes, a.kv_cache_suggested_bytes) == (
        59_000_000_000,
        58_000_000_000,
    )  # exact where vLLM logs bytes
    b = parse(SUMMARY_CONSUMED)
    assert (b.weights_bytes, b.consumed_bytes, b.non_torch_bytes) == (g(10), g(10.5), g(10.5) - g(10))
    assert (b.utilization, b.kv_cache_bytes, b.kv_cache_suggested_bytes) == (0.92, g(19.54), 20_064_085_607)


def test_vllms_suggestion_is_restated_with_the_encoder_pool(tmp_path):
    (tmp_path / "server.log").write_text(SUMMARY_WEIGHT)
    report = load(EXAMPLE)
    log = read(tmp_path / "server.log")
    result = plan(report, PlanInputs("gpu", log.total_bytes, LOG, log.utilization, log=log, utilization_source=LOG))
    pool = report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes
    assert f"--kv-cache-memory={58_000_000_000 - pool}" in " ".join(result.notes)
    assert result.kv_cache_bytes == int(g(80) * 0.9) - g(14) - g(2) - g(0.5) - g(1) - pool


def test_aisimulate_format_reserves_every_graph_of_the_plan():
    """The KV-capacity block AISimulate reads: cuda_graph_reserved_bytes holds the measured encoder
    pool, plus the decoder graphs where a vLLM log gives them."""
    runner = CliRunner()
    pool = load(EXAMPLE).pool(PoolName.ENCODER_GRAPHS).reserved_bytes

    def block(*extra):
        result = runner.invoke(app, ["plan", "--from", str(EXAMPLE), "--format", "aisimulate", *extra])
        assert result.exit_code == 0, result.output
        values = dict(
            line.strip().split(": ", 1)
            for line in result.stdout.splitlines()
            if not line.startswith("#") and ": " in line
        )
        assert (
            result.stdout.splitlines()[0].startswith("# encgraph plan for qwen2-vl-7b")
            and "4 encoder CUDA graphs" in result.stdout
        )
        return values

    assert block() == {"type": "default", "memory_fraction": "0.9", "cuda_graph_reserved_bytes": str(pool)}
    with_log = block("--vllm-log", str(LOGS / "2026-05-graph-pool.log"), "--gpu-memory-utilization", "0.85")
    assert with_log["cuda_graph_reserved_bytes"] == str(pool + g(0.11)) and with_log["memory_fraction"] == "0.85"


def test_a_log_of_a_model_larger_than_the_reports_is_refused():
    """Llama 3.1 70B loaded 67.72 GiB, more than Qwen2-VL-7B's 8.29 B parameters hold in float32."""
    result = CliRunner().invoke(
        app, ["plan", "--from", str(EXAMPLE), "--vllm-log", str(LOGS / "2025-01-v1-llama70b.log")]
    )
    assert result.exit_code == 2, result.output
    assert "--vllm-log: its model (neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8) loaded 67.72 GiB" in (
        result.output
    )
    assert "it is another model's log" in result.output and result.output.count("error:") == 1
