"""DeepSeek-VL2: encgraph's own tower (transformers has no class for it) against the published checkpoint's
names and sizes, vLLM 0.33.0's layout, and its own per-tile results (CPU)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import resolve

# The vision parameters the published checkpoints hold under ``vision.`` (the same in DeepSeek-VL2-Tiny,
# -Small and DeepSeek-VL2): MindSpeed-MM's DeepSeek-VL2 checkpoint converter renames each of them
# (create_deepseek_vl_ops), with N over the 27 blocks. Their shapes are those of timm's
# vit_so400m_patch14_siglip_384, which vLLM builds; timm 1.0.31 gives that model 428,225,600 parameters
# with these names and shapes (counted with timm's own create_model; no published per-module total of
# the DeepSeek-VL2 checkpoints was found).
CHECKPOINT_VISION = {
    "pos_embed": (1, 729, 1152),
    "patch_embed.proj.weight": (1152, 3, 14, 14),
    "patch_embed.proj.bias": (1152,),
    "blocks.N.norm1.weight": (1152,),
    "blocks.N.norm1.bias": (1152,),
    "blocks.N.attn.qkv.weight": (3456, 1152),
    "blocks.N.attn.qkv.bias": (3456,),
    "blocks.N.attn.proj.weight": (1152, 1152),
    "blocks.N.attn.proj.bias": (1152,),
    "blocks.N.norm2.weight": (1152,),
    "blocks.N.norm2.bias": (1152,),
    "blocks.N.mlp.fc1.weight": (4304, 1152),
    "blocks.N.mlp.fc1.bias": (4304,),
    "blocks.N.mlp.fc2.weight": (1152, 4304),
    "blocks.N.mlp.fc2.bias": (1152,),
    "norm.weight": (1152,),
    "norm.bias": (1152,),
    "attn_pool.latent": (1, 1, 1152),
    "attn_pool.q.weight": (1152, 1152),
    "attn_pool.q.bias": (1152,),
    "attn_pool.kv.weight": (2304, 1152),
    "attn_pool.kv.bias": (2304,),
    "attn_pool.proj.weight": (1152, 1152),
    "attn_pool.proj.bias": (1152,),
    "attn_pool.norm.weight": (1152,),
    "attn_pool.norm.bias": (1152,),
    "attn_pool.mlp.fc1.weight": (4304, 1152),
    "attn_pool.mlp.fc1.bias": (4304,),
    "attn_pool.mlp.fc2.weight": (1152, 4304),
    "attn_pool.mlp.fc2.bias": (1152,),
}
SO400M_PARAMETERS = 428_225_600


def _tower(name: str, device: str = "meta", dtype: str = "bfloat16", attn: str = "sdpa"):
    spec = resolve(name)
    config = spec.adapter.tower_config(spec.config)
    with torch.device(device):
        torch.manual_seed(0)
        return spec.adapter, config, spec.adapter.build_tower(config, dtype, attn)


def test_the_published_config_builds_the_checkpoints_vision_parameters():
    *_, tower = _tower("deepseek-vl2")
    shapes = {re.sub(r"^blocks\.\d+\.", "blocks.N.", k): tuple(v.shape) for k, v in tower.vision.state_dict().items()}
    assert shapes == CHECKPOINT_VISION
    assert len([k for k in tower.vision.state_dict() if k.endswith("blocks.26.norm1.weight")]) == 1
    assert sum(p.numel() for p in tower.vision.parameters()) == SO400M_PARAMETERS
    # vLLM's MlpProjector for n_embed 2560: 2 x 2 patches of 1152 unfolded, GELU between two layers.
    projector = {k: tuple(v.shape) for k, v in tower.projector.state_dict().items()}
    assert projector == {
        "layers.0.weight": (2560, 4608),
        "layers.0.bias": (2560,),
        "layers.2.weight": (2560, 2560),
        "layers.2.bias": (2560,),
    }
    facts = model_facts(resolve("deepseek-vl2"), "bfloat16")
    assert facts.tower_parameters == SO400M_PARAMETERS + 4608 * 2560 + 2560 + 2560 * 2560 + 2560 == 446_580_800
    # Multi-head latent attention: a 512-wide latent and a 64-wide rotary key per layer, 30 layers, bf16.
    assert facts.kv_bytes_per_token == 30 * (512 + 64) * 2


# vLLM 0.33.0, deepseek_vl2.py: _proj_hw = ceil((384 // 14) / 2) = 14; get_encoder_cudagraph_budget_range's
# smallest budget 14 * 15 * 2 + 1 = 421; prepare_encoder_cudagraph_capture_inputs' tiles ceil(B / 196).
@pytest.mark.parametrize("items", [1, 4, 100])
def test_layout_is_vllms_tiles_whatever_the_items_per_batch(items):
    spec = resolve("deepseek-vl2")
    config = spec.adapter.tower_config(spec.config)
    assert spec.adapter.min_budget(config) == 421 and not spec.adapter.takes_max_items
    layouts = spec.adapter.graph_layouts(config, (421, 842, 1024, 4096, 8192), items)
    assert [layout.items for layout in layouts] == [3, 5, 6, 21, 42]
    assert [layout.tokens for layout in layouts] == [3 * 196, 5 * 196, 6 * 196, 21 * 196, 42 * 196]
    # Each 384 px tile padded to 392 px: 28 x 28 patches of 14 px.
    assert [layout.input_patches for layout in layouts] == [n * 784 for n in (3, 5, 6, 21, 42)]
    assert (
        layouts[-1].meaning
        == "8,192 tokens = 42 tiles of 384x384 px, 32,928 SigLIP patches unfolded to 196 tokens each"
    )


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_batch_of_tiles_computes_what_each_tile_computes_alone(attn):
    adapter, config, tower = _tower("tiny-deepseek-vl2", "cpu", "float32", attn)
    for parameter in tower.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    layout = adapter.layout(config, 500, 1)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        [batched] = adapter.forward(tower, inputs)
        alone = torch.cat([tower(tile[None]) for tile in inputs["pixel_values"]])
    assert batched.shape == (3, 196, 64)
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    assert batched.std() > 0.1  # the comparison is of real values


def test_sdpa_and_eager_compute_the_same_tiles():
    results = []
    for attn in ("sdpa", "eager"):
        *_, tower = _tower("tiny-deepseek-vl2", "cpu", "float32", attn)
        pixels = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            results.append(tower(pixels))
    torch.testing.assert_close(*results, rtol=1e-5, atol=1e-5)


def test_published_form_without_architectures_is_deepseek_vl2():
    spec = resolve("deepseek-vl2")
    assert spec.adapter.family == "deepseek-vl2" and spec.config["model_type"] == "deepseek_vl2"
    assert spec.config["vision_config"]["num_hidden_layers"] == 27
    assert spec.config["projector_config"]["n_embed"] == 2560


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["vision_config"].update(patch_size=16), "vision_config.patch_size is 16"),
        (lambda d: d["vision_config"].pop("patch_size"), "vision_config.patch_size is 16"),
        (lambda d: d["projector_config"].update(projector_type="linear"), "projector_type is 'linear'"),
        (lambda d: d.update(tile_tag="1D"), "tile_tag is '1D'"),
        (lambda d: d.pop("language_config"), "needs vision_config and language_config"),
    ],
)
def test_forms_vllm_would_lay_out_for_another_tower_are_refused(tmp_path, change, message):
    data = json.loads(resolve("deepseek-vl2").source.read_text())
    change(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=message):
        resolve(str(path))


def test_names_of_the_smaller_models_point_to_their_ids():
    for name, repo in [
        ("DeepSeek-VL2-Small", "deepseek-ai/deepseek-vl2-small"),
        ("deepseek-vl2-tiny", "deepseek-ai/deepseek-vl2-tiny"),
    ]:
        with pytest.raises(UsageError, match=f"give its Hugging Face id \\({repo}\\)"):
            resolve(name)


def _traced(adapter, tower, inputs, modules: dict) -> tuple[list, dict]:
    """encgraph's trace of the captured forward (meta tensors) and, for each module named, one (events when
    it was called, events when it returned, its input's storage, its output's storage) a call."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    from encgraph_profiler.trace import AllocationTrace, trace

    calls, started = {name: [] for name in modules}, {}

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

    handles = [h for name, m in modules.items() for h in (m.register_forward_pre_hook(before(name)),
                                                           m.register_forward_hook(after(name)))]  # fmt: skip
    try:
        with torch.inference_mode():
            events, _ = trace(lambda: adapter.forward(tower, inputs))
    finally:
        for handle in handles:
            handle.remove()
    return events, calls


