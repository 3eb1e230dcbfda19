"""CLIP vision tower. LLaVA-style VLMs drop the CLS token ("default" feature selection), so an image
counts image_size^2 / patch^2 tokens against a budget, while the tower still embeds CLS."""

from __future__ import annotations

from .fixed_resolution import FixedResolutionAdapter


class ClipAdapter(FixedResolutionAdapter):
    family = "clip"
    model_types = ("clip",)

    def config_class(self):
        from transformers import CLIPConfig

        return CLIPConfig

    def tower_class(self):
        from transformers import CLIPVisionModel

        return CLIPVisionModel

    def full_model_class(self):
        from transformers import CLIPModel

        return CLIPModel
