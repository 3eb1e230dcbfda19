"""--as vllm for the families whose vLLM class normalizes pixels on the device (vLLM 0.33.0's
mm_device_do_normalize): uint8 pixels captured, and the graph's first step writing them normalized
in the tower's dtype into one new tensor, freed after the patch embedding; the plain capture as before."""

import pytest
import torch

from encgraph_profiler.models.base import PIXEL_NORM_BUFFER, PixelNorm
from encgraph_profiler.models.registry import adapters, bundled_names, resolve
from encgraph_profiler.predict import predict
from encgraph_profiler.request import ProfileRequest, Strategy, prepare
from encgraph_profiler.schema import Capture
from encgraph_profiler.trace import trace

MODEL, BUDGETS = "tiny-qwen2-vl", (256,)
# The families whose vLLM 0.33.0 class declares supports_mm_device_do_normalize (itself or by
# inheritance), each file's class builds its tower with build_mm_input_norm.
NORMALIZED = {
    "qwen2-vl",
    "qwen2.5-vl",
    "qwen3-vl",
    "qwen3-vl-moe",
    "qwen3.5",
    "qwen3.5-moe",
    "glm4v",
    "glm46v",
    "glm4v-moe",
    "glm-ocr",
    "glm5-next",
    "kimi-k2.5",
    "kimi-k3",
}


def _setup(model=MODEL, capture=Capture.VLLM, budgets=BUDGETS):
    return prepare(ProfileRequest(model, budgets, attn="sdpa", strategy=Strategy(capture=capture)), capability=(9, 0))


def _tower(setup, dtype: str, device: str):
    torch.manual_seed(0)
    with torch.device(device):
        return setup.adapter.build_tower(setup.tower_config, dtype, setup.settings.attn)


def _inputs(setup, tower, dtype: str, device: str, layout=None) -> dict:
    layout = layout or setup.layouts[0]
    generator = torch.Generator().manual_seed(0)
    return setup.adapter.make_inputs(tower, setup.tower_config, layout, dtype, torch.device(device), generator)


def _pixels(setup, inputs: dict) -> torch.Tensor:
    pixels = inputs["pixel_values" if "pixel_values" in inputs else "hidden_states"]
    assert pixels.shape[0] == setup.layouts[0].input_patches
    return pixels


def _sized(events) -> list[tuple[str, int]]:
    """The trace's events as (kind, bytes), a free carrying the bytes of the block it frees."""
    sizes, out = {}, []
    for kind, key, size in events:
        if kind == "alloc":
            sizes[key] = size
        out.append((kind, sizes[key] if kind == "alloc" else sizes.pop(key)))
    return out


def test_vllm_capture_makes_qwen2_vl_pixels_uint8_and_says_so():
    vllm, plain = _setup(), _setup(capture=Capture.PLAIN)
    assert vllm.layouts[0].pixel_norm is not None and plain.layouts[0].pixel_norm is None
    assert "uint8 pixels, normalized on the device inside the graph" in vllm.settings.layout
    assert "uint8" not in plain.settings.layout
    for setup, dtype in ((vllm, torch.uint8), (plain, torch.bfloat16)):
        tower = _tower(setup, "bfloat16", "meta")
        assert _pixels(setup, _inputs(setup, tower, "bfloat16", "meta")).dtype == dtype
        assert hasattr(tower.patch_embed, PIXEL_NORM_BUFFER) == (setup is vllm)  # the plain tower is as it was


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_forward_on_uint8_pixels_equals_the_plain_forward_on_pixels_normalized_on_the_host(dtype):
    """The plain capture given the same pixels, normalized on the host as vLLM's reference
    (FusedMMInputNorm.forward_native: x * rescale / std - mean / std in float32, then the tower's
    dtype), gives the same outputs, to float32's rounding (the CPU's addcmul fuses the multiply and
    add, as vLLM's Triton kernel does, where the reference rounds twice) or bf16's."""
    vllm, plain = _setup(), _setup(capture=Capture.PLAIN)
    tower = _tower(vllm, dtype, "cpu")
    raw = _inputs(vllm, tower, dtype, "cpu")
    given = _inputs(plain, tower, dtype, "cpu")
    norm = vllm.layouts[0].pixel_norm
    mean, std = torch.tensor(norm.mean), torch.tensor(norm.std)
    x = raw["hidden_states"]
    host = x.view(x.shape[0], 3, -1) * (norm.rescale / std).view(1, 3, 1) + (-mean / std).view(1, 3, 1)
    given["hidden_states"] = host.view(x.shape).to(getattr(torch, dtype))
    with torch.inference_mode():
        ours, theirs = vllm.adapter.forward(tower, raw)[0], plain.adapter.forward(tower, given)[0]
    tolerance = {"float32": 1e-5, "bfloat16": 5e-2}[dtype]
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=tolerance, atol=tolerance)


