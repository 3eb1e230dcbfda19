"""SigLIP vision tower (with its attention-pooling head), as used by many VLMs."""

from __future__ import annotations

from ..layouts.fixed_resolution import FixedResolutionAdapter


class SiglipAdapter(FixedResolutionAdapter):
    family = "siglip"
    model_types = ("siglip",)
    config_class_name = "transformers:SiglipConfig"
    tower_class_name = "transformers:SiglipVisionModel"
    model_class_name = "transformers:SiglipModel"
    aliases = {"siglip": "siglip-so400m-patch14-384"}


ADAPTERS = (SiglipAdapter(),)
