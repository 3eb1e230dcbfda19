"""Kimi's MoonViT towers: a dynamic-resolution ViT (learned position table resampled per image,
2-D rotary positions), whose kh x kw patch windows are merged and projected to the language model
by the multimodal projection. The captured graph covers the ViT and the projection, as vLLM's does.

Kimi-K2.5 (transformers' ``kimi_k25``). vLLM's layout for budget B (kimi_k25.py): k items, each of
per_item = max(B // k, 1) output slots laid out as nh x nw windows, nh = min(isqrt(per_item), R / kh)
and nw = min(ceil(per_item / nh), R / kw), R = 512 the side of vLLM's 2-D RoPE table; grid
[1, nh * kh, nw * kw] per item. vLLM's smallest budget is 256 slots (a 448 x 448 image), which sets
its automatic items per batch. With video enabled each item is a chunk of up to pos_emb_time frames
of that grid, pooled over time into the same slots (``vllm_layout``).

Kimi-VL (Moonshot's ``kimi_vl``, read onto transformers' Kimi-K2.5 classes by remote_code.py: for
images its MoonViT and projector are Kimi-K2.5's, whose temporal position table adds nothing to a
single frame). vLLM's layout for budget B (kimi_vl.py, prepare_encoder_cudagraph_capture_inputs): k
items of per_item = B // k merged tokens, each a strip of grid [kh, kw * per_item] patches; its
smallest budget is 64 (a 224 x 224 image). vLLM's RoPE table admits strips of at most 512 patches,
so an item holds at most 512 / kw merged tokens.

transformers accepts every grid-dependent tensor precomputed (rotary positions, segment lengths,
position-table resampling, frame indices, the window-merge scatter), so none is derived in the graph.
With varlen attention (vLLM's MoonViT runs one flash kernel over the packed images) the segments are
a device tensor and the longest sequence is given: the longest there is, or with vLLM's capture the
one vLLM bakes into its graph (each adapter's ``vllm_layout``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ...errors import UsageError
from ...units import counted
from .. import varlen
from ..base import Adapter, Layout, VllmSource, random_input

ROPE_TABLE_SIDE = 512  # vLLM's 2-D RoPE table: items stay within 512 x 512 patches


def _tower_module():
    """The vision model and the multimodal projection as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.kimi_k25.modeling_kimi_k25 import Kimi_K25MultimodalProjection, Kimi_K25VisionModel

    class KimiK25Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_tower = Kimi_K25VisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation="sdpa" if attn == "varlen" else attn
            )
            if attn == "varlen":
                varlen.use(self.vision_tower)
            self.mm_projector = Kimi_K25MultimodalProjection(config).to(dtype)

        def forward(self, pixel_values, grid_thw, **precomputed):
            return self.mm_projector(self.vision_tower(pixel_values, grid_thw=grid_thw, **precomputed).pooler_output)

    return KimiK25Tower


def _kimi_k25(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Moonshot's ``kimi_k25`` for its own code (MoonViT sized by ``vt_*`` keys, a ``patchmerger``
    projector) onto transformers' ``kimi_k25``: the same MoonViT (its fused qkv split in three), the
    same 64x64 learned position table with a fixed temporal one, the same 2x2 merge and the same
    projector (LayerNorm, Linear, GELU, Linear). A config already in transformers' form is kept."""
    vision = data.get("vision_config")
    if not isinstance(vision, dict) or "vt_hidden_size" not in vision:
        return data
    expected = {"mm_projector_type": "patchmerger", "merge_type": "sd2_tpool", "pos_emb_type": "divided_fixed"}
    for key, value in expected.items():
        if vision.get(key, value) != value:
            raise UsageError(
                f"{source}: vision_config {key} {vision[key]!r} is built only by the authors' own code "
                f"(transformers' Kimi-K2.5 has {value!r}), which encgraph does not run"
            )
    renamed = {
        "vt_hidden_size": "hidden_size",
        "vt_intermediate_size": "intermediate_size",
        "vt_num_attention_heads": "num_attention_heads",
        "vt_num_hidden_layers": "num_hidden_layers",
        "init_pos_emb_height": "pos_emb_height",
        "init_pos_emb_width": "pos_emb_width",
        "init_pos_emb_time": "pos_emb_time",
        "patch_size": "patch_size",
        "merge_kernel_size": "merge_kernel_size",
    }
    native_vision = {"model_type": "kimi_k25_vision"}
    native_vision.update({new: vision[old] for old, new in renamed.items() if old in vision})
    text = data.get("text_config")
    if not isinstance(text, dict):
        raise UsageError(f"{source}: a kimi_k25 config needs a text_config object")
    return _kimi_native(
        data,
        native_vision,
        text,
        projection_hidden_size=vision.get("mm_hidden_size", native_vision.get("hidden_size")),
        projection_layer_norm_eps=vision.get("projector_ln_eps", 1e-5),
    )


