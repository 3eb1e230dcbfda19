"""Qwen2-VL's tower, laid out as vLLM 0.33.0's qwen2_vl.py captures it."""

import math

import torch
from transformers import (
    AttentionInterface,
    Qwen2VLConfig,
)
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
from transformers.vision_utils import (
    get_vision_cu_seqlens,
    get_vision_position_ids,
)

from bare_families import common
from bare_families.common import packed_flash

MODEL_TYPES = ("qwen2_vl",)


def build(data, budgets, items, gen, attn="sdpa"):
    """Qwen2-VL: k images of grid [1, m, ceil(B / k) * m] per budget."""
    vision = Qwen2VLConfig(**data).vision_config
    m = vision.spatial_merge_size
    with torch.device(common.DEVICE):
        tower = Qwen2VisionTransformerPretrainedModel._from_config(
            vision, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
    if attn == "varlen":  # the tower passes its segments to attention only for a "flash" implementation
        AttentionInterface.register("flash_packed_bare", packed_flash)
        tower.config._attn_implementation = "flash_packed_bare"
    features = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    runs = []
    for budget in budgets:
        per_item = math.ceil(budget / items)
        grid = torch.tensor([[1, m, per_item * m]] * items)
        run = {
            "hidden_states": torch.randn(items * m * m * per_item, features, generator=gen).to(
                common.DEVICE, torch.bfloat16
            ),
            "grid_thw": grid.to(common.DEVICE),
            "position_ids": get_vision_position_ids(grid, m).to(common.DEVICE),
            "cu_seqlens": get_vision_cu_seqlens(grid).to(torch.int32),
        }
        if attn == "varlen":
            run["cu_seqlens"], run["max_seqlen"] = run["cu_seqlens"].to(common.DEVICE), m * m * per_item
        runs.append(run)
    return (lambda **kwargs: tower(**kwargs).pooler_output), runs, items
