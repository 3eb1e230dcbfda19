"""DeepSeek-OCR: encgraph's own encoder (SAM, CLIP and the projector under the checkpoint's names) against
the published checkpoint, vLLM 0.33.0's two-path layout, transformers' copy of the same SAM, and its own
per-item results (CPU)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import resolve

# deepseek-ai/DeepSeek-OCR's published model.safetensors, as a public model report lists every tensor
# (with the model's config.json, bundled as configs/deepseek-ocr.json; 2,710 tensors, 3,336,106,240
# parameters in all): its vision part, "model." left off, N over the blocks or layers.
SAM = {
    "patch_embed.proj.weight": (768, 3, 16, 16),
    "patch_embed.proj.bias": (768,),
    "pos_embed": (1, 64, 64, 768),
    "blocks.N.norm1.weight": (768,),
    "blocks.N.norm1.bias": (768,),
    "blocks.N.attn.qkv.weight": (2304, 768),
    "blocks.N.attn.qkv.bias": (2304,),
    "blocks.N.attn.proj.weight": (768, 768),
    "blocks.N.attn.proj.bias": (768,),
    "blocks.N.norm2.weight": (768,),
    "blocks.N.norm2.bias": (768,),
    "blocks.N.mlp.lin1.weight": (3072, 768),
    "blocks.N.mlp.lin1.bias": (3072,),
    "blocks.N.mlp.lin2.weight": (768, 3072),
    "blocks.N.mlp.lin2.bias": (768,),
    "neck.0.weight": (256, 768, 1, 1),
    "neck.1.weight": (256,),
    "neck.1.bias": (256,),
    "neck.2.weight": (256, 256, 3, 3),
    "neck.3.weight": (256,),
    "neck.3.bias": (256,),
    "net_2.weight": (512, 256, 3, 3),
    "net_3.weight": (1024, 512, 3, 3),
}
GLOBAL_BLOCKS = (2, 5, 8, 11)  # their relative-position tables are (127, 64); the others' (27, 64)
CLIP = {
    "embeddings.class_embedding": (1024,),
    "embeddings.patch_embedding.weight": (1024, 3, 14, 14),
    "embeddings.position_embedding.weight": (257, 1024),
    "pre_layrnorm.weight": (1024,),
    "pre_layrnorm.bias": (1024,),
    "transformer.layers.N.layer_norm1.weight": (1024,),
    "transformer.layers.N.layer_norm1.bias": (1024,),
    "transformer.layers.N.self_attn.qkv_proj.weight": (3072, 1024),
    "transformer.layers.N.self_attn.qkv_proj.bias": (3072,),
    "transformer.layers.N.self_attn.out_proj.weight": (1024, 1024),
    "transformer.layers.N.self_attn.out_proj.bias": (1024,),
    "transformer.layers.N.layer_norm2.weight": (1024,),
    "transformer.layers.N.layer_norm2.bias": (1024,),
    "transformer.layers.N.mlp.fc1.weight": (4096, 1024),
    "transformer.layers.N.mlp.fc1.bias": (4096,),
    "transformer.layers.N.mlp.fc2.weight": (1024, 4096),
    "transformer.layers.N.mlp.fc2.bias": (1024,),
}
REST = {"projector.layers.weight": (1280, 2048), "projector.layers.bias": (1280,), "image_newline": (1280,)}


def _checkpoint_vision() -> dict[str, tuple[int, ...]]:
    """Every vision tensor of the checkpoint, by name, with N expanded (12 SAM blocks, 24 CLIP layers)."""
    names = {}
    for prefix, table, count in (("sam_model.", SAM, 12), ("vision_model.", CLIP, 24)):
        for name, shape in table.items():
            for n in range(count) if ".N." in name else [None]:
                names[prefix + name.replace(".N.", f".{n}.")] = shape
    for n in range(12):
        side = 127 if n in GLOBAL_BLOCKS else 27
        names[f"sam_model.blocks.{n}.attn.rel_pos_h"] = names[f"sam_model.blocks.{n}.attn.rel_pos_w"] = (side, 64)
    return {**names, **REST}


def _build(name: str, device: str = "meta", dtype: str = "bfloat16", attn: str = "sdpa"):
    spec = resolve(name)
    config = spec.adapter.tower_config(spec.config)
    with torch.device(device):
        torch.manual_seed(0)
        return spec.adapter, config, spec.adapter.build_tower(config, dtype, attn)


def test_the_published_config_builds_the_checkpoints_vision_tensors():
    *_, tower = _build("deepseek-ocr")
    expected = _checkpoint_vision()
    assert {k: tuple(v.shape) for k, v in tower.state_dict().items()} == expected
    facts = model_facts(resolve("deepseek-ocr"), "bfloat16")
    assert facts.tower_parameters == sum(math.prod(shape) for shape in expected.values()) == 401_370_880
    assert facts.total_parameters == 3_336_106_240  # the checkpoint's own total
    assert facts.kv_bytes_per_token == 12 * 2 * 10 * 128 * 2  # plain multi-head attention, 10 heads of 128


# vLLM 0.33.0, deepseek_ocr.py: g = global_image_output_token = 16 * 17 = 272, c = single_patch_output_token
# = 10 * 10 = 100 (from BASE_SIZE 1024 and IMAGE_SIZE 640); prepare_encoder_cudagraph_capture_inputs:
# global min(B // 272, k) views of 1024 px, local B // 100 crops of 640 px; each path's ladder from its
# min_token_budget doubling up to the largest budget (encoder_cudagraph.py). For a largest budget of
# 8192, vLLM's automatic k is min(8192 // 272, 272) = 30.
def test_layouts_are_vllms_two_paths():
    spec = resolve("deepseek-ocr")
    adapter, config = spec.adapter, spec.adapter.tower_config(spec.config)
    assert adapter.min_budget(config) == 272 and adapter.path_minimums(config) == {"global": 272, "local": 100}
    layouts = adapter.graph_layouts(config, (1024, 2048, 4096, 8192), 30)
    summary = [(layout.path, layout.budget, layout.items, layout.tokens) for layout in layouts]
    assert summary == [
        ("global", 272, 1, 272),
        ("global", 544, 2, 544),
        ("global", 1088, 4, 1088),
        ("global", 2176, 8, 2176),
        ("global", 4352, 16, 4352),
        ("global", 8192, 30, 8160),
        ("local", 100, 1, 100),
        ("local", 200, 2, 200),
        ("local", 400, 4, 400),
        ("local", 800, 8, 800),
        ("local", 1600, 16, 1600),
        ("local", 3200, 32, 3200),
        ("local", 6400, 64, 6400),
        ("local", 8192, 81, 8100),
    ]
    assert layouts[5].input_patches == 30 * 64 * 64 and layouts[-1].input_patches == 81 * 40 * 40
    # k caps the global views only.
    assert [layout.items for layout in adapter.graph_layouts(config, (8192,), 4) if layout.budget == 8192] == [4, 81]


def _tiny(attn: str = "sdpa"):
    adapter, config, tower = _build("tiny-deepseek-ocr", "cpu", "float32", attn)
    for parameter in tower.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    return adapter, config, tower


def test_a_batch_of_crops_computes_what_each_crop_computes_alone():
    adapter, config, tower = _tiny()
    layout = adapter.path_layout(config, "local", 200, 1)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        [batched] = adapter.forward(tower, inputs)
        alone = torch.cat([tower(crop[None]) for crop in inputs["pixel_values"]])
    assert batched.shape == (2 * 100, 64) and batched.std() > 0.1
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-4)


def test_global_views_carry_a_newline_after_each_row_of_16_tokens():
    adapter, config, tower = _tiny()
    layout = adapter.path_layout(config, "global", 272, 1)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        [out] = adapter.forward(tower, inputs)
        sam = tower.sam_model(inputs["pixel_values"])
        clip = tower.vision_model(inputs["pixel_values"], sam)
        projected = tower.projector(torch.cat([clip[:, 1:], sam.flatten(2).transpose(1, 2)], dim=-1))
    rows = out.view(16, 17, 64)
    assert torch.equal(rows[:, 16], tower.image_newline.expand(16, 64))
    torch.testing.assert_close(rows[:, :16].reshape(256, 64), projected[0])


@pytest.mark.parametrize("size", [1024, 640])
def test_sam_computes_what_transformers_deepseek_ocr2_sam_computes(size):
    """transformers' DeepSeek-OCR 2 SAM is the same network (its own names, its relative-position bias
    built in full): with encgraph's weights it must give the same features, at the global view's size
    and at the crops' (position and relative-position tables resized)."""
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2SamVisionConfig
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2SamVisionEncoder

    _, config, tower = _tiny()
    sam = config.vision_config.sam_config
    reference = DeepseekOcr2SamVisionEncoder(
        DeepseekOcr2SamVisionConfig(
            hidden_size=sam.hidden_size,
            num_hidden_layers=sam.num_hidden_layers,
            num_attention_heads=sam.num_attention_heads,
            mlp_dim=int(sam.hidden_size * sam.mlp_ratio),
            global_attn_indexes=sam.global_attn_indexes,
            output_channels=sam.output_channels,
            downsample_channels=sam.downsample_channels,
        )
    ).eval()
    renames = [
        (r"^patch_embed\.proj\.", "patch_embed.projection."),
        (r"^blocks\.(\d+)\.norm(\d)\.", r"layers.\1.layer_norm\2."),
        (r"^blocks\.", "layers."),
        (r"^neck\.0\.", "neck.conv1."),
        (r"^neck\.1\.", "neck.layer_norm1."),
        (r"^neck\.2\.", "neck.conv2."),
        (r"^neck\.3\.", "neck.layer_norm2."),
        (r"^net_2\.", "proj.conv1."),
        (r"^net_3\.", "proj.conv2."),
    ]
    state = {}
    for name, value in tower.sam_model.state_dict().items():
        for pattern, replacement in renames:
            name = re.sub(pattern, replacement, name)
        state[name] = value
    reference.load_state_dict(state, strict=True)
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ours, theirs = tower.sam_model(pixels), reference(pixels).last_hidden_state
    assert ours.shape == (1, 48, size // 64, size // 64)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_sdpa_and_eager_compute_the_same_crops():
    pixels = torch.randn(1, 3, 640, 640, generator=torch.Generator().manual_seed(3))
    results = []
    for attn in ("sdpa", "eager"):
        _, _, tower = _tiny(attn)
        with torch.inference_mode():
            results.append(tower(pixels))
    torch.testing.assert_close(*results, rtol=1e-4, atol=1e-4)


def test_deepseek_vl_v2_configs_go_to_the_family_their_architectures_name(tmp_path):
    assert resolve("deepseek-ocr").adapter.family == "deepseek-ocr"
    assert resolve("deepseek-ocr-2").adapter.family == "deepseek-ocr2"
    assert resolve("deepseek-vl2").adapter.family == "deepseek-vl2"
    # Baidu's Unlimited-OCR: DeepSeek-OCR's encoder under its own model_type.
    data = json.loads(resolve("deepseek-ocr").source.read_text())
    data.update(model_type="unlimited-ocr", architectures=["UnlimitedOCRForCausalLM"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    spec = resolve(str(path))
    assert spec.adapter.family == "deepseek-ocr" and spec.config == resolve("deepseek-ocr").config


def _traced(tower, pixels, modules: dict, spies=()) -> tuple[list, dict]:
    """encgraph's trace of the tower on ``pixels`` (meta) and, for each module named (or function of the
    tower's module in ``spies``), one (events when it was called, events when it returned, its first
    argument's storage, its output's storage) a call."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    from encgraph_profiler.models.towers import deepseek_ocr as towers
    from encgraph_profiler.trace import AllocationTrace, trace

    calls, started = {name: [] for name in (*modules, *spies)}, {}

    def recorded() -> int:
        return len(next(m for m in _get_current_dispatch_mode_stack() if isinstance(m, AllocationTrace)).events)

    def before(name):
        def hook(module, args):
            started[name] = (recorded(), args[0].untyped_storage()._cdata)

        return hook

    def after(name):
        def hook(module, args, output):
            start, given = started.pop(name)
            calls[name].append((start, recorded(), given, output.untyped_storage()._cdata))

        return hook

    def spy(name, function):
        def call(*args, **kwargs):
            before(name)(None, args)
            output = function(*args, **kwargs)
            after(name)(None, args, output)
            return output

        return call

    handles = [h for name, m in modules.items() for h in (m.register_forward_pre_hook(before(name)),
                                                           m.register_forward_hook(after(name)))]  # fmt: skip
    real = {name: getattr(towers, name) for name in spies}
    try:
        for name, function in real.items():
            setattr(towers, name, spy(name, function))
        with torch.inference_mode():
            events, _ = trace(lambda: (tower(pixels),))
    finally:
        for name, function in real.items():
            setattr(towers, name, function)
        for handle in handles:
            handle.remove()
    return events, calls


def _freed(events, start: int, key: int) -> int:
    """Where the storage ``key``, live at event ``start``, is freed."""
    return next(i for i in range(start, len(events)) if events[i][:2] == ("free", key))


def test_tensors_live_as_long_as_in_vllms_deepencoder():
    """vLLM's forwards, which decide the pool: RelPosAttention copies q, k and v out of the packed
    projection; the global blocks' fused Triton attention makes its output and nothing else;
    ImageEncoderViT keeps the neck's output through both stride-2 convolutions; DeepCLIPVisionTransformer
    keeps CLIP's input embeddings until it returns; quick GELU (vLLM's fused kernel) makes one tensor.
    The tower that concatenated the bias terms onto q and k for sdpa instead, with none of these, put
    DeepSeek-OCR's 1024-8192 ladder 450,887,680 bytes below vLLM's order (5,953,814,528 measured on an
    H100 against 6,404,702,208)."""
    *_, tower = _build("tiny-deepseek-ocr")
    sam, clip = tower.sam_model, tower.vision_model
    modules = {"qkv": sam.blocks[0].attn.qkv, "neck": sam.neck, "net_3": sam.net_3, "clip": clip,
               "layers": clip.transformer, "fc1": clip.transformer.layers[0].mlp.fc1,
               "fc2": clip.transformer.layers[0].mlp.fc2}  # fmt: skip
    pixels = torch.empty(1, 3, 1024, 1024, dtype=torch.bfloat16, device="meta")
    events, calls = _traced(tower, pixels, modules, spies=("rel_pos_attention",))
    qkv, neck, net_3, vision, layers, fc1, fc2 = (calls[name][0] for name in modules)
    made = events[qkv[1]]
    assert made[0] == "alloc" and made[2] == events[qkv[1] - 1][2]  # the copy, right after the projection
    [fused] = calls["rel_pos_attention"]  # the one global block of the tiny config
    assert [e for e in events[fused[0] : fused[1]] if e[0] == "alloc"] == [("alloc", fused[3], 2 * 4096 * 16 * 2)]
    assert _freed(events, neck[1], neck[3]) > net_3[1]
    assert layers[1] <= _freed(events, layers[0], layers[2]) <= vision[1]
    assert sum(e[0] == "alloc" for e in events[fc1[1] : fc2[0]]) == 1
