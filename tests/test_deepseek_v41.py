"""DeepSeek-V4.1's vision tower, which encgraph builds itself (transformers has no class for it): its
parameters against the published checkpoint's, its layouts against vLLM 0.33.0's rule, and its
captured forward against each image encoded alone (vLLM's eager path)."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.base import Layout
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import resolve
from encgraph_profiler.request import ProfileRequest, parse_strategy, prepare

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "deepseek-v4.1-flash.json"
# deepseek-ai/DeepSeek-V4.1-Flash at revision dba1be0a40aa45a94ad051997016db3960a90277, as the public
# repository kiojuvr/deepseek-v41-flash-mlx records its file listing (artifacts/checkpoint/): config.json
# is git blob 09917a9139b22d5bf8be52132787f435147b1020, and model-00001-of-00048.safetensors, 970,533,624
# bytes, holds the vision tower and the aligner. Public accounts of the checkpoint's headers give its
# vision tensors as 266, all bf16, 970,536,960 bytes (485,268,480 parameters), of which the three
# delimiter vectors (image_start, image_newline, image_end, 5,120 each) are placed outside the graph.
CONFIG_BLOB = "09917a9139b22d5bf8be52132787f435147b1020"
FIRST_SHARD_BYTES = 970_533_624
CHECKPOINT_VISION_PARAMETERS = 970_536_960 // 2
DELIMITERS = 3 * 5120
BLOCK_SHAPES = {
    "norm1.weight": (1024,),
    "attn.wqkv.weight": (3072, 1024),
    "attn.wqkv.bias": (3072,),
    "attn.wo.weight": (1024, 1024),
    "attn.wo.bias": (1024,),
    "norm2.weight": (1024,),
    "mlp.w1.weight": (5632, 1024),
    "mlp.w2.weight": (1024, 2816),
}
OTHER_SHAPES = {
    "vision.patch_embed.proj.weight": (1024, 588),
    "vision.patch_embed.proj.bias": (1024,),
    "vision.norm.weight": (1024,),
    "aligner.w1.weight": (5120, 9216),
    "aligner.w1.bias": (5120,),
    "aligner.w2.weight": (5120, 5120),
    "aligner.w2.bias": (5120,),
}


def test_bundled_config_is_the_published_file():
    text = CONFIG.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(text) + text).hexdigest() == CONFIG_BLOB


def _published_tower():
    spec = resolve("DeepSeek-V4.1-Flash")
    with torch.device("meta"):
        return spec, spec.adapter.build_tower(spec.adapter.tower_config(spec.config), "bfloat16", "varlen")


def test_tower_fills_the_published_first_shard_to_the_byte():
    """The shard's size as safetensors writes one: an 8-byte length, the JSON header of every tensor
    (by name: dtype, shape, offsets), then the bf16 data."""
    _, tower = _published_tower()
    header, offset = {}, 0
    for name, parameter in sorted(tower.named_parameters()):
        size = parameter.numel() * 2
        header[name] = {"dtype": "BF16", "shape": list(parameter.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    assert 8 + len(encoded) + -len(encoded) % 8 + offset == FIRST_SHARD_BYTES


def test_tower_has_the_checkpoints_parameter_names_shapes_and_count():
    spec, tower = _published_tower()
    shapes = {name: tuple(p.shape) for name, p in tower.named_parameters()}
    expected = dict(OTHER_SHAPES)
    expected.update({f"vision.blocks.{i}.{name}": shape for i in range(32) for name, shape in BLOCK_SHAPES.items()})
    assert shapes == expected and len(shapes) == 266 - 3
    assert {p.dtype for p in tower.parameters()} == {torch.bfloat16}
    counted = model_facts(spec, "bfloat16").tower_parameters
    assert counted == sum(p.numel() for p in tower.parameters()) == 485_253_120
    assert counted + DELIMITERS == CHECKPOINT_VISION_PARAMETERS


@pytest.mark.parametrize(
    "budget, items, per_item",
    [
        (8192, 128, 64),  # ceil(8192 / 128)
        (1000, 3, 334),  # ceil(1000 / 3): 3 rows of 334 windows cover 1,002 tokens
        (64, 64, 1),
    ],
)
def test_layout_is_vllms(budget, items, per_item):
    """prepare_encoder_cudagraph_capture_inputs (vl_cudagraph.py): per_item_out = ceil(B / k),
    k grids [r, r * per_item_out], r^2 * per_item_out * k patches; max_seqlen_override the whole
    batch, cu_seqlens of k + 2 offsets."""
    spec = resolve("tiny-deepseek-v4.1")
    config = spec.adapter.tower_config(spec.config)
    layout = spec.adapter.layout(config, budget, items)
    assert layout.grids == ((1, 3, 3 * per_item),) * items
    assert layout.tokens == items * per_item >= budget
    assert layout.input_patches == 9 * per_item * items
    vllm = spec.adapter.vllm_layout(layout, config, 0)
    assert (vllm.max_seqlen, vllm.spare_sequences) == (9 * per_item * items, 1)


def test_items_and_meaning_follow_vllms_budget_range():
    """get_encoder_cudagraph_budget_range: 64 tokens the smallest budget, so k = min(8192 // 64, 1024)."""
    setup = prepare(ProfileRequest(model="tiny-deepseek-v4.1", budgets=(1024, 2048, 4096, 8192)))
    assert setup.settings.max_items == 128 and [layout.budget for layout in setup.layouts] == [8192, 4096, 2048, 1024]
    assert setup.settings.layout == "8,192 tokens = 128 images of 42x2688 px, 73,728 ViT patches merged 3x3"
    assert setup.facts.total_parameters is None  # no language model is built


def _run(attn, layout, dtype="float32"):
    spec = resolve("tiny-deepseek-v4.1")
    config = spec.adapter.tower_config(spec.config)
    torch.manual_seed(0)
    tower = spec.adapter.build_tower(config, dtype, attn)
    inputs = spec.adapter.make_inputs(
        tower, config, layout, dtype, torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        return spec.adapter.forward(tower, inputs), spec.adapter.reference_forward(tower, inputs), inputs


# Grids with edges the merge pads (7 x 5 and 4 x 11 patches), besides vLLM's one-row images.
RAGGED = Layout(budget=18, items=3, tokens=18, input_patches=35 + 44 + 36, grids=((1, 7, 5), (1, 4, 11), (1, 3, 12)))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["vllm", "ragged"])
def test_packed_forward_equals_each_image_alone(attn, layout):
    spec = resolve("tiny-deepseek-v4.1")
    config = spec.adapter.tower_config(spec.config)
    chosen = spec.adapter.layout(config, 256, 4) if layout == "vllm" else RAGGED
    (packed,), (alone,), _ = _run(attn, chosen)
    rows = sum(-(-h // 3) * -(-w // 3) for _, h, w in chosen.grids)
    assert packed.shape == (rows, 48) and packed.dtype == torch.float32
    assert torch.equal(packed, alone)


def test_output_is_in_the_towers_dtype():
    spec = resolve("tiny-deepseek-v4.1")
    (packed,), _, inputs = _run("sdpa", spec.adapter.layout(spec.adapter.tower_config(spec.config), 64, 2), "bfloat16")
    assert packed.shape == (64, 48) and packed.dtype == torch.bfloat16
    assert inputs["merge_mask"].dtype == torch.bfloat16 and inputs["cos"].dtype == torch.float32


@pytest.fixture
def kernel_calls(monkeypatch):
    """The CUDA varlen kernel replaced by attention over each packed sequence; what it was given, recorded."""
    from torch.nn.attention import varlen

    calls = []

    def reference(q, k, v, cu_q, cu_k, max_q, max_k, **_):
        calls.append((cu_q.tolist(), max_q))
        lengths = (cu_q[1:] - cu_q[:-1]).tolist()
        parts = zip(*(t.split(lengths) for t in (q, k, v)), strict=True)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return torch.cat([sdpa(*(t.transpose(0, 1) for t in part)).transpose(0, 1) for part in parts])

    monkeypatch.setattr(varlen, "varlen_attn", reference)
    return calls


def test_varlen_gets_vllms_segments_and_longest_sequence(kernel_calls):
    spec = resolve("tiny-deepseek-v4.1")
    config = spec.adapter.tower_config(spec.config)
    layout = spec.adapter.vllm_layout(spec.adapter.layout(config, 256, 4), config, 0)
    (packed,), (alone,), inputs = _run("varlen", layout)
    per_image = 3 * 3 * 64
    assert "lengths" not in inputs and inputs["max_seqlen"] == 4 * per_image
    assert kernel_calls[0] == ([0, 576, 1152, 1728, 2304, 2304], 4 * per_image)  # one spare, empty sequence
    torch.testing.assert_close(packed, alone)


def test_plain_layout_tells_varlen_the_longest_image(kernel_calls):
    _, _, inputs = _run("varlen", RAGGED)
    assert inputs["max_seqlen"] == 44 and kernel_calls[0] == ([0, 35, 79, 115], 44)


@pytest.mark.parametrize(
    "vision, text, message",
    [
        ({"num_hidden_layers": None}, 5120, "num_hidden_layers"),
        ({"num_attention_heads": 64, "hidden_size": 640}, 5120, "head size, 10, is not a multiple of 4"),
        ({"rope_theta": "big"}, 5120, "rope_theta is 'big'"),
        ({}, None, "text_config.hidden_size"),
    ],
)
def test_configs_vllms_tower_could_not_run_are_refused(tmp_path, vision, text, message):
    data = json.loads(CONFIG.read_text())
    data["vision_config"].update(vision)
    data["vision_config"] = {k: v for k, v in data["vision_config"].items() if v is not None}
    data["text_config"]["hidden_size"] = text
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=message):
        resolve(str(path))


def test_other_attentions_are_refused():
    spec = resolve("tiny-deepseek-v4.1")
    with pytest.raises(UsageError, match="use varlen"):
        spec.adapter.build_tower(spec.adapter.tower_config(spec.config), "float32", "flash_attention_2")


@pytest.mark.parametrize("name", ["DeepSeek-V4.1-Flash", "deepseek-v4.1", "DeepSeek-V4.1"])
def test_names_pick_the_bundled_config(name):
    assert resolve(name).name == "deepseek-v4.1-flash"


def test_published_tower_predicts_on_meta_tensors():
    from encgraph_profiler.predict import predict

    request = ProfileRequest(
        model="deepseek-v4.1-flash", budgets=(64, 128), strategy=parse_strategy(None, None, None, "vllm")
    )
    predicted = predict(prepare(request))
    assert [p.budget for p in predicted] == [128, 64] and predicted[0].pool_reserved_bytes > 0
    assert predicted[0].output_bytes == 128 * 5120 * 2  # k * ceil(B / k) aligner rows of the language model's width
