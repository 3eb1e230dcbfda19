"""GLM-5.3-Flash's tower (glm5_next), laid out as vLLM 0.33.0 captures it: glm4_1v.py's rules, which
models/glm5next/common/model.py keeps."""

import torch
from transformers import AttentionInterface, Glm5NextConfig
from transformers.models.glm5_next.modeling_glm5_next import Glm5NextVisionModel
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids

from bare_families import common
from bare_families.common import packed_flash

MODEL_TYPES = ("glm5_next",)


def build(data, budgets, items, gen, attn="sdpa"):
    """k images of grid [1, m, floor(B / k) * m] per budget; the graph covers the ViT, the merging
    convolution and the merger."""
    vision = Glm5NextConfig(**data).vision_config
    m = vision.spatial_merge_size
    with torch.device(common.DEVICE):
        tower = Glm5NextVisionModel._from_config(vision, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
    if attn == "varlen":  # the tower passes its segments to attention only for a "flash" implementation
        AttentionInterface.register("flash_packed_bare", packed_flash)
        tower.config._attn_implementation = "flash_packed_bare"
    features = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    runs = []
    for budget in budgets:
        per_item = budget // items
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
