"""--attn varlen and vLLM's capture layout, on the CPU.

PyTorch's varlen kernel runs on CUDA only, so these tests stand in a reference for it (plain
attention over each packed sequence, from the cu_seqlens it is given): what they check is the
plumbing — that the towers take their packed path, get their segments and longest lengths
precomputed, and give the sdpa tower's outputs. The GPU tests run the real kernel."""

import pytest
import torch
from helpers import request

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.request import ProfileRequest, prepare

PACKING = [
    "tiny-qwen2-vl",
    "tiny-qwen2.5-vl",
    "tiny-qwen3-vl",
    "tiny-qwen3.5",
    "tiny-glm4v",
    "tiny-ernie4.5-vl",
    "tiny-kimi-k2.5",
    "tiny-kimi-vl",
]
VIDEO = [
    name for name in PACKING if name not in ("tiny-ernie4.5-vl", "tiny-kimi-k2.5", "tiny-kimi-vl")
]  # vLLM: their images only


@pytest.fixture
def kernel_calls(monkeypatch):
    """Replace the CUDA varlen kernel with per-sequence attention; record what it was given."""
    from torch.nn.attention import varlen

    calls = []

    def reference(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, **_):
        calls.append((cu_q.clone(), max_q))
        assert torch.equal(cu_q, cu_k) and max_q == max_k and q.dim() == 3
        lengths = (cu_q[1:] - cu_q[:-1]).tolist()
        assert max(lengths) <= max_q  # the kernel is never told less than the longest sequence
        out = [
            torch.nn.functional.scaled_dot_product_attention(
                *(t.transpose(0, 1) for t in parts), scale=scale
            ).transpose(0, 1)
            for parts in zip(*(t.split(lengths) for t in (q, k, v)), strict=True)
        ]
        return torch.cat(out)

    monkeypatch.setattr(varlen, "varlen_attn", reference)
    return calls


def _outputs(name, attn, layout_of, seed=0):
    spec = resolve(name)
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    torch.manual_seed(seed)
    tower = adapter.build_tower(config, "float32", attn)
    layout = layout_of(adapter, config)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        return adapter.forward(tower, inputs), inputs, layout


@pytest.mark.parametrize("name", PACKING)
def test_varlen_towers_equal_sdpa_towers(name, kernel_calls):
    plain = lambda adapter, config: adapter.layout(config, 256, 4)  # noqa: E731
    expected, sdpa_inputs, _ = _outputs(name, "sdpa", plain)
    got, inputs, layout = _outputs(name, "varlen", plain)
    assert kernel_calls, "the tower did not take its packed path"
    assert "max_seqlen" in inputs and "max_seqlen" not in sdpa_inputs
    assert inputs["max_seqlen"] == max(h * w for _, h, w in layout.grids)  # the longest image
    if name == "tiny-qwen2.5-vl":
        assert inputs["max_window_seqlen"] == int((inputs["cu_window_seqlens"].diff()).max())
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_vllm_layout_fixes_the_longest_sequence_at_the_budget(kernel_calls):
    """vLLM tells the kernel B * m^2 whatever the images are: replay may then pack one image that
    takes the whole budget."""
    vllm = lambda adapter, config: adapter.vllm_layout(adapter.layout(config, 256, 4), config, 0)  # noqa: E731
    _, inputs, layout = _outputs("tiny-qwen2-vl", "varlen", vllm)
    assert layout.max_seqlen == inputs["max_seqlen"] == 256 * 4
    assert {max_q for _, max_q in kernel_calls} == {256 * 4}


@pytest.mark.parametrize(
    "name, budget, items, expected, spare",
    [
        ("tiny-kimi-k2.5", 256, 4, 256 * 4, 1),  # one image of the whole budget: 256 windows of 2 x 2 patches
        ("tiny-kimi-k2.5", 100_000, 2, 400_000, 1),  # ... not clamped to the 512 x 512-patch RoPE table
        ("tiny-kimi-vl", 256, 4, 256, 0),  # kimi_vl.py bakes in the budget itself, and pads cu_seqlens to k
    ],
)
def test_vllm_layout_fixes_kimis_longest_sequence_as_vllm_does(name, budget, items, expected, spare, kernel_calls):
    """vLLM 0.33.0's Kimi-K2.5 capture also pads cu_seqlens to k + 1 sequences: one spare of length 0."""
    vllm = lambda adapter, config: adapter.vllm_layout(adapter.layout(config, budget, items), config, 0)  # noqa: E731
    if budget > 2**16:  # the layout alone: too many patches to run on the CPU
        spec = resolve(name)
        config = spec.adapter.tower_config(spec.config)
        assert (vllm(spec.adapter, config).max_seqlen, vllm(spec.adapter, config).spare_sequences) == (expected, spare)
        return
    _, inputs, layout = _outputs(name, "varlen", vllm)
    assert layout.max_seqlen == inputs["max_seqlen"] == expected
    assert {max_q for _, max_q in kernel_calls} == {expected}
    per_item = layout.grids[0][1] * layout.grids[0][2]
    expected_cu = [i * per_item for i in range(items + 1)] + [items * per_item] * spare
    assert layout.spare_sequences == spare and {tuple(cu.tolist()) for cu, _ in kernel_calls} == {tuple(expected_cu)}


