"""Llama 4's vision model and projector, laid out as vLLM 0.33.0's mllama4.py captures them."""

import math

import torch
from transformers import (
    Llama4Config,
)
from transformers.models.llama4.modeling_llama4 import Llama4MultiModalProjector, Llama4VisionModel

from bare_families import common

MODEL_TYPES = ("llama4",)


def build(data, budgets, items, gen):
    """Llama 4: max(1, ceil(B / 144)) chunks of 336 x 336 through the vision model and the projector."""
    data["text_config"]["attn_temperature_tuning"] = bool(data["text_config"].get("attn_temperature_tuning", True))
    config = Llama4Config(**data)
    with torch.device(common.DEVICE):
        vision = Llama4VisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = Llama4MultiModalProjector(config).to(torch.bfloat16).eval()
    v = config.vision_config
    per_chunk = int((v.image_size // v.patch_size) ** 2 * v.pixel_shuffle_ratio**2)
    runs = [
        {
            "pixel_values": torch.randn(
                max(1, math.ceil(b / per_chunk)), 3, v.image_size, v.image_size, generator=gen
            ).to(common.DEVICE, torch.bfloat16)
        }
        for b in budgets
    ]

    def forward(pixel_values):
        features = vision(pixel_values).last_hidden_state
        return projector(features.view(-1, features.size(-1)))

    return forward, runs, None  # k does not apply
