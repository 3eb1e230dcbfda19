"""Capacity plans from the committed real report, checked against hand computations."""

import pytest

from encgraph_profiler.errors import UsageError
from encgraph_profiler.gpus import GPU_PRESETS
from encgraph_profiler.plan import PlanInputs, gpu_memory, parse_utilization, plan
from encgraph_profiler.report_io import from_dict
from encgraph_profiler.units import parse_size

GiB, MiB = 1024**3, 1024**2


def test_h100_plan_matches_hand_computation(recorded_report_data):
    report = from_dict(recorded_report_data)
    result = plan(report, PlanInputs(*gpu_memory("H100-80GB", None), 0.9))
    # Hand computation from the report's figures:
    requested = int(85_017_493_504 * 0.9)  # 76,515,744,153: CUDA's total for the H100 80GB HBM3
    weights = 8_291_375_616 * 2  # Qwen2-VL-7B parameters x bf16
    activation = 1_447_034_880  # eager peak of the 8192 budget
    outside = 847_249_408  # outside the allocator
    encoder = 2_648_702_976  # encoder graph pool
    kv = requested - weights - activation - outside - encoder
    assert kv == 54_990_005_657 == result.kv_cache_bytes
    per_token = 2 * 28 * 4 * 128 * 2  # layers x KV heads x head dim x K and V x bf16
    assert result.kv_tokens == kv // per_token == 958_949
    assert result.concurrency == pytest.approx(958_949 / 32768)
    assert result.fits
    assert [t.source for t in result.terms] == [
        "preset",
        "config",
        "measured",
        "measured",
        "not measured",
        "measured",
        "user",
    ]
    assert "--kv-cache-memory=54990005657" in result.vllm_flags
    assert result.kv_is_upper_bound and "at most 958,949 KV tokens" in result.verdict
    assert '"encoder_cudagraph_token_budgets": [1024, 2048, 4096, 8192]' in result.vllm_flags
    assert '"encoder_cudagraph_max_vision_items_per_batch": 128' in result.vllm_flags
    assert result.tokens_per_graph_gib == GiB // per_token


def test_impossible_fit_gives_shortfall(recorded_report_data):
    report = from_dict(recorded_report_data)
    result = plan(report, PlanInputs(*gpu_memory("L4", None), 0.5))
    assert not result.fits and "no room for the KV cache" in result.verdict
    needed = 32768 * 57344
    assert result.shortfall_bytes == needed - result.kv_cache_bytes
    assert result.fitting_ladder is None  # not even without encoder graphs


def test_fitting_ladder_drops_top_budgets(recorded_report_data):
    report = from_dict(recorded_report_data)
    # Room for the weights, a bit of KV cache and a short context, but not the full 2.5 GiB pool.
    tight = PlanInputs("tight", int(20.1 * GiB), "user", 1.0, max_model_len=4096)
    result = plan(report, tight)
    assert not result.fits
    assert result.fitting_ladder == (1024, 2048, 4096)
    assert (result.max_model_len, result.max_model_len_source) == (4096, "user")
    assert plan(report, PlanInputs("x", 80 * GiB, "user")).max_model_len_source == "config"


def test_kv_cache_dtype_and_user_terms(recorded_report_data):
    report = from_dict(recorded_report_data)
    base = plan(report, PlanInputs("x", 80 * GiB, "user"))
    fp8 = plan(report, PlanInputs("x", 80 * GiB, "user", kv_cache_dtype="fp8"))
    assert fp8.kv_bytes_per_token * 2 == base.kv_bytes_per_token
    user = plan(
        report, PlanInputs("x", 80 * GiB, "user", decoder_graph_bytes=GiB, margin_bytes=GiB, activation_bytes=0)
    )
    assert user.kv_cache_bytes == base.kv_cache_bytes - 2 * GiB + 1_447_034_880


def test_sizes_and_bad_input():
    assert parse_size("80GiB") == 80 * GiB
    assert parse_size("80GB") == 80 * 10**9
    assert parse_size("81920MiB") == 80 * GiB
    for bad in ("eighty", "-5GiB", "80 parsecs"):
        with pytest.raises(UsageError):
            parse_size(bad)
    with pytest.raises(UsageError, match=r"\(a unit is needed: 400 alone could be bytes or GiB\)"):
        parse_size("400", "--tolerance-abs")
    for bad in ("1.5", "0", "-0.2", "most"):
        with pytest.raises(UsageError):
            parse_utilization(bad)
    with pytest.raises(UsageError, match="unknown --gpu"):
        gpu_memory("H800", None)
    assert gpu_memory("h200-141gb", None)[1] == GPU_PRESETS["H200-141GB"]


def test_encoder_only_model_plans_encoder_side(recorded_report_data):
    data = {
        **recorded_report_data,
        "model": {
            **recorded_report_data["model"],
            "total_parameters": None,
            "weight_bytes": None,
            "kv_bytes_per_token": None,
        },
    }
    result = plan(from_dict(data), PlanInputs("x", 80 * GiB, "user"))
    assert result.kv_tokens is None and result.fits
    assert any("encoder only" in n for n in result.notes)


def test_a_gpu_preset_is_named_in_full_or_by_its_gpu_where_one_preset_has_it():
    assert gpu_memory("h200", None)[:2] == ("H200-141GB", 143_156 * 1024**2)
    assert gpu_memory("H100", None)[0] == gpu_memory("H100-80GB", None)[0] == "H100-80GB"
    assert gpu_memory("l40s", None)[0] == "L40S"
    with pytest.raises(UsageError, match="A100-80GB or A100-40GB"):
        gpu_memory("A100", None)
    with pytest.raises(UsageError, match="unknown --gpu 'RTX'"):
        gpu_memory("RTX", None)
