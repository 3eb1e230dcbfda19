"""Gemma 3: a SigLIP tower at a fixed 896 x 896, then the multimodal projector, which average-pools
each image's 4,096 patches to ``mm_tokens_per_image`` (256) tokens and projects them to the
language model's width. The captured graph covers both, as vLLM's does.

vLLM's layout for budget B: min(B // mm_tokens_per_image, k) whole images, k the maximum items per
batch; a budget below one image's tokens cannot be captured.
"""

from __future__ import annotations

from ...errors import UsageError
from ..base import VllmSource
from ..layouts.tiled import TiledAdapter


def _tower_module():
    """SigLIP followed by Gemma 3's projector, as one module (defined lazily: it needs torch)."""
    import torch
    from transformers import SiglipVisionModel
    from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector

    class Gemma3Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_tower = SiglipVisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.multi_modal_projector = Gemma3MultiModalProjector(config).to(dtype)

        def forward(self, pixel_values):
            return self.multi_modal_projector(self.vision_tower(pixel_values=pixel_values).last_hidden_state)

    return Gemma3Tower


class Gemma3Adapter(TiledAdapter):
    family = "gemma3"
    model_types = ("gemma3",)
    config_class_name = "transformers:Gemma3Config"
    model_class_name = "transformers:Gemma3ForConditionalGeneration"
    tile_noun, merge_verb = "images", "pooled"
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")

    def tower_module(self):
        return _tower_module()

    def min_budget(self, config) -> int:
        return config.mm_tokens_per_image  # vLLM's smallest Gemma 3 budget: one image

    def tokens_per_tile(self, config) -> int:
        return config.mm_tokens_per_image

    def tiles(self, config, budget: int, items: int) -> int:
        per_image = config.mm_tokens_per_image
        images = min(budget // per_image, items)
        if images == 0:
            raise UsageError(
                f"budget {budget} is below one Gemma 3 image ({per_image} tokens); use budgets of at least {per_image}"
            )
        return images

    vllm = VllmSource("model_executor/models/gemma3_mm.py", "Gemma3ForConditionalGeneration")
    aliases = {"gemma3": "gemma-3-27b", "gemma-3": "gemma-3-27b"}


ADAPTERS = (Gemma3Adapter(),)
