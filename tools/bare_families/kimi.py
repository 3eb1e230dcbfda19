"""Kimi-VL's and Kimi-K2.5's MoonViT and projector, laid out as vLLM 0.33.0's kimi_vl.py and kimi_k25.py
capture them."""

import torch
from transformers import (
    AttentionInterface,
    Kimi_K25Config,
)
from transformers.models.kimi_k25 import modeling_kimi_k25 as kimi
from transformers.vision_utils import (
    get_vision_cu_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)

from bare_families import common
from bare_families.common import packed_flash

MODEL_TYPES = ("kimi_vl", "kimi_k25")


def build(data, budgets, items, gen, attn="sdpa"):
    """Kimi-VL (Moonshot's kimi_vl form) or Kimi-K2.5 (Moonshot's kimi_k25 form, MoonViT sized by vt_*
    keys) through transformers' Kimi-K2.5 MoonViT and projector, laid out as vLLM 0.33.0's
    prepare_encoder_cudagraph_capture_inputs (kimi_vl.py, kimi_k25.py): k items of ceil(B / k) tokens
    in rows of at most 512 // kw windows (its RoPE table is 512 x 512 patches), grid [1, rows * kh,
    row * kw]; the longest image given to varlen attention."""
    v, text = data["vision_config"], data["text_config"]
    sizes = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
    if "vt_hidden_size" in v:
        vision = {key: v["vt_" + key] for key in sizes} | {"pos_emb_time": v["init_pos_emb_time"]}
        projection = {"projection_hidden_size": v["mm_hidden_size"], "projection_layer_norm_eps": v["projector_ln_eps"]}
    else:
        vision = {key: v[key] for key in sizes}
        projection = {"projection_hidden_size": v["hidden_size"]}
    vision |= {
        "patch_size": v["patch_size"],
        "pos_emb_height": v["init_pos_emb_height"],
        "pos_emb_width": v["init_pos_emb_width"],
        "merge_kernel_size": v["merge_kernel_size"],
    }
    config = Kimi_K25Config(vision_config=vision, text_config={"hidden_size": text["hidden_size"]}, **projection)
    with torch.device(common.DEVICE):
        tower = kimi.Kimi_K25VisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = kimi.Kimi_K25MultimodalProjection(config).to(torch.bfloat16).eval()
    if attn == "varlen":  # the tower passes its segments to attention only for a "flash" implementation
        AttentionInterface.register("flash_packed_bare", packed_flash)
        tower.config._attn_implementation = "flash_packed_bare"
    kh, kw = config.vision_config.merge_kernel_size
    p, side = config.vision_config.patch_size, config.vision_config.pos_emb_height
    runs = []
    for budget in budgets:
        per_item = -(-budget // items)
        row = min(per_item, 512 // kw)
        rows = -(-per_item // row)
        grid = torch.tensor([[1, rows * kh, row * kw]] * items)
        indices, weights = get_vision_interpolation_indices_and_weights(grid, side, mode="bicubic", align_corners=False)
        merge = kimi.get_vision_temporal_merge_index(grid, kh, kw)
        cu_seqlens = get_vision_cu_seqlens(grid, merge_temporal=True).to(torch.int32)
        runs.append(
            {
                "pixel_values": torch.randn(int(grid.prod(-1).sum()), 3, p, p, generator=gen).to(
                    common.DEVICE, torch.bfloat16
                ),
                "grid_thw": grid.to(common.DEVICE),
                "position_ids": get_vision_position_ids(grid, spatial_merge_size=1).to(common.DEVICE),
                **(
                    {"cu_seqlens": cu_seqlens.to(common.DEVICE), "max_seqlen": rows * kh * row * kw}
                    if attn == "varlen"
                    else {"cu_seqlens": cu_seqlens}
                ),
                "interp_indices": indices.to(common.DEVICE),
                "interp_weights": weights.to(common.DEVICE),
                "frame_index": kimi.get_vision_frame_index(grid).to(common.DEVICE),
                "temporal_merge_index": tuple(t.to(common.DEVICE) if torch.is_tensor(t) else t for t in merge)
                if isinstance(merge, tuple)
                else merge.to(common.DEVICE),
            }
        )
    return (lambda **kwargs: projector(tower(**kwargs).pooler_output)), runs, items
