"""Gemma 3's SigLIP and projector, laid out as vLLM 0.33.0's gemma3_mm.py captures them."""

import torch
from transformers import (
    Gemma3Config,
    SiglipVisionModel,
)
from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector

from bare_families import common

MODEL_TYPES = ("gemma3",)


def build(data, budgets, items, gen):
    """Gemma 3: min(B // mm_tokens_per_image, k) images of 896 x 896 through SigLIP and the projector."""
    config = Gemma3Config(**data)
    with torch.device(common.DEVICE):
        vision = SiglipVisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = Gemma3MultiModalProjector(config).to(torch.bfloat16).eval()
    size = config.vision_config.image_size
    runs = [
        {
            "pixel_values": torch.randn(min(b // config.mm_tokens_per_image, items), 3, size, size, generator=gen).to(
                common.DEVICE, torch.bfloat16
            )
        }
        for b in budgets
    ]
    return (lambda pixel_values: projector(vision(pixel_values=pixel_values).last_hidden_state)), runs, items
