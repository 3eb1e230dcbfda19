"""Qwen3-VL: learned position table resampled per image, and DeepStack features from
intermediate blocks, which the language model consumes: they are graph outputs too.

vLLM normalizes the pixels on the device, as for Qwen2-VL (Qwen3VLForConditionalGeneration declares
supports_mm_device_do_normalize); Qwen3-VL's processor maps them to [-1, 1] (mean = std = 0.5 per
channel, after / 255).
"""

from __future__ import annotations

import functools

from ..base import PixelNorm, VllmSource
from ..grids import per_grid, staging
from .qwen2_vl import Qwen2VLAdapter

HALF_PIXELS = PixelNorm((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class Qwen3VLAdapter(Qwen2VLAdapter):
    family = "qwen3-vl"
    model_types = ("qwen3_vl",)
    config_class_name = "transformers:Qwen3VLConfig"
    tower_class_name = "transformers.models.qwen3_vl.modeling_qwen3_vl:Qwen3VLVisionModel"
    model_class_name = "transformers:Qwen3VLForConditionalGeneration"
    size_fields = ("depth", "hidden_size", "num_heads")
    processor_norm = HALF_PIXELS

    def precompute(self, tower, layout, grid_thw, device) -> dict:
        """Qwen2-VL's, and the position table's resampling, made for one image of each grid (``per_grid``)."""
        import torch
        from transformers.vision_utils import get_vision_interpolation_indices_and_weights

        inputs = super().precompute(tower, layout, grid_thw, device)

        @functools.cache  # once a grid for its indices and its weights
        def interpolation(one):
            return get_vision_interpolation_indices_and_weights(
                torch.tensor([one]),
                num_grid_per_side=tower.num_grid_per_side,
                mode=tower.interpolation_mode,
                align_corners=tower.interpolation_align_corners,
                spatial_merge_size=tower.spatial_merge_size,
            )

        where = staging(device)
        inputs["interp_indices"] = per_grid(layout.grids, lambda one: interpolation(one)[0], where).to(device)
        inputs["interp_weights"] = per_grid(layout.grids, lambda one: interpolation(one)[1], where).to(device)
        return inputs

    @staticmethod
    def _outputs(result):
        return (result.pooler_output, *(getattr(result, "deepstack_features", None) or ()))

    def forward(self, tower, inputs: dict):
        return self._outputs(tower(**inputs))

    def reference_forward(self, tower, inputs: dict):
        return self._outputs(tower(inputs["hidden_states"], inputs["grid_thw"]))

    vllm = VllmSource("model_executor/models/qwen3_vl.py", "Qwen3VLForConditionalGeneration", normalizes_pixels=True)
    aliases = {"qwen3-vl": "qwen3-vl-8b"}


ADAPTERS = (Qwen3VLAdapter(),)