def test_the_trace_has_one_more_allocation_the_normalized_pixels_freed_after_the_patch_embedding():
    vllm, plain = _setup(), _setup(capture=Capture.PLAIN)
    traced = []
    for setup in (vllm, plain):
        tower = _tower(setup, "bfloat16", "meta")
        inputs = _inputs(setup, tower, "bfloat16", "meta")
        with torch.inference_mode():
            events, _ = trace(lambda tower=tower, inputs=inputs, setup=setup: setup.adapter.forward(tower, inputs))
        traced.append(_sized(events))
    ours, theirs = traced
    normalized = ("alloc", vllm.layouts[0].input_patches * 1176 * 2)  # patches x 3 x 2 x 14 x 14, bf16
    patch_embedding = theirs[0]
    assert ours[:3] == [normalized, patch_embedding, ("free", normalized[1])]
    assert ours[3:] == theirs[1:]


def test_predicted_static_inputs_shrink_by_the_pixels_bytes_in_bf16_less_uint8():
    vllm, plain = predict(_setup()), predict(_setup(capture=Capture.PLAIN))
    patches = _setup().layouts[0].input_patches

    def rounded(n):  # the allocator's 512-byte blocks
        return -(-n // 512) * 512

    assert plain[0].input_bytes - vllm[0].input_bytes == rounded(patches * 1176 * 2) - rounded(patches * 1176)
    assert vllm[0].allocations == plain[0].allocations + 1


def test_normalized_families_are_those_whose_vllm_class_normalizes_on_the_device():
    declared = {a.family for a in adapters() if a.vllm is not None and a.vllm.normalizes_pixels}
    assert declared == NORMALIZED
    for adapter in adapters():
        if adapter.family in NORMALIZED:
            assert isinstance(adapter.processor_norm, PixelNorm) and not adapter.processor_norm.is_identity


def test_an_identity_processor_is_not_normalized_on_the_device():
    """vLLM's NormParams.is_identity: no rescale and mean 0, std 1 builds no norm (pixels stay in the tower's dtype)."""
    assert PixelNorm((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), rescale=1.0).is_identity
    assert not PixelNorm((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).is_identity  # / 255 alone is not


def _tiny(family: str) -> str:
    return next(
        n for n in bundled_names(include_tiny=True) if n.startswith("tiny-") and resolve(n).adapter.family == family
    )


@pytest.mark.parametrize("family", sorted(NORMALIZED))
def test_each_normalized_family_captures_uint8_pixels_and_normalizes_them_first(family):
    setup = _setup(_tiny(family))
    tower = _tower(setup, "bfloat16", "meta")
    inputs = _inputs(setup, tower, "bfloat16", "meta")
    pixels = _pixels(setup, inputs)
    assert pixels.dtype == torch.uint8
    with torch.inference_mode():
        events, _ = trace(lambda: setup.adapter.forward(tower, inputs))
    assert _sized(events)[0] == ("alloc", pixels.numel() * 2)


@pytest.mark.parametrize("family", ["cohere-compass", "kimi-vl", "ernie4.5-vl"])
def test_families_whose_vllm_class_does_not_normalize_capture_pixels_in_the_towers_dtype(family):
    """Each subclasses a normalized family's adapter, but vLLM's class for it does not declare
    supports_mm_device_do_normalize."""
    setup = _setup(_tiny(family))
    assert setup.layouts[0].pixel_norm is None
    tower = _tower(setup, "bfloat16", "meta")
    inputs = _inputs(setup, tower, "bfloat16", "meta")
    assert not any(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in inputs.values())
