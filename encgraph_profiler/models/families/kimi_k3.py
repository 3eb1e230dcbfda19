"""Kimi-K3 (Moonshot's ``kimi_k3``): MoonViT3d, Kimi-K2.5's vision tower as vLLM builds it for Kimi-K3
(RMS norms, no biases, a 1536-wide fused qkv of 12 heads of 128 over a 1024-wide stream, a 64 x 64
position table resampled bilinearly, 2-D rotary positions), its kh x kw patch windows gathered and
projected by a bias-free Linear, GELU, Linear and RMSNorm (``patchmergerv2``) to the KimiLinear language
model. The captured graph covers the tower and the projector, as vLLM's does. transformers has no class
for it (its Kimi-K2.5 tower has LayerNorms, biases and heads of width / heads), so encgraph builds
its own (towers/kimi_k3.py), its parameters named and shaped as the published checkpoint's.

vLLM 0.33.0 captures its encoder graphs only in the NVIDIA build (models/kimi_k3/nvidia/model.py,
KimiK3ForConditionalGeneration; the ROCm class does not opt in):

- Budgets (get_encoder_cudagraph_budget_range; v1/worker/encoder_cudagraph.py): from 64 tokens,
  doubling, the largest included; k items per batch is min(max_budget // 64, smallest budget).
- The grid (prepare_encoder_cudagraph_capture_inputs): per = ceil(B / k) tokens an item, as near
  square as the 512 x 512-patch RoPE table allows: wo = min(ceil(sqrt(per)), 512 // kw) windows a
  row, ho = ceil(per / wo) rows; where ho > 512 // kh, ho is that and wo = ceil(per / ho); k items of
  grid [1, ho * kh, wo * kw]. Where wo is then past the table vLLM raises, and encgraph refuses.
- The longest sequence given to varlen attention (max_seqlen_override): max(B * kh * kw, one
  item's patches); cu_seqlens padded to k sequences, which the k items fill: no spare.
- Images only (its modality is "image"): ``--max-frames-per-batch`` is refused.
- Outside the graph, as vLLM's capture buffers (prepare_encoder_cudagraph_metadata): the resampled
  position table, the rotary angles, the segments and the window-gather index.
- The pixels: KimiK3ForConditionalGeneration declares supports_mm_device_do_normalize, and vLLM's
  mm_device_do_normalize is on by default, so vLLM captures uint8 pixels and its patch embedding
  (kimi_k25_vit.py's, as for Kimi-K2.5) normalizes them in the graph, freeing them after the
  projection; ``--as vllm`` does the same. What the graph allocates depends only on the processor's
  normalization not being the identity, not on its values: Kimi-K3's processor config is not
  bundled, and Kimi-K2.5's MoonViT values (mean = std = 0.5 after / 255) stand for it.
- Inside the graph, each block frees its tensors where vLLM's MoonViTEncoderLayer.forward does: the
  fused qkv and the first norm's output when attention_qkvpacked returns, before the MLP.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ...errors import UsageError
from ...units import counted, is_whole_number
from ..base import Layout, VllmSource
from ..grids import staging
from .kimi import ROPE_TABLE_SIDE, KimiK25Adapter, _kimi_native

# The MoonViT structure vLLM builds for Kimi-K3 (KimiK3VisionConfig's defaults, as the published config
# states them): the one encgraph builds.
K3_STRUCTURE = {
    "norm_type": "rmsnorm",
    "attn_bias": False,
    "linear_bias": False,
    "patch_embed_proj_bias": False,
    "mlp_type": "mlp2",
    "merge_type": "sd2_tpool",
    "pos_emb_type": "divided_fixed",
    "video_attn_type": "spatial_temporal",
    "mm_projector_type": "patchmergerv2",
}
RENAMED = {  # Moonshot's kimi_k3 vision fields -> transformers' Kimi_K25VisionConfig's
    "vt_hidden_size": "hidden_size",
    "vt_intermediate_size": "intermediate_size",
    "vt_num_attention_heads": "num_attention_heads",
    "vt_num_hidden_layers": "num_hidden_layers",
    "init_pos_emb_height": "pos_emb_height",
    "init_pos_emb_width": "pos_emb_width",
    "init_pos_emb_time": "pos_emb_time",
    "activation_func": "hidden_act",
    "patch_size": "patch_size",
    "merge_kernel_size": "merge_kernel_size",
    "pos_emb_interpolation_mode": "pos_emb_interpolation_mode",  # an extra field, read by the tower
}


def _head_dim(vision: dict[str, Any], source: str) -> int:
    """qkv_hidden_size // vt_num_attention_heads, a multiple of 4 as the 2-D RoPE needs (vLLM asserts it)."""
    heads, inner = vision.get("vt_num_attention_heads"), vision.get("qkv_hidden_size")
    if isinstance(heads, int) and isinstance(inner, int) and is_whole_number(heads, 1) and is_whole_number(inner, 1):
        head_dim, rest = divmod(inner, heads)
        if not rest and head_dim % 4 == 0:
            return head_dim
    raise UsageError(
        f"{source}: vision_config qkv_hidden_size {inner!r} does not split into vt_num_attention_heads {heads!r} "
        "heads of a size its 2-D RoPE takes (a multiple of 4)"
    )


