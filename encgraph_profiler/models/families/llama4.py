"""Llama 4: a ViT on fixed 336 x 336 chunks whose pixel-shuffle adapter pools each chunk's 576
patches to 144 tokens, then the multimodal projector to the language model's width. The captured
graph covers both, as vLLM's does.

vLLM's layout for budget B (mllama4.py): max(1, ceil(B / tokens_per_chunk)) chunks, tokens_per_chunk
= (image_size / patch_size)^2 x pixel_shuffle_ratio^2 (144); the maximum items per batch does not
apply.
"""

from __future__ import annotations

from typing import Any

from ...units import is_whole_number
from ..base import VllmSource
from ..layouts.tiled import TiledAdapter


def _tower_module():
    """Llama 4's vision model and projector as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.llama4.modeling_llama4 import Llama4MultiModalProjector, Llama4VisionModel

    class Llama4Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_model = Llama4VisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.multi_modal_projector = Llama4MultiModalProjector(config).to(dtype)

        def forward(self, pixel_values):
            """What Llama4ForConditionalGeneration does with pixel values before the language model."""
            features = self.vision_model(pixel_values).last_hidden_state
            return self.multi_modal_projector(features.view(-1, features.size(-1)))

    return Llama4Tower


def _meta_form(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Meta's published configs give ``attn_temperature_tuning: 4``, read as true by the transformers
    they were written for; transformers 5 takes only a bool."""
    text = data.get("text_config")
    value = text.get("attn_temperature_tuning") if isinstance(text, dict) else None
    if is_whole_number(value):
        data = {**data, "text_config": {**text, "attn_temperature_tuning": bool(value)}}
    return data


class Llama4Adapter(TiledAdapter):
    family = "llama4"
    model_types = ("llama4",)
    config_class_name = "transformers:Llama4Config"
    model_class_name = "transformers:Llama4ForConditionalGeneration"
    takes_max_items = False
    tile_noun = "chunks"
    size_fields = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "vision_output_dim",
        "pixel_shuffle_ratio",
    )

    def tower_module(self):
        return _tower_module()

    def tokens_per_tile(self, config) -> int:
        vision = config.vision_config
        return int((vision.image_size // vision.patch_size) ** 2 * vision.pixel_shuffle_ratio**2)

    def tiles(self, config, budget: int, items: int) -> int:
        return max(1, -(-budget // self.tokens_per_tile(config)))

    vllm = VllmSource("model_executor/models/mllama4.py", "Llama4ForConditionalGeneration")
    aliases = {
        "llama4": "llama-4-scout-17b-16e",
        "llama-4": "llama-4-scout-17b-16e",
        "llama-4-scout": "llama-4-scout-17b-16e",
    }
    own_forms = {"llama4": _meta_form}


ADAPTERS = (Llama4Adapter(),)
