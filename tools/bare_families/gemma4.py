"""Gemma 4's vision model and embedder, laid out as vLLM 0.33.0's gemma4_mm.py captures them."""

import math

import torch
from transformers import (
    Gemma4Config,
)
from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder, Gemma4VisionModel

from bare_families import common

MODEL_TYPES = ("gemma4",)


def build(data, budgets, items, gen):
    """Gemma 4 as vLLM 0.33.0 captures it: budget after budget (largest first), one graph per row width
    t of 70, 140, 280, 560, 1120 up to default_output_length, each of min(k, max(1, B // t)) rows of
    t x pool^2 patches (k = min(largest // 70, smallest)); the rows pooled, B soft tokens gathered, embedded."""
    config = Gemma4Config(**data)
    v = config.vision_config
    with torch.device(common.DEVICE):
        vision = Gemma4VisionModel._from_config(v, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
        embedder = Gemma4MultimodalEmbedder(v, config.text_config).to(torch.bfloat16).eval()
    pool, patch = v.pooling_kernel_size, v.patch_size
    items = max(1, min(budgets[0] // 70, budgets[-1]))
    runs = []
    for budget in budgets:
        for width in (t for t in (70, 140, 280, 560, 1120) if t <= v.default_output_length):
            rows = min(items, max(1, budget // width))
            side = max(r for r in range(1, math.isqrt(width) + 1) if width % r == 0)  # soft-token rows of one image
            high, wide = max(side - 1, 1), width // side  # less its last row: the rest is padding
            y, x = torch.meshgrid(torch.arange(high * pool), torch.arange(wide * pool), indexing="ij")
            positions = torch.full((rows, width * pool * pool, 2), -1, dtype=torch.long)
            positions[:, : high * wide * pool * pool] = torch.stack([x.flatten(), y.flatten()], dim=-1)
            pixels = torch.rand(rows, width * pool * pool, 3 * patch * patch, generator=gen)
            runs.append(
                {
                    "pixel_values": pixels.to(common.DEVICE, torch.bfloat16),
                    "pixel_position_ids": positions.to(common.DEVICE),
                    "gather_indices": torch.zeros(budget, dtype=torch.long, device=common.DEVICE),
                }
            )

    def forward(pixel_values, pixel_position_ids, gather_indices):
        padding = (pixel_position_ids == -1).all(dim=-1)
        embeds = vision.patch_embedder(pixel_values, pixel_position_ids, padding)
        hidden = vision.encoder(
            inputs_embeds=embeds, attention_mask=~padding, pixel_position_ids=pixel_position_ids
        ).last_hidden_state
        pooled, _ = vision.pooler(
            hidden_states=hidden,
            pixel_position_ids=pixel_position_ids,
            padding_positions=padding,
            output_length=pixel_values.shape[1] // pool**2,
        )
        if v.standardize:  # as vLLM's encoder_cudagraph_forward: the buffers in the model's dtype, not copied
            pooled = (pooled - vision.std_bias) * vision.std_scale
        return embedder(pooled.reshape(-1, pooled.shape[-1])[gather_indices].to(embeds.dtype))

    return forward, runs, items
