"""CLIP vision tower. LLaVA-style VLMs drop the CLS token ("default" feature selection), so an image
counts image_size^2 / patch^2 tokens against a budget, while the tower still embeds CLS."""

from __future__ import annotations

from ..layouts.fixed_resolution import FixedResolutionAdapter


class ClipAdapter(FixedResolutionAdapter):
    family = "clip"
    model_types = ("clip",)
    config_class_name = "transformers:CLIPConfig"
    tower_class_name = "transformers:CLIPVisionModel"
    model_class_name = "transformers:CLIPModel"
    aliases = {"clip": "clip-vit-large-patch14-336"}


ADAPTERS = (ClipAdapter(),)