def _kimi_k3(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Moonshot's ``kimi_k3`` (MoonViT sized by ``vt_*`` keys, a ``qkv_hidden_size`` apart from the
    width) onto transformers' Kimi-K2.5 config classes, its model_type kept: the sizes renamed as for
    Kimi-K2.5, ``activation_func`` as ``hidden_act``, the head size ``head_dim`` = qkv_hidden_size //
    heads, the KimiLinear text config kept. Structures other than Kimi-K3's are refused."""
    vision, text = data.get("vision_config"), data.get("text_config")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise UsageError(f"{source}: a kimi_k3 config needs vision_config and text_config objects")
    for key, value in K3_STRUCTURE.items():
        if vision.get(key, value) != value:
            raise UsageError(
                f"{source}: vision_config {key} {vision[key]!r} is not Kimi-K3's ({value!r}), the only MoonViT "
                "structure encgraph builds for kimi_k3"
            )
    if text.get("model_type", "kimi_linear") != "kimi_linear":
        raise UsageError(f"{source}: a kimi_k3 text_config is KimiLinear's; got {text['model_type']!r}")
    native_vision: dict[str, Any] = {"model_type": "kimi_k25_vision", "pos_emb_interpolation_mode": "bilinear"}
    native_vision |= {new: vision[old] for old, new in RENAMED.items() if old in vision}
    native_vision["head_dim"] = _head_dim(vision, source)
    return _kimi_native(
        data,
        native_vision,
        {"model_type": "kimi_linear", **text},
        projection_hidden_size=vision.get("mm_hidden_size", native_vision.get("hidden_size")),
        projection_layer_norm_eps=vision.get("projector_ln_eps", 1e-5),
    )


class KimiK3Adapter(KimiK25Adapter):
    family = "kimi-k3"
    model_types = ("kimi_k3",)
    vllm = VllmSource("models/kimi_k3/nvidia/model.py", "KimiK3ForConditionalGeneration", normalizes_pixels=True)
    own_forms = {"kimi_k3": _kimi_k3}  # read by transformers' Kimi-K2.5 config classes
    model_class_name = ""

    def tower_module(self):
        from ..towers.kimi_k3 import KimiK3Tower

        return KimiK3Tower

    def layout(self, config, budget: int, items: int) -> Layout:
        """prepare_encoder_cudagraph_capture_inputs: k items of ceil(B / k) tokens each, as near
        square as the 512 x 512-patch RoPE table allows."""
        kh, kw = config.vision_config.merge_kernel_size
        widest, tallest = ROPE_TABLE_SIDE // kw, ROPE_TABLE_SIDE // kh
        per_item = -(-budget // items)
        wo = min(math.isqrt(per_item - 1) + 1, widest)  # ceil(sqrt(per_item))
        ho = -(-per_item // wo)
        if ho > tallest:
            ho = tallest
            wo = -(-per_item // ho)
        if wo > widest:
            capacity = widest * tallest
            raise UsageError(
                f"budget {budget:,} over {counted(items, 'items')} puts {per_item:,} tokens in each; vLLM's "
                f"{self.family} capture cannot lay it out either (Encoder CUDA graph budget {budget} exceeds K3 RoPE "
                f"capacity for max_batch_size={items}; {capacity:,} tokens an item at most): give --max-items "
                f"{-(-budget // capacity)} or more"
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
        """vLLM's longest sequence: B windows of kh x kw patches, or one item where that is longer;
        cu_seqlens padded to k sequences, which the k items fill."""
        kh, kw = config.vision_config.merge_kernel_size
        _, h, w = layout.grids[0]
        return replace(layout, max_seqlen=max(layout.budget * kh * kw, h * w))

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        """The pixels, and vLLM's capture buffers: the resampled position table, the rotary angles,
        the segments (the longest given where vLLM gives it) and the window-gather index."""
        import torch

        from ..towers.kimi_k3 import precomputed, rope_angles

        vision = tower.vision_tower
        grids = list(layout.grids)
        p = config.vision_config.patch_size
        with torch.no_grad():
            pos_embeds = vision.patch_embed.pos_emb(grids)
        rope_cos, rope_sin = (t.to(device) for t in rope_angles(grids, vision.config.head_dim, staging(device)))
        return {
            "pixel_values": self.pixels(tower, layout, (layout.input_patches, 3, p, p), dtype, device, generator),
            "grid_thw": torch.tensor(grids, dtype=torch.long),
            "pos_embeds": pos_embeds,
            "rope_cos": rope_cos,
            "rope_sin": rope_sin,
            **precomputed(vision.config, grids, device, layout.max_seqlen),
        }

    def full_model_class(self):
        from ..towers.kimi_k3 import KimiK3Model

        return KimiK3Model


ADAPTERS = (KimiK3Adapter(),)
