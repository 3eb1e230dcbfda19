"""SigLIP vision tower (with its attention-pooling head), as used by many VLMs."""

from __future__ import annotations

from .fixed_resolution import FixedResolutionAdapter


class SiglipAdapter(FixedResolutionAdapter):
    family = "siglip"
    model_types = ("siglip",)

    def config_class(self):
        from transformers import SiglipConfig

        return SiglipConfig

    def tower_class(self):
        from transformers import SiglipVisionModel

        return SiglipVisionModel

    def full_model_class(self):
        from transformers import SiglipModel

        return SiglipModel
