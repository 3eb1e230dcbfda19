"""CLI behaviour through typer's CliRunner: exit codes, messages, output formats."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import grow_largest_pool, write
from typer.testing import CliRunner

from encgraph_profiler.cli import build_app
from encgraph_profiler.models.registry import refusals

app = build_app()

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("profile", "graphs", "check", "plan", "models"):
        assert command in result.output
    assert run("-h").output == result.output
    assert run("predict", "-h").output == run("predict", "--help").output


def test_fast_commands_do_not_import_torch(recorded_report_path):
    code = (
        "import sys; from encgraph_profiler.cli import build_app; from typer.testing import CliRunner; "
        "app, r = build_app(), CliRunner(); "
        "assert r.invoke(app, ['--help']).exit_code == 0; "
        "assert r.invoke(app, ['graphs']).exit_code == 0; "
        "assert r.invoke(app, ['models']).exit_code == 0; "
        f"report = {str(recorded_report_path)!r}; "
        "assert r.invoke(app, ['check', report, report]).exit_code == 0; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_imports_only_the_command_it_was_given():
    code = (
        "import sys; sys.argv = ['encgraph', 'models', '--format', 'json']; from encgraph_profiler.cli import main\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('encgraph_profiler.cli.'))\n"
        "assert loaded == ['encgraph_profiler.cli.models', 'encgraph_profiler.cli.options', "
        "'encgraph_profiler.cli.output'], loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_graphs_line_and_json():
    result = run("graphs", "--budgets", "1024,2048,4096")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == (
        "Profiling CUDA graph memory: PIECEWISE=51 (largest=512), FULL=35 (largest=256), ENCODER=3 (largest=4096)"
    )
    data = json.loads(run("graphs", "--max-num-seqs", "128", "--format", "json").output)
    assert [(g["kind"], g["count"], g["largest"]) for g in data["groups"]] == [
        ("PIECEWISE", 35, 256),
        ("FULL", 19, 128),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["--max-num-seqs", "0"],
        ["--max-num-batched-tokens", "-5"],
        ["--cudagraph-mode", "MAYBE"],
        ["--cudagraph-capture-sizes", "1,2,99999"],
        ["--budgets", "1024,abc"],
    ],
)
def test_graphs_bad_input_exit_2(args):
    result = run("graphs", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_profile_without_gpu_exits_3_with_what_still_works():
    result = run("profile", "--model", "tiny-qwen2-vl", "--budgets", "64,128")
    assert result.exit_code == 3
    assert "no CUDA device" in result.output and "`encgraph predict` answers without one" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "qwen9-vl"], "unknown model"),
        (["--budgets", "1024,1024"], "given twice"),
        (["--budgets", "0"], "positive"),
        (["--budgets", "64,128", "--max-items", "65"], "larger than the smallest"),
        (["--dtype", "int3"], "unknown --dtype"),
        (["--attn", "magic"], "unknown --attn"),
    ],
)
def test_profile_bad_input_exit_2_before_gpu(args, message):
    result = run("profile", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_models_lists_families_and_configs_with_parameter_counts():
    result = run("models", "--format", "json")
    data = json.loads(result.output)
    rows = data["models"]
    assert {"qwen3_5_moe", "qwen2_vl", "glm4v", "llama4", "smolvlm", "siglip"} <= {
        t for f in data["families"] for t in f["model_types"]
    }
    assert len(rows) == 30
    forms = {f["family"]: f["authors_own_forms"] for f in data["families"]}
    assert (forms["internvl"], forms["lfm2-vl"], forms["ernie4.5-vl"], forms["deepseek-ocr2"], forms["qwen2-vl"]) == (
        ["internvl_chat"],
        ["lfm2-vl"],
        ["ernie4_5_moe_vl"],
        ["deepseek_vl_v2"],
        [],
    )
    assert {r["name"]: r["aliases"] for r in rows}["smolvlm2-500m"] == ["smolvlm", "smolvlm2", "smolvlm2-500m-video"]
    assert {r["name"]: r["aliases"] for r in rows}["glm-4.1v-9b"] == ["glm-4.1v", "glm4v"]
    assert {r["name"]: r["aliases"] for r in rows}["kimi-vl-a3b"] == ["kimi-vl"]
    assert {r["name"]: r["tower_parameters"] for r in rows}["qwen2-vl-7b"] == 675_759_104
    assert data["by_id_only"]["step-3.7"] == "stepfun-ai/Step-3.7-Flash"
    refused = {r["model_type"]: r for r in data["refused"]}
    assert set(refused) == set(refusals()) >= {"minicpmv4_6", "step3_vl"}
    assert "resampler" in refused["minicpmv4_6"]["reason"]
    captures = {(c["file"], c["class"]): c for c in data["vllm_captures"]}
    assert data["vllm_version"] == "0.33.0" and len(captures) == 22
    minicpm = captures["model_executor/models/minicpmv.py", "_MiniCPMVEncoderCudaGraphMixin"]
    assert (minicpm["status"], minicpm["supported_by"]) == ("supported", ["minicpmv"])
    qwen2 = captures["model_executor/models/qwen2_vl.py", "Qwen2VLForConditionalGeneration"]
    assert (qwen2["status"], qwen2["supported_by"]) == ("supported", ["qwen2-vl"])
    table = run("models").output
    assert (
        "No bundled config for step-3.7, step-3.7-flash, step3p7: give its Hugging Face id (stepfun-ai/Step-3.7-Flash)"
        in " ".join(table.split())
    )
    assert "Not supported, each refused with its reason" in " ".join(table.split())
    assert "step3_vl (step3)" in " ".join(table.split())
    assert "Where vLLM 0.33.0 captures encoder CUDA graphs" in table


def test_check_exit_codes(recorded_report_path, recorded_report_data, tmp_path):
    grown = write(tmp_path / "grown.json", grow_largest_pool(recorded_report_data, 0.10))
    result = run("check", str(recorded_report_path), str(grown))
    assert result.exit_code == 1 and "budget 8192 pool_reserved_bytes (+10.0%)" in result.output
    assert run("check", str(recorded_report_path), str(recorded_report_path)).exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text(recorded_report_path.read_text()[:300])
    result = run("check", str(bad), str(grown))
    assert result.exit_code == 5 and "Traceback" not in result.output
    assert run("check", str(recorded_report_path), str(grown), "--tolerance", "lots").exit_code == 2


def test_check_json_output_is_clean(recorded_report_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "encgraph_profiler",
            "check",
            str(recorded_report_path),
            str(recorded_report_path),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["passed"] is True


def test_plan_exit_codes(recorded_report_path):
    fits = run("plan", "--from", str(recorded_report_path), "--gpu", "H100-80GB")
    assert fits.exit_code == 0 and "958,949" in fits.output and "--kv-cache-memory=54990005657" in fits.output
    tight = run("plan", "--from", str(recorded_report_path), "--gpu", "L4", "--gpu-memory-utilization", "0.5")
    assert tight.exit_code == 6 and "does not fit" in tight.output and "short by" in tight.output
    for args in (["--gpu-memory", "eighty"], ["--gpu-memory-utilization", "1.2"], ["--gpu-memory", "-80GiB"]):
        assert run("plan", "--from", str(recorded_report_path), *args).exit_code == 2
    assert run("plan").exit_code == 2
    what_if = run("plan", "--from", str(recorded_report_path), "--what-if", "H100-80GB,L4,0.8", "--format", "json")
    assert [w["fits"] for w in json.loads(what_if.output)["what_if"]] == [True, False, True]


def test_a_plan_that_does_not_fit_shows_no_negative_kv_cache():
    """Qwen2-VL-7B on an L4: the terms take 0.26 GiB more than the request; shown as that, never as -0.26."""
    example = Path(__file__).parent.parent / "examples" / "qwen2-vl-7b.h100.json"
    result = run("plan", "--from", str(example), "--gpu", "L4")
    assert result.exit_code == 6, result.output
    assert "the terms exceed the request by" in result.output and "-0.26" not in result.output
    what_if = run("plan", "--from", str(example), "--what-if", "L4")
    assert "-0.26" not in what_if.output and "0.00" in what_if.output


def test_what_if_gpus_plan_a_prediction_without_gpu(tmp_path):
    """A prediction is for no particular GPU: GPUs named by --what-if are enough, the first one planned."""
    predicted = tmp_path / "predicted.json"
    assert run("predict", "--model", "tiny-qwen2-vl", "--budgets", "64,128", "--json", str(predicted)).exit_code == 0
    result = run("plan", "--from", str(predicted), "--what-if", "H100-80GB,A100-40GB", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["gpu"].startswith("H100-80GB") and len(data["what_if"]) == 2
    assert run("plan", "--from", str(predicted), "--what-if", "0.8,0.9").exit_code == 2  # no GPU named at all
    aisimulate = run("plan", "--from", str(predicted), "--gpu", "H100-80GB", "--format", "aisimulate")
    header = aisimulate.output.splitlines()[0]
    assert header.endswith("(64, 128), predicted for compute capability 9.0"), header


def test_predict_table_has_no_always_empty_columns_and_fits_80_columns():
    """A prediction runs nothing: no time, replay or outside-the-allocator columns; COLUMNS=80 is obeyed
    when the output is piped."""
    result = subprocess.run(
        [sys.executable, "-m", "encgraph_profiler", "predict", "--model", "tiny-qwen2-vl", "--budgets", "64,128"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    tables = [line for line in result.stdout.splitlines() if line[:1] in "┃│┏┡└"]
    assert tables and max(len(line) for line in tables) <= 80
    assert "budget" in result.stdout and "capture ms" not in result.stdout and "replay" not in result.stdout
