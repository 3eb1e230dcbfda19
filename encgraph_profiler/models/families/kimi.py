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

from ..errors import UsageError
from ..units import counted
from . import varlen
from .base import Adapter, Layout

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


class KimiK25Adapter(Adapter):
    family = "kimi-k2.5"
    model_types = ("kimi_k25",)
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
            meaning=f"{budget:,} tokens = {counted(items, 'images')} of {nh * kh * p}x{nw * kw * p} px, {patches:,} ViT patches merged {kh}x{kw}",
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
            layout = replace(layout, input_patches=patches, grids=((frames, h, w),) * layout.items,
                             meaning=(f"{layout.budget:,} tokens = {layout.items} videos of {frames} frames of {h * p}x{w * p} px, "
                                      f"{patches:,} ViT patches, frames pooled, merged {kh}x{kw}"))
        table = (ROPE_TABLE_SIDE // kh) * kh * (ROPE_TABLE_SIDE // kw) * kw
        return replace(layout, max_seqlen=max(min(layout.budget * kh * kw, table), layout.input_patches))

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch
        from transformers.models.kimi_k25.modeling_kimi_k25 import get_vision_frame_index, get_vision_temporal_merge_index
        from transformers.vision_utils import (
            get_vision_cu_seqlens,
            get_vision_interpolation_indices_and_weights,
            get_vision_position_ids,
        )

        vision = tower.vision_tower
        grid = torch.tensor(layout.grids, dtype=torch.long)
        p = config.vision_config.patch_size
        pixels = torch.randn(layout.input_patches, 3, p, p, generator=generator)
        embeddings = vision.patch_embed.pos_emb
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid, embeddings.num_grid_per_side, mode=embeddings.interpolation_mode,
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
            "pixel_values": pixels.to(device=device, dtype=getattr(torch, dtype)),
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
            raise UsageError(f"budget {budget:,} over {counted(items, 'items')} puts {per_item:,} tokens in each, a strip of "
                             f"{kw * per_item:,} patches; vLLM's Kimi-VL rope table holds {ROPE_TABLE_SIDE}, so it cannot capture "
                             f"this either: give --max-items {-(-budget // widest)} or more")
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
