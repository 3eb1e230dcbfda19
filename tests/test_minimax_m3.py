"""MiniMax M3 on its tiny and published configs (CPU): the captured module against the model's own image
features, vLLM 0.33.0's layout (MiniMaxM3EncoderCudaGraphMixin, models/minimax_m3/common/
encoder_cudagraph.py), MiniMax's own config form and the published checkpoint's parameter counts."""

import inspect
import json

import pytest
import torch

from encgraph_profiler.errors import UsageError
from encgraph_profiler.models.facts import model_facts
from encgraph_profiler.models.registry import configs_dir, resolve
from encgraph_profiler.request import STRATEGIES, ProfileRequest, prepare


def _per_image_attention() -> bool:
    """Whether this transformers' MiniMaxM3VLVisionModel attends image by image, as vLLM's does (5.24);
    5.17's attends across the images of a batch and rotates other dimensions."""
    from transformers.models.minimax_m3_vl import modeling_minimax_m3_vl as modeling

    return "cu_seqlens" in inspect.signature(modeling.MiniMaxM3VLVisionAttention.forward).parameters


@pytest.mark.skipif(not _per_image_attention(), reason="this transformers' MiniMax M3 vision tower is not vLLM's")
def test_captured_module_equals_the_models_own_image_features():
    spec = resolve("tiny-minimax-m3")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "sdpa")
    model = adapter.full_model_class()._from_config(adapter.full_config(spec.config)).eval().model
    tower.vision_tower.load_state_dict(model.vision_tower.state_dict())
    tower.multi_modal_projector.load_state_dict(model.multi_modal_projector.state_dict())
    layout = adapter.vllm_layout(adapter.layout(config, 1000, 4), config, 0)
    inputs = adapter.make_inputs(
        tower, config, layout, "float32", torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        (ours,) = adapter.forward(tower, inputs)
        theirs = model.get_image_features(inputs["pixel_values"], inputs["grid_thw"]).pooler_output
    expected = torch.cat(theirs) if isinstance(theirs, (tuple, list)) else theirs
    assert ours.shape == (1000, 64) and torch.equal(ours, expected)


def _traced(adapter, tower, inputs, modules: dict) -> tuple[list, dict]:
    """encgraph's trace of the captured forward (meta tensors) and, for each module named, one (events
    so far, output storage) a call: where in the trace its output was made."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    from encgraph_profiler.trace import AllocationTrace, trace

    made = {name: [] for name in modules}

    def hook(name):
        def record(module, args, output):
            recorder = next(m for m in _get_current_dispatch_mode_stack() if isinstance(m, AllocationTrace))
            made[name].append((len(recorder.events), output.untyped_storage()._cdata))

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        with torch.inference_mode():
            events, _ = trace(lambda: adapter.forward(tower, inputs))
    finally:
        for handle in handles:
            handle.remove()
    return events, made


def _freed(events, made) -> int:
    """Where the output made at ``made`` (from ``_traced``) is freed."""
    start, key = made
    return next(i for i in range(start, len(events)) if events[i][:2] == ("free", key))


def test_layers_free_what_vllms_encoder_layer_frees_where_it_frees_it():
    """vLLM's MiniMaxVLEncoderLayer.forward: x = x + self_attn(layer_norm1(x)) drops the attention's
    output at the add, before the second norm; fc1(layer_norm2(x)) drops the norm's output once fc1 has
    run. Each layer's attention output kept through its MLP made the 8,192-token pool of MiniMax M3
    335,544,320 bytes larger than vLLM's order gives."""
    spec = resolve("tiny-minimax-m3")
    adapter = spec.adapter
    config = adapter.tower_config(spec.config)
    with torch.device("meta"):
        tower = adapter.build_tower(config, "bfloat16", "varlen")
    layout = adapter.layout(config, 1000, 4)
    inputs = adapter.make_inputs(tower, config, layout, "bfloat16", torch.device("meta"), torch.Generator())
    layer = tower.vision_tower.layers[0]
    parts = {"out": layer.self_attn.out_proj, "norm2": layer.layer_norm2, "fc1": layer.mlp.fc1, "fc2": layer.mlp.fc2}
    events, made = _traced(adapter, tower, inputs, parts)
    (out,), (norm2,), (fc1,), (fc2,) = made.values()
    assert out[0] <= _freed(events, out) < norm2[0]
    assert fc1[0] <= _freed(events, norm2) < fc2[0]


def test_layout_is_vllms():
    """prepare_encoder_cudagraph_capture_inputs with k = min(4096 // 64, 1000) = 64: per = ceil(B / 64)
    tokens an image, grid [1, 2, 2 * per]; max_seqlen_override = every patch of the batch; cu_seqlens
    padded to k + 1 sequences (prepare_encoder_metadata with max_batch_size k + 1)."""
    setup = prepare(
        ProfileRequest(model="tiny-minimax-m3", budgets=(1000, 4096), attn="varlen", strategy=STRATEGIES["vllm"])
    )
    found = [
        (g.budget, g.items, g.grids[0], g.tokens, g.input_patches, g.max_seqlen, g.spare_sequences)
        for g in setup.layouts
    ]
    assert found == [(4096, 64, (1, 2, 128), 4096, 16384, 16384, 1), (1000, 64, (1, 2, 32), 1024, 4096, 4096, 1)]


def test_varlen_segments_carry_vllms_spare_sequence():
    spec = resolve("tiny-minimax-m3")
    adapter, config = spec.adapter, spec.adapter.tower_config(spec.config)
    tower = adapter.build_tower(config, "float32", "varlen")
    layout = adapter.vllm_layout(adapter.layout(config, 1000, 64), config, 0)
    inputs = adapter.make_inputs(tower, config, layout, "float32", torch.device("cpu"), torch.Generator())
    assert inputs["cu_seqlens"].tolist() == [64 * i for i in range(65)] + [4096]
    assert inputs["max_seqlen"] == 4096
    # The rotary planes are inputs (vLLM's buffers): head_dim 16 turns its first 3 * 4 dimensions.
    assert inputs["rotary_cos"].shape == inputs["rotary_sin"].shape == (4096, 12)


def test_video_layouts_are_refused():
    with pytest.raises(UsageError, match="captures no video layout for minimax-m3"):
        prepare(
            ProfileRequest(
                model="tiny-minimax-m3",
                budgets=(1024,),
                attn="varlen",
                strategy=STRATEGIES["vllm"],
                max_frames_per_batch=8,
            )
        )


def test_vllm_capture_needs_its_flash_attention():
    """get_encoder_cudagraph_config refuses any ViT backend but FLASH_ATTN (ROCm: ROCM_AITER_FA)."""
    with pytest.raises(UsageError, match="only with its flash-attention ViT backend"):
        prepare(ProfileRequest(model="tiny-minimax-m3", budgets=(1024,), attn="sdpa", strategy=STRATEGIES["vllm"]))
    assert prepare(ProfileRequest(model="tiny-minimax-m3", budgets=(1024,), attn="sdpa")).settings.attn == "sdpa"


def test_published_form_is_read_as_vllm_reads_it():
    config = resolve("minimax-m3").adapter.tower_config(resolve("minimax-m3").config)
    vision = config.vision_config
    assert (vision.spatial_merge_size, vision.temporal_patch_size, vision.patch_size) == (2, 2, 14)
    assert vision.rope_parameters["rope_theta"] == 10000.0
    assert (config.projector_hidden_size, config.text_config.hidden_size, config.merged_hidden_size) == (
        6144,
        6144,
        24576,
    )


def test_own_form_follows_vllms_defaults_and_refuses_what_transformers_cannot_build(tmp_path):
    published = json.loads((configs_dir() / "minimax-m3.json").read_text())
    vision = published["vision_config"]
    del published["projector_hidden_size"]
    vision["img_token_compression_config"] = {"spatial_merge_size": 4}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(published))
    config = resolve(str(path)).adapter.tower_config(resolve(str(path)).config)
    # vLLM: the projector's middle width is the language model's when none is given; merge 4, temporal 2.
    assert (config.projector_hidden_size, config.vision_config.spatial_merge_size) == (6144, 4)
    assert config.vision_config.temporal_patch_size == 2
    vision["multimodal_projector_bias"] = False
    path.write_text(json.dumps(published))
    with pytest.raises(UsageError, match="multimodal_projector_bias False is built only by vLLM's own code"):
        resolve(str(path))


def test_parameter_counts_are_the_published_checkpoints():
    """The checkpoint's tensor list (59 safetensors files of MiniMaxAI/MiniMax-M3): its vision tensors
    (ViT 631,185,920 + projector 45,625,344 + patch merge 188,755,968) and 427,040,140,160 in all,
    of which 57 x 128 are the routers' e_score_correction_bias, a buffer in transformers."""
    facts = model_facts(resolve("minimax-m3"), "bfloat16")
    assert facts.tower_parameters == 631_185_920 + 45_625_344 + 188_755_968 == 865_567_232
    assert facts.total_parameters == 427_040_140_160 - 57 * 128
