"""GPU tier: real captures on a CUDA device. Skipped where no CUDA device is visible."""

import pytest

from encgraph_profiler.models.registry import adapters, tiny_config_name

pytestmark = pytest.mark.gpu

MiB, GiB = 1024**2, 1024**3


def _profile(model, budgets, **kwargs):
    from helpers import measured, request

    return measured(request(model, budgets, **kwargs))


def test_largest_first_pool_equals_largest_budget_alone():
    import gc

    import torch

    # vLLM's layout: the auto rule gives 64 images per batch for this ladder, so the lone 4096
    # budget is captured with the same 64 images.
    ladder = _profile("qwen2-vl-7b", (1024, 2048, 4096))
    gc.collect()
    torch.cuda.empty_cache()
    alone = _profile("qwen2-vl-7b", (4096,), max_items=64)
    ladder_pool = ladder.pool("encoder_graphs").reserved_bytes
    alone_pool = alone.pool("encoder_graphs").reserved_bytes
    assert abs(ladder_pool - alone_pool) <= 4 * MiB, (ladder_pool, alone_pool)
    # Smaller budgets fit into what the largest left behind: growth beyond the first is small.
    growth = {b.budget: b.pool_growth_bytes for b in ladder.budgets}
    assert growth[4096] > 100 * MiB
    assert growth[1024] + growth[2048] <= 4 * MiB


@pytest.mark.parametrize("model", [tiny_config_name(a) for a in adapters() if a.paths == ("",)])
def test_replay_equals_eager_for_every_family(model):
    from encgraph_profiler.request import ProfileRequest, prepare

    report = _profile(model, (64, 128, 256))
    graphs = len(prepare(ProfileRequest(model=model, budgets=(64, 128, 256))).layouts)  # 3, or 3 per Gemma 4 row width
    assert [b.replay_matches_eager for b in report.budgets] == [True] * graphs >= [True] * 3
    assert all(b.pool_reserved_bytes > 0 for b in report.budgets)


TWO_PATHS = {tiny_config_name(a) for a in adapters() if a.paths != ("",)}


def test_every_two_path_family_is_tested_below():
    assert {model for model, _, _ in TWO_PATH_LADDERS} == TWO_PATHS


TWO_PATH_LADDERS = [
    ("tiny-step3p7", (81, 162), [("global", 64), ("global", 128), ("global", 162), ("local", 81), ("local", 162)]),
    ("tiny-step3-vl", (81, 162), [("global", 64), ("global", 128), ("global", 162), ("local", 81), ("local", 162)]),
    (
        "tiny-deepseek-ocr",
        (100, 300),
        [("global", 272), ("global", 300), ("local", 100), ("local", 200), ("local", 300)],
    ),
    (
        "tiny-deepseek-ocr2",
        (256, 512),
        [("global", 256), ("global", 512), ("local", 144), ("local", 288), ("local", 512)],
    ),
]


@pytest.mark.parametrize("model, budgets, graphs", TWO_PATH_LADDERS)
def test_two_path_family_captures_both_paths_and_replays(model, budgets, graphs):
    """Step-3.7, Step3-VL, DeepSeek-OCR and OCR 2: each path's ladder in one pool, every graph replaying as eager."""
    report = _profile(model, budgets)
    assert [(b.path, b.budget) for b in report.budgets] == graphs
    assert [b.replay_matches_eager for b in report.budgets] == [True] * len(graphs)
    assert report.pool("encoder_graphs").graphs == len(graphs)


def test_pools_live_bytes_add_up_to_memory_allocated():
    """Each pool's live bytes from its own segments, added up, equal the allocator's counter; the
    reserved bytes likewise. The default pool no longer counts the graph pool's outputs."""
    import torch

    report = _profile("qwen2-vl-2b", (1024, 2048))
    assert not [w for w in report.warnings if "add up" in w], report.warnings
    assert report.total_bytes == report.process_used_bytes
    encoder = report.pool("encoder_graphs")
    assert encoder.live_bytes == sum(b.output_bytes for b in report.budgets)

    from encgraph_profiler.cuda_device import CudaDevice

    device = CudaDevice()
    pool, stream = device.new_pool(), device.new_stream()
    weight = torch.randn(1024, 1024, device="cuda")
    warm = device.warm_up(lambda: ((weight @ weight).relu(),), stream, 2)
    captured = device.capture(lambda: ((weight @ weight).relu(),), pool, stream, "probe")
    device.settle()
    sample, default = device.sample([pool]), device.default_pool()
    assert sample.encoder.live_bytes + default.live_bytes == sample.allocated_bytes == torch.cuda.memory_allocated()
    assert sample.encoder.reserved_bytes + default.reserved_bytes == sample.reserved_bytes
    assert sample.encoder.live_bytes == captured.output_bytes
    assert device.replay(captured, warm.reference).matches


