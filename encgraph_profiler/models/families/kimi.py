"""Kimi's MoonViT towers: a dynamic-resolution ViT (learned position table resampled per image,
2-D rotary positions), whose kh x kw patch windows are merged and projected to the language model
by the multimodal projection. The captured graph covers the ViT and the projection, as vLLM's does.
Kimi-K2.5 is transformers' ``kimi_k25``; Kimi-VL is Moonshot's ``kimi_vl``, read onto transformers'
Kimi-K2.5 classes by remote_code.py (for images its MoonViT and projector are Kimi-K2.5's, whose
temporal position table adds nothing to a single frame).

vLLM 0.33.0 lays both out by the same rules, but for the longest sequence and the spare segment:

- Budgets and items (EncoderCudaGraphManager.__init__ and _generate_budgets, v1/worker/
  encoder_cudagraph.py; get_encoder_cudagraph_budget_range, kimi_k25.py and kimi_vl.py): the
  smallest budget is 64 tokens for both, the ladder doubles from it with the largest always
  included, and k items per batch is min(max_budget // 64, smallest budget) by default.
- The grid (prepare_encoder_cudagraph_capture_inputs, kimi_k25.py and kimi_vl.py): per =
  ceil(B / k) tokens an item, laid out in rows as wide as the 512 x 512-patch 2-D RoPE table allows
  (rope_2d, kimi_k25_vit.py and moonvit.py): wo = min(per, 512 // kw) windows a row, ho =
  ceil(per / wo) rows; k items of grid [1, ho * kh, wo * kw], k * ho * wo >= B tokens. Where
  ho * kh > 512 vLLM's assertion fails (more than (512 // kh) * (512 // kw) tokens an item), and
  encgraph refuses the budget with vLLM's reason.
- The longest sequence given to varlen attention (``vllm_layout``, max_seqlen_override):
  Kimi-K2.5 B * kh * kw patches, one image of the whole budget; Kimi-VL B itself.
- The segments (prepare_encoder_metadata, kimi_k25_vit.py and moonvit.py): Kimi-K2.5's capture pads
  cu_seqlens to max_batch_size + 1 sequences, one spare zero-length sequence after the k images
  (k + 2 offsets, ``Layout.spare_sequences``); Kimi-VL's pads to max_batch_size, k: no spare
  (k + 1 offsets).
- Images only: Kimi-K2.5's modality is "vision_chunk" (get_encoder_cudagraph_config), but
  get_encoder_cudagraph_item_specs sizes a chunk of more than one frame at 2**30 tokens, so video
  chunks run eagerly, and its capture grids are single frames; Kimi-VL's modality is "image". So
  ``--max-frames-per-batch`` is refused for both.
- The pixels: KimiK25ForConditionalGeneration declares supports_mm_device_do_normalize, so vLLM
  captures Kimi-K2.5's as uint8 and its patch embedding (kimi_k25_vit.py) normalizes them first, in
  the tower's dtype, freeing them after its projection (mean = std = 0.5 after / 255, the
  processor's media_proc_cfg). KimiVLForConditionalGeneration does not: Kimi-VL's pixels arrive
  normalized, in the tower's dtype.

transformers accepts every grid-dependent tensor precomputed (rotary positions, segment lengths,
position-table resampling, frame indices, the window-merge scatter), so none is derived in the graph.
With varlen attention (vLLM's MoonViT runs one flash kernel over the packed images) the segments are
a device tensor and the longest sequence is given: the longest there is, or with vLLM's capture the
one vLLM bakes into its graph.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from ...errors import UsageError
from ...units import counted
from .. import varlen
from ..base import Adapter, Layout, PixelNorm, VllmSource
from ..grids import per_grid, staging

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


def _temporal_merge_index(grids, kh: int, kw: int, where, device):
    """transformers' get_vision_temporal_merge_index, made for one image of each grid (``per_grid``): a
    gather index of each merged token's t x kh x kw patches (transformers 5.17), or a scatter index of
    each patch's merged token and place in its window, each frame's weight and the merged tokens' count
    (later releases). The indices point into the packed batch, so each image's are shifted by its
    patches (5.17) or by its merged tokens' kh * kw places (later) for every image before it."""
    import torch
    from transformers.models.kimi_k25.modeling_kimi_k25 import get_vision_temporal_merge_index

    @functools.cache  # built once a grid: its scatter and frame parts are taken apart
    def of(one):
        return get_vision_temporal_merge_index(torch.tensor([one]), kh, kw)

    def windows(one) -> int:
        return (one[1] // kh) * (one[2] // kw)

    if not isinstance(of(grids[0]), tuple):
        return per_grid(grids, of, where, step=lambda one: one[0] * one[1] * one[2]).to(device)
    scatter = per_grid(grids, lambda one: of(one)[0], where, step=lambda one: windows(one) * kh * kw)
    frames = per_grid(grids, lambda one: of(one)[1], where)
    return scatter.to(device), frames.to(device), sum(windows(one) for one in grids)


class KimiK25Adapter(Adapter):
    family = "kimi-k2.5"
    model_types = ("kimi_k25",)
    vllm = VllmSource("model_executor/models/kimi_k25.py", "KimiK25ForConditionalGeneration", normalizes_pixels=True)
    aliases = {"kimi": "kimi-k2.5"}
    own_forms = {"kimi_k25": _kimi_k25}  # Moonshot's own form shares transformers' model_type
    config_class_name = "transformers:Kimi_K25Config"
    model_class_name = "transformers:Kimi_K25ForConditionalGeneration"
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")
    packs_sequences = True
    captures_video = False  # kimi_k25.py: video chunks (t > 1) run eagerly; images are captured
    processor_norm = PixelNorm((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # media_proc_cfg
    pixel_module = "vision_tower.patch_embed.proj"  # vLLM frees the normalized pixels after the projection

    def min_budget(self, config) -> int:
        return 64  # kimi_k25.py and kimi_vl.py, get_encoder_cudagraph_budget_range

    def tower_config(self, data):
        return self.full_config(data)  # the projection needs the language model's width

    def tower_module(self):
        return _tower_module()

    def layout(self, config, budget: int, items: int) -> Layout:
        """prepare_encoder_cudagraph_capture_inputs: k items of ceil(B / k) tokens in rows of at
        most 512 // kw windows, each item within the 512 x 512-patch RoPE table."""
        kh, kw = config.vision_config.merge_kernel_size
        per_item = -(-budget // items)
        wo = min(per_item, ROPE_TABLE_SIDE // kw)
        ho = -(-per_item // wo)
        if ho * kh > ROPE_TABLE_SIDE:
            capacity = (ROPE_TABLE_SIDE // kh) * (ROPE_TABLE_SIDE // kw)
            raise UsageError(
                f"budget {budget:,} over {counted(items, 'items')} puts {per_item:,} tokens in each; vLLM's "
                f"{self.family} capture cannot lay it out either (per-item tokens {per_item} exceeds RoPE grid "
                f"capacity, max {capacity:,} tokens): give --max-items {-(-budget // capacity)} or more"
            )
        grid = (1, ho * kh, wo * kw)
        patches = items * ho * kh * wo * kw
        p = config.vision_config.patch_size
        return Layout(
            budget=budget,
            items=items,
            tokens=items * ho * wo,
            input_patches=patches,
            grids=(grid,) * items,
            meaning=f"{budget:,} tokens = {counted(items, 'images')} of {ho * kh * p}x{wo * kw * p} px, "
            f"{patches:,} ViT patches merged {kh}x{kw}",
        )

    def vllm_layout(self, layout: Layout, config, frames_per_batch: int) -> Layout:
        """vLLM's capture inputs: the longest sequence one image of the whole budget (B windows of
        kh x kw patches), and cu_seqlens padded to k + 1 sequences, one spare of length 0."""
        kh, kw = config.vision_config.merge_kernel_size
        return replace(layout, max_seqlen=layout.budget * kh * kw, spare_sequences=1)

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        """The pixels and transformers' precomputed tensors, each made for one image of each grid
        (``per_grid``) from transformers' own functions."""
        import torch
        from transformers.models.kimi_k25.modeling_kimi_k25 import get_vision_frame_index
        from transformers.vision_utils import (
            get_vision_cu_seqlens,
            get_vision_interpolation_indices_and_weights,
            get_vision_position_ids,
        )

        vision, grids, where = tower.vision_tower, layout.grids, staging(device)
        grid = torch.tensor(grids, dtype=torch.long)
        p = config.vision_config.patch_size
        pixels = self.pixels(tower, layout, (layout.input_patches, 3, p, p), dtype, device, generator)
        embeddings = vision.patch_embed.pos_emb

        @functools.cache  # once a grid for its indices and its weights
        def interpolation(one):
            return get_vision_interpolation_indices_and_weights(
                torch.tensor([one]),
                embeddings.num_grid_per_side,
                mode=embeddings.interpolation_mode,
                align_corners=embeddings.interpolation_align_corners,
            )

        cu_seqlens = get_vision_cu_seqlens(grid, merge_temporal=True).to(torch.int32)
        return {
            "pixel_values": pixels,
            "grid_thw": grid.to(device),
            "position_ids": per_grid(
                grids, lambda one: get_vision_position_ids(torch.tensor([one]), spatial_merge_size=1), where
            ).to(device),
            **varlen.sequences(vision.config, cu_seqlens, layout.max_seqlen, device, layout.spare_sequences),
            "interp_indices": per_grid(grids, lambda one: interpolation(one)[0], where).to(device),
            "interp_weights": per_grid(grids, lambda one: interpolation(one)[1], where).to(device),
            "frame_index": per_grid(grids, lambda one: get_vision_frame_index(torch.tensor([one])), where).to(device),
            "temporal_merge_index": _temporal_merge_index(grids, *vision.merge_kernel_size, where, device),
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

    def vllm_layout(self, layout: Layout, config, frames_per_batch: int) -> Layout:
        """vLLM's longest sequence at capture is the budget itself (kimi_vl.py's max_seqlen_override);
        cu_seqlens is padded to k sequences, which the k items fill: no spare."""
        return replace(layout, max_seqlen=layout.budget)


ADAPTERS = (KimiK25Adapter(), KimiVLAdapter())
