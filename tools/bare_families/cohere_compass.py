"""Cohere Compass's tower (North-Micro-Vision), laid out as vLLM 0.33.0's cohere_compass.py captures it."""

import math

import torch
from transformers import AttentionInterface, CohereCompassConfig
from transformers.models.cohere_compass.modeling_cohere_compass import CohereCompassVisionModel
from transformers.vision_utils import (
    get_vision_cu_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)

from bare_families import common
from bare_families.common import packed_flash

MODEL_TYPES = ("cohere_compass",)


def build(data, budgets, items, gen, attn="sdpa"):
    """k images of grid [1, m, ceil(B / k) * m] per budget; the graph ends with the merger's tokens and
    every DeepStack level's concatenated, one tensor, as vLLM's tower returns them."""
    vision = CohereCompassConfig(**data).vision_config
    m = vision.spatial_merge_size
    with torch.device(common.DEVICE):
        tower = CohereCompassVisionModel._from_config(vision, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
    if attn == "varlen":  # the tower passes its segments to attention only for a "flash" implementation
        AttentionInterface.register("flash_packed_bare", packed_flash)
        tower.config._attn_implementation = "flash_packed_bare"
    features = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    runs = []
    for budget in budgets:
        per_item = math.ceil(budget / items)
        grid = torch.tensor([[1, m, per_item * m]] * items)
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid,
            num_grid_per_side=tower.num_grid_per_side,
            mode=tower.interpolation_mode,
            align_corners=tower.interpolation_align_corners,
            spatial_merge_size=m,
        )
        run = {
            "hidden_states": torch.randn(items * m * m * per_item, features, generator=gen).to(
                common.DEVICE, torch.bfloat16
            ),
            "grid_thw": grid.to(common.DEVICE),
            "position_ids": get_vision_position_ids(grid, m).to(common.DEVICE),
            "interp_indices": indices.to(common.DEVICE),
            "interp_weights": weights.to(common.DEVICE),
            "cu_seqlens": get_vision_cu_seqlens(grid).to(torch.int32),
        }
        if attn == "varlen":
            run["cu_seqlens"], run["max_seqlen"] = run["cu_seqlens"].to(common.DEVICE), m * m * per_item
        runs.append(run)

    def forward(**kwargs):
        result = tower(**kwargs)
        return torch.cat([result.pooler_output, *result.deepstack_features], dim=1)

    return forward, runs, items