def test_snapshot_pool_bytes_equal_reserved_delta():
    """The snapshot's per-pool sum agrees with the allocator's own counter, measured cleanly."""
    import torch

    from encgraph_profiler.cuda_device import CudaDevice

    device = CudaDevice()
    weight = torch.randn(2048, 2048, device="cuda")
    inputs = torch.randn(4096, 2048, device="cuda")
    stream, pool = device.new_stream(), device.new_pool()

    def fn():
        return ((inputs @ weight).relu() @ weight.T,)

    warm = device.warm_up(fn, stream, 2)
    # CUDAGraph.capture_begin also puts two 512-byte RNG-state tensors in the default pool (seen in
    # the allocator history on an H100). With no small segment to put them in, that is a new 2 MiB
    # segment outside the graph pool. A graph kept alive here holds such a segment open.
    first = device.capture(fn, device.new_pool(), stream, "first capture")
    device.settle()
    reserved0 = device.sample([pool]).reserved_bytes
    captured = device.capture(fn, pool, stream, "test graph")
    device.settle()
    after = device.sample([pool])
    assert after.encoder.reserved_bytes == after.reserved_bytes - reserved0
    del first
    assert after.encoder.live_bytes >= 4096 * 2048 * 4  # the output is live in the pool
    assert device.replay(captured, warm.reference).matches


def test_capture_failure_names_the_operation():
    import torch

    from encgraph_profiler.cuda_device import CudaDevice
    from encgraph_profiler.errors import CaptureFailure

    device = CudaDevice()
    stream, pool = device.new_stream(), device.new_pool()
    x = torch.randn(16, device="cuda")

    def fn():
        return (x.cpu(),)  # a device-to-host copy cannot be captured

    device.warm_up(fn, stream, 1)
    # The error that broke the capture and the line that raised it, not the one ending the capture.
    with pytest.raises(
        CaptureFailure, match=r"capture of probe failed: .*CUDA graph capture.* \(at tests/test_gpu.py:\d+\)"
    ) as failed:
        device.capture(fn, pool, stream, "probe")
    assert "previous error during capture" not in str(failed.value)


def test_real_out_of_memory_is_recorded_with_the_bytes_requested_and_the_ladder_goes_on():
    """With the process capped at 6 GiB, 32768 tokens cannot warm up: the allocator's own figure
    for the failed request is kept, and the smaller budget is still measured."""
    import torch

    from encgraph_profiler.schema import BudgetStatus

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(6 * GiB / total)
    try:
        report = _profile("qwen2-vl-7b", (1024, 32768), max_items=64)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert [b.budget for b in report.budgets] == [1024] and report.budgets[0].replay_matches_eager
    (failed,) = report.unmeasured
    assert failed.budget == 32768 and failed.status is BudgetStatus.OUT_OF_MEMORY
    assert failed.requested_bytes and failed.requested_bytes > 0, failed


def test_per_graph_pools_equal_the_lone_budgets_and_smallest_first_holds_the_largest():
    """vLLM before its shared pool, and SGLang, give each graph its own pool: the ladder's pools
    add up to the budgets profiled alone. A shared pool captured smallest first (TensorRT-LLM)
    grows at every capture."""
    import gc

    import torch

    ladder = (1024, 2048, 4096)

    def run(budgets, **kwargs):
        report = _profile("qwen2-vl-2b", budgets, max_items=16, **kwargs)
        gc.collect()
        torch.cuda.empty_cache()
        return report

    per_graph = run(ladder, pool="per-graph")
    alone = [run((b,)).pool("encoder_graphs").reserved_bytes for b in ladder]
    assert [b.replay_matches_eager for b in per_graph.budgets] == [True] * 3
    assert per_graph.pool("encoder_graphs").reserved_bytes == sum(alone)
    smallest_first = run(ladder, order="smallest-first")
    growth = {b.budget: b.pool_growth_bytes for b in smallest_first.budgets}
    assert all(growth[b] > 0 for b in ladder), growth