@pytest.mark.parametrize(
    "name, budget, items, frames, grid, tokens",
    [
        ("tiny-qwen2-vl", 1024, 8, 32, (4, 2, 64), 1024),  # F = 32 // 8 = 4 frames of ceil(128 / 4) = 32 tokens
        ("tiny-qwen2-vl", 1000, 8, 32, (4, 2, 64), 1024),  # ceil(1000 / 8) = 125 tokens an item -> 32 a frame
        ("tiny-glm4v", 1000, 16, 32, (2, 2, 62), 992),  # GLM: floor(1000 / 16) = 62 -> 31 a frame
        ("tiny-qwen2-vl", 1000, 16, 32, (2, 2, 64), 1024),  # Qwen: ceil(1000 / 16) = 63 -> 32 a frame
        ("tiny-qwen2-vl", 1024, 8, 8, (1, 2, 256), 1024),  # one frame an item: the image layout
    ],
)
def test_vllm_video_layout(name, budget, items, frames, grid, tokens):
    spec = resolve(name)
    config = spec.adapter.tower_config(spec.config)
    layout = spec.adapter.vllm_layout(spec.adapter.layout(config, budget, items), config, frames)
    assert layout.grids == (grid,) * items and layout.tokens == tokens
    assert layout.input_patches == items * grid[0] * grid[1] * grid[2]
    assert layout.max_seqlen == budget * 4


@pytest.mark.parametrize("name", VIDEO)
def test_vllm_video_layout_runs_one_sequence_a_frame(name, kernel_calls):
    video = lambda adapter, config: adapter.vllm_layout(adapter.layout(config, 256, 4), config, 16)  # noqa: E731
    expected, _, layout = _outputs(name, "sdpa", video)
    got, _, _ = _outputs(name, "varlen", video)
    assert 4 * 4 + 1 in {len(cu) for cu, _ in kernel_calls}  # full attention: 4 videos of 4 frames, a sequence each
    assert layout.meaning.startswith("256 tokens = 4 videos of 4 frames")
    torch.testing.assert_close(got[0], expected[0])


@pytest.mark.parametrize(
    "request_args, message",
    [
        ({"model": "tiny-gemma3", "attn": "varlen"}, "does not pack them"),
        ({"model": "tiny-siglip", "attn": "varlen"}, "does not pack them"),
        ({"model": "tiny-qwen2-vl", "max_frames_per_batch": 32}, "give it with --as vllm"),
        (
            {"model": "tiny-ernie4.5-vl", "max_frames_per_batch": 32, "capture": "vllm"},
            "no video layout for ernie4.5-vl",
        ),
        # vLLM 0.33.0 captures Kimi's images only: Kimi-K2.5's video chunks run eagerly
        ({"model": "tiny-kimi-k2.5", "max_frames_per_batch": 32, "capture": "vllm"}, "no video layout for kimi-k2.5"),
        ({"model": "tiny-kimi-vl", "max_frames_per_batch": 32, "capture": "vllm"}, "no video layout for kimi-vl"),
        ({"model": "tiny-qwen2-vl", "max_frames_per_batch": -1, "capture": "vllm"}, "must be 0"),
        ({"model": "tiny-qwen2-vl", "capture": "sglang"}, "--capture 'sglang'"),
    ],
)
def test_bad_requests_are_refused(request_args, message):
    with pytest.raises(UsageError, match=message):
        prepare(request(budgets=(256, 512), **request_args))


@pytest.mark.parametrize(
    "capability, model, expected",
    [
        ((9, 0), "tiny-qwen2-vl", "varlen"),
        ((8, 0), "tiny-glm4v", "varlen"),
        ((9, 0), "tiny-gemma3", "sdpa"),
        ((9, 0), "tiny-kimi-k2.5", "varlen"),
        ((9, 0), "tiny-kimi-vl", "varlen"),
        ((7, 5), "tiny-qwen2-vl", "sdpa"),
        (None, "tiny-qwen2-vl", "sdpa"),
    ],
)
def test_auto_attention_is_vllms_choice(monkeypatch, capability, model, expected):
    """vLLM's ViT attention is one flash varlen kernel where its flash backend runs (compute
    capability 8.0 and newer) and sdpa elsewhere; the report records what was chosen."""
    from encgraph_profiler import nvml

    monkeypatch.setattr(nvml, "compute_capability", lambda: capability)
    assert prepare(ProfileRequest(model=model, budgets=(256,))).settings.attn == expected
    assert prepare(ProfileRequest(model=model, budgets=(256,), attn="sdpa")).settings.attn == "sdpa"
