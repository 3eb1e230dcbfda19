"""Step-3.7's (and Step3-VL-10B's) vision model and projector on vLLM 0.33.0's two paths (step3_vl.py)."""

import torch
from transformers import (
    Step3p7Config,
)
from transformers.models.step3p7.modeling_step3p7 import Step3p7VisionModel, Step3p7VisionRotaryEmbedding
from transformers.vision_utils import (
    get_vision_position_ids,
)

from bare_families import common
from bare_families.common import path_ladder

MODEL_TYPES = ("step3p7", "step_robotics")


def build(data, budgets, items, gen):
    """Step-3.7 (and Step3-VL-10B, whose vision model and projector are Step-3.7's) as vLLM's encoder
    graph manager captures it: a global path of min(B // 169, k) images of 728 px and a local path of
    B // 81 crops of 504 px, each path's budgets running from one of its items, doubling, up to the
    largest budget, plus the largest; global first, largest first."""
    v = Step3p7Config(vision_config=data["vision_config"]).vision_config
    with torch.device(common.DEVICE):
        vision = Step3p7VisionModel._from_config(v, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
        projector = torch.nn.Linear(
            v.hidden_size * 4,
            data["text_config"]["hidden_size"],
            bias=data.get("projector_bias", False),
            dtype=torch.bfloat16,
        ).eval()
    rotary = Step3p7VisionRotaryEmbedding(v)

    def side_after_downsampling(size):
        side = size // v.patch_size
        return (((side - 1) // 2 + 1) - 1) // 2 + 1  # two convolutions of kernel 3, stride 2, padding 1

    per_image, per_crop = side_after_downsampling(v.image_size) ** 2, side_after_downsampling(504) ** 2
    images_cap = min(budgets[0] // per_image, budgets[-1])  # vLLM's default items per batch for this family
    runs = []
    for size, counts in (
        (v.image_size, [min(b // per_image, images_cap) for b in path_ladder(per_image, budgets[0])]),
        (504, [b // per_crop for b in path_ladder(per_crop, budgets[0])]),
    ):
        side = size // v.patch_size
        pixels = torch.randn(1, 3, size, size, generator=gen)
        cos, sin = rotary(pixels, get_vision_position_ids(torch.tensor([[1, side, side]]), spatial_merge_size=1))
        for count in counts:
            runs.append(
                {
                    "pixel_values": torch.randn(count, 3, size, size, generator=gen).to(common.DEVICE, torch.bfloat16),
                    "cos": cos.to(common.DEVICE),
                    "sin": sin.to(common.DEVICE),
                }
            )

    def forward(pixel_values, cos, sin):
        batch, _, height, width = pixel_values.shape
        hidden = vision.pre_layernorm(vision.embeddings(pixel_values, interpolate_pos_encoding=True))
        for layer in vision.layers:
            hidden = layer(hidden, position_embeddings=(cos, sin))
        grid = hidden.permute(0, 2, 1).reshape(batch, -1, height // v.patch_size, width // v.patch_size)
        grid = vision.downsampler2(vision.downsampler1(grid))
        return projector(grid.flatten(2).permute(0, 2, 1))

    return forward, runs, images_cap
