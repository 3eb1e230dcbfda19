"""GPU tier: real captures on the lent GPU. Skipped where no CUDA device is visible."""

import pytest

pytestmark = pytest.mark.gpu

MiB = 1024**2


def _profile(model, budgets, **kwargs):
    from encgraph_profiler.profile import ProfileRequest, profile

    return profile(ProfileRequest(model=model, budgets=tuple(budgets), **kwargs))


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


@pytest.mark.parametrize("model", ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-siglip", "tiny-clip"])
def test_replay_equals_eager_for_every_family(model):
    report = _profile(model, (64, 128, 256))
    assert [b.replay_matches_eager for b in report.budgets] == [True] * 3
    assert all(b.pool_reserved_bytes > 0 for b in report.budgets)


def test_snapshot_pool_bytes_equal_reserved_delta():
    """The snapshot's per-pool sum agrees with the allocator's own counter, measured cleanly."""
    import torch

    from encgraph_profiler import capture

    capture.require_cuda()
    weight = torch.randn(2048, 2048, device="cuda")
    inputs = torch.randn(4096, 2048, device="cuda")
    stream, pool = capture.new_stream(), capture.new_pool()

    def fn():
        return ((inputs @ weight).relu() @ weight.T,)

    reference, _, _ = capture.warm_up(fn, stream, 2)
    # CUDAGraph.capture_begin also puts two 512-byte RNG-state tensors in the default pool (seen in
    # the allocator history on the H100). With no small segment to put them in, that is a new
    # 2 MiB segment outside the graph pool. A graph kept alive here holds such a segment open.
    first = capture.capture(fn, capture.new_pool(), stream, "first capture")
    capture.settle()
    reserved0 = capture.reserved_bytes()
    graph, outputs, _ = capture.capture(fn, pool, stream, "test graph")
    capture.settle()
    delta = capture.reserved_bytes() - reserved0
    pool_bytes = capture.pool_bytes(pool)
    assert pool_bytes.reserved_bytes == delta
    del first
    assert pool_bytes.live_bytes >= 4096 * 2048 * 4  # the output is live in the pool
    _, matches, _ = capture.replay(graph, outputs, reference)
    assert matches


def test_capture_failure_names_the_operation():
    import torch

    from encgraph_profiler import capture
    from encgraph_profiler.errors import CaptureFailure

    capture.require_cuda()
    stream, pool = capture.new_stream(), capture.new_pool()
    x = torch.randn(16, device="cuda")

    def fn():
        return (x.cpu(),)  # a device-to-host copy cannot be captured

    capture.warm_up(fn, stream, 1)
    with pytest.raises(CaptureFailure, match="capture of probe failed"):
        capture.capture(fn, pool, stream, "probe")