def test_check_release_returns_the_pools_unless_a_graph_is_kept(monkeypatch):
    """Dropping every graph gives every byte of the encoder pool back; a graph that something else
    still references keeps its whole pool, and the check names it."""
    import gc

    import torch
    from helpers import measured, request

    from encgraph_profiler.cuda_device import CudaDevice

    released = measured(request("qwen2-vl-2b", (1024, 2048), check_release=True)).release
    assert released.pool_bytes_before > 0 and released.pool_bytes_after == 0 and released.held_by == ""
    assert released.reserved_returned_bytes >= released.pool_bytes_before
    gc.collect()
    torch.cuda.empty_cache()

    kept = []
    capture = CudaDevice.capture

    def keeping(self, *args, **kwargs):
        captured = capture(self, *args, **kwargs)
        kept.append(captured)  # as a caller that forgot to drop its graph would
        return captured

    monkeypatch.setattr(CudaDevice, "capture", keeping)
    leaked = measured(request("qwen2-vl-2b", (1024, 2048), check_release=True)).release
    assert leaked.pool_bytes_after == leaked.pool_bytes_before > 0
    assert "still referenced" in leaked.held_by


PACKING = ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-qwen3.5", "tiny-glm4v"]


@pytest.mark.parametrize("model", PACKING)
@pytest.mark.parametrize("capture, frames", [("plain", 0), ("vllm", 0), ("vllm", 16)])
def test_varlen_replay_equals_eager(model, capture, frames):
    """PyTorch's varlen flash kernel, captured: one kernel per layer over the packed images (or,
    in vLLM's video layout, frames), replay equal to eager."""
    report = _profile(model, (64, 128, 256), attn="varlen", capture=capture, max_frames_per_batch=frames)
    assert [b.replay_matches_eager for b in report.budgets] == [True] * 3, report.warnings
    if frames:
        assert "videos of 4 frames" in report.settings.layout  # k = 4 items, 16 frames a batch


@pytest.mark.parametrize("model", ["tiny-kimi-k2.5", "tiny-kimi-vl"])
@pytest.mark.parametrize("capture", ["plain", "vllm"])
def test_kimi_varlen_replay_equals_eager(model, capture):
    """MoonViT with the varlen kernel over its packed images (vLLM 0.33.0 captures images only; with
    its capture inputs, Kimi-K2.5's segments end in a spare zero-length sequence)."""
    report = _profile(model, (256, 512), attn="varlen", capture=capture)
    assert [b.replay_matches_eager for b in report.budgets] == [True] * 2, report.warnings


def test_capture_as_vllm_keeps_outputs_out_of_the_pool_and_explains_its_estimate():
    """vLLM copies each graph's outputs to a buffer outside the pool; its estimate (the drop in
    free memory) is the pool plus the buffers, what warm-ups left cached and what lies outside the
    allocator, each measured."""
    import gc

    import torch

    plain = _profile("qwen2-vl-2b", (1024, 2048), max_items=16)
    gc.collect()
    torch.cuda.empty_cache()
    vllm = _profile("qwen2-vl-2b", (1024, 2048), max_items=16, capture="vllm")
    assert [b.replay_matches_eager for b in vllm.budgets] == [True] * 2
    assert vllm.pool("encoder_graphs").live_bytes == 0
    assert vllm.pool("encoder_graphs").reserved_bytes <= plain.pool("encoder_graphs").reserved_bytes
    est = vllm.vllm_estimate
    assert est.pool_bytes == vllm.pool("encoder_graphs").reserved_bytes
    assert est.output_buffer_bytes == sum(b.output_bytes for b in vllm.budgets)
    # The default pool never shrinks below what the built tower held (its segments stay), though inputs
    # may take room those segments had: then the cached part is negative.
    assert est.static_input_bytes + est.output_buffer_bytes + est.cached_bytes >= 0
    assert est.outside_allocator_bytes >= 0
    assert est.free_drop_bytes >= est.pool_bytes + est.outside_allocator_bytes