def _freed(events, start: int, key: int) -> int:
    """Where the storage ``key``, live at event ``start``, is freed."""
    return next(i for i in range(start, len(events)) if events[i][:2] == ("free", key))


def test_tensors_live_as_long_as_in_timms_forward_features():
    """timm's VisionTransformer, which vLLM builds: _pos_embed drops the patch embedding once the resampled
    position table is added, before the first block; the blocks run as one nn.Sequential, so their input
    (the embedded patches) lives until the last block returns, and is dropped before the final norm. The
    patch embedding kept instead and the embedded patches dropped after the first block, with the
    projector's copy of an unpadded grid, made the 8,192-token pool 77,594,624 bytes larger than vLLM's."""
    adapter, config, tower = _tower("tiny-deepseek-vl2")
    layout = adapter.layout(config, 421, 1)
    inputs = adapter.make_inputs(tower, config, layout, "bfloat16", torch.device("meta"), torch.Generator())
    vision = tower.vision
    parts = {"embed": vision.patch_embed.proj, "blocks": vision.blocks, "first": vision.blocks[0], "norm": vision.norm}
    events, calls = _traced(adapter, tower, inputs, parts)
    (embed,), (blocks,), (first,), (norm,) = (calls[name] for name in parts)
    assert _freed(events, embed[1], embed[3]) < first[0]
    assert blocks[1] <= _freed(events, blocks[0], blocks[2]) < norm[0]


@pytest.mark.parametrize("side, pads", [(28, []), (27, [(0, 0, 0, 1, 0, 1)])])
def test_projector_pads_only_a_grid_the_ratio_does_not_divide(monkeypatch, side, pads):
    """vLLM's MlpProjector pads only when the side is odd (F.pad with zero padding would copy the grid)."""
    *_, tower = _tower("tiny-deepseek-vl2", "cpu", "float32")
    real, given = torch.nn.functional.pad, []
    monkeypatch.setattr(
        torch.nn.functional, "pad", lambda x, pad, *a, **k: given.append(tuple(pad)) or real(x, pad, *a, **k)
    )
    with torch.inference_mode():
        out = tower.projector(torch.randn(2, side * side, 32))
    assert given == pads and out.shape == (2, ((side + 1) // 2) ** 2, 64)