def _kimi_native(
    data: dict[str, Any], native_vision: dict[str, Any], text: dict[str, Any], **projection
) -> dict[str, Any]:
    """A Kimi config read as transformers' Kimi_K25Config: the vision config given, the text config
    without the authors' code references, the projector's settings, the image placeholder renamed."""
    native = {
        k: v
        for k, v in data.items()
        if k not in ("auto_map", "vision_config", "text_config", "media_placeholder_token_id")
    }
    native.update(
        vision_config=native_vision,
        text_config={k: v for k, v in text.items() if k not in ("architectures", "auto_map")},
        **projection,
    )
    if "media_placeholder_token_id" in data:
        native["image_token_id"] = data["media_placeholder_token_id"]
    return native


def _kimi_vl(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Moonshot's ``kimi_vl`` for its own code onto transformers' Kimi-K2.5 classes, its model_type
    kept: its ``moonvit`` vision config is Kimi-K2.5's MoonViT for images (the same blocks, 2-D
    rotary positions, learned position table and 2x2 merge; Kimi-K2.5's temporal table adds nothing
    to a single frame) and its projector Kimi-K2.5's (LayerNorm of the vision width, Linear, GELU,
    Linear); its language model is DeepSeek-V3's, as Kimi-K2.5's."""
    vision, text = data.get("vision_config"), data.get("text_config")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise UsageError(f"{source}: a kimi_vl config needs vision_config and text_config objects")
    if vision.get("model_type", "moonvit") != "moonvit":
        raise UsageError(
            f"{source}: vision_config model_type {vision['model_type']!r} is built only by the authors' own code "
            "(Kimi-VL's is 'moonvit'), which encgraph does not run"
        )
    kept = (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_hidden_layers",
        "patch_size",
        "merge_kernel_size",
    )
    native_vision = {"model_type": "kimi_k25_vision", **{k: vision[k] for k in kept if k in vision}}
    renamed = {"init_pos_emb_height": "pos_emb_height", "init_pos_emb_width": "pos_emb_width"}
    native_vision.update({new: vision[old] for old, new in renamed.items() if old in vision})
    return _kimi_native(
        data,
        native_vision,
        {"model_type": "deepseek_v3", **text},
        projection_hidden_size=native_vision.get("hidden_size", 1152),
        projection_layer_norm_eps=1e-5,
        tie_word_embeddings=data.get("tie_word_embeddings", text.get("tie_word_embeddings", False)),
    )


class KimiK25Adapter(Adapter):
    family = "kimi-k2.5"
    model_types = ("kimi_k25",)
    vllm = VllmSource("model_executor/models/kimi_k25.py", "KimiK25ForConditionalGeneration")
    aliases = {"kimi": "kimi-k2.5"}
    own_forms = {"kimi_k25": _kimi_k25}  # Moonshot's own form shares transformers' model_type
    config_class_name = "transformers:Kimi_K25Config"
    model_class_name = "transformers:Kimi_K25ForConditionalGeneration"
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")
    packs_sequences = True
    captures_video = True

    def min_budget(self, config) -> int:
        return 256

    def tower_config(self, data):
        return self.full_config(data)  # the projection needs the language model's width

    def tower_module(self):
        return _tower_module()

    def layout(self, config, budget: int, items: int) -> Layout:
        kh, kw = config.vision_config.merge_kernel_size
        per_item = max(budget // items, 1)
        nh = min(max(math.isqrt(per_item), 1), ROPE_TABLE_SIDE // kh)
        nw = max(min(-(-per_item // nh), ROPE_TABLE_SIDE // kw), 1)
        grid = (1, nh * kh, nw * kw)
        patches = items * nh * kh * nw * kw
        p = config.vision_config.patch_size
        return Layout(
            budget=budget,
            items=items,
            tokens=items * nh * nw,
            input_patches=patches,
            grids=(grid,) * items,
            meaning=f"{budget:,} tokens = {counted(items, 'images')} of {nh * kh * p}x{nw * kw * p} px, {patches:,} "
            f"ViT patches merged {kh}x{kw}",
        )

    def vllm_layout(self, layout: Layout, config, frames_per_batch: int) -> Layout:
        """vLLM's capture inputs: with F = frames_per_batch // k > 1, each item a video chunk of
        min(F, pos_emb_time) frames of the image's grid (its temporal position table's length;
        the frames are pooled into the image's tokens); the longest sequence a single image of the
        whole budget (B windows of kh x kw patches) within the RoPE table, or all the patches
        captured if more."""
        kh, kw = config.vision_config.merge_kernel_size
        frames = min(frames_per_batch // layout.items, config.vision_config.pos_emb_time)
        if frames > 1:
            _, h, w = layout.grids[0]
            p = config.vision_config.patch_size
            patches = layout.items * frames * h * w
            layout = replace(
                layout,
                input_patches=patches,
                grids=((frames, h, w),) * layout.items,
                meaning=(
                    f"{layout.budget:,} tokens = {layout.items} videos of {frames} frames of {h * p}x{w * p} px, "
                    f"{patches:,} ViT patches, frames pooled, merged {kh}x{kw}"
                ),
            )
        table = (ROPE_TABLE_SIDE // kh) * kh * (ROPE_TABLE_SIDE // kw) * kw
        return replace(layout, max_seqlen=max(min(layout.budget * kh * kw, table), layout.input_patches))

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch
        from transformers.models.kimi_k25.modeling_kimi_k25 import (
            get_vision_frame_index,
            get_vision_temporal_merge_index,
        )
        from transformers.vision_utils import (
            get_vision_cu_seqlens,
            get_vision_interpolation_indices_and_weights,
            get_vision_position_ids,
        )

        vision = tower.vision_tower
        grid = torch.tensor(layout.grids, dtype=torch.long)
        p = config.vision_config.patch_size
        pixels = random_input((layout.input_patches, 3, p, p), dtype, device, generator)
        embeddings = vision.patch_embed.pos_emb
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid,
            embeddings.num_grid_per_side,
            mode=embeddings.interpolation_mode,
            align_corners=embeddings.interpolation_align_corners,
        )
        # One gather index (transformers 5.17) or a scatter index, frame weights and a count (later).
        merge_index = get_vision_temporal_merge_index(grid, *vision.merge_kernel_size)
        if isinstance(merge_index, tuple):
            merge_index = tuple(v.to(device) if isinstance(v, torch.Tensor) else v for v in merge_index)
        else:
            merge_index = merge_index.to(device)
        cu_seqlens = get_vision_cu_seqlens(grid, merge_temporal=True).to(torch.int32)
        return {
            "pixel_values": pixels,
            "grid_thw": grid.to(device),
            "position_ids": get_vision_position_ids(grid, spatial_merge_size=1).to(device),
            **varlen.sequences(vision.config, cu_seqlens, layout.max_seqlen, device),
            "interp_indices": indices.to(device),
            "interp_weights": weights.to(device),
            "frame_index": get_vision_frame_index(grid).to(device),
            "temporal_merge_index": merge_index,
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    def reference_forward(self, tower, inputs: dict):
        return (tower(inputs["pixel_values"], inputs["grid_thw"]),)


class KimiVLAdapter(KimiK25Adapter):
    family = "kimi-vl"
    model_types = ("kimi_vl",)
    vllm = VllmSource("model_executor/models/kimi_vl.py", "KimiVLForConditionalGeneration")
    aliases = {"kimi-vl": "kimi-vl-a3b"}
    own_forms = {"kimi_vl": _kimi_vl}  # read by Kimi-K2.5's classes
    captures_video = False  # kimi_vl.py: no frames per video, images only

    def min_budget(self, config) -> int:
        return 64

    def layout(self, config, budget: int, items: int) -> Layout:
        kh, kw = config.vision_config.merge_kernel_size
        per_item = budget // items
        widest = ROPE_TABLE_SIDE // kw
        if per_item < 1:
            raise UsageError(f"budget {budget} cannot hold {counted(items, 'images')} of at least one token each")
        if per_item > widest:
            raise UsageError(
                f"budget {budget:,} over {counted(items, 'items')} puts {per_item:,} tokens in each, a strip of "
                f"{kw * per_item:,} patches; vLLM's Kimi-VL rope table holds {ROPE_TABLE_SIDE}, so it cannot capture "
                f"this either: give --max-items {-(-budget // widest)} or more"
            )
        grid = (1, kh, kw * per_item)
        p = config.vision_config.patch_size
        return Layout(
            budget=budget,
            items=items,
            tokens=items * per_item,
            input_patches=items * kh * kw * per_item,
            grids=(grid,) * items,
            meaning=f"{budget:,} tokens = {counted(items, 'images')} of {kh * p}x{kw * per_item * p} px, "
            f"{items * kh * kw * per_item:,} ViT patches merged {kh}x{kw}",
        )

    def vllm_layout(self, layout: Layout, config, frames_per_batch: int) -> Layout:
        """vLLM's longest sequence at capture is the budget itself (kimi_vl.py's max_seqlen_override)."""
        return replace(layout, max_seqlen=layout.budget)


ADAPTERS = (KimiK25Adapter(), KimiVLAdapter())
