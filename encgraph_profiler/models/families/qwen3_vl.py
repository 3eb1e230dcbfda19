"""Qwen3-VL: learned position table resampled per image, and DeepStack features from
intermediate blocks, which the language model consumes: they are graph outputs too."""

from __future__ import annotations

from ..base import VllmSource
from .qwen2_vl import Qwen2VLAdapter


class Qwen3VLAdapter(Qwen2VLAdapter):
    family = "qwen3-vl"
    model_types = ("qwen3_vl",)
    config_class_name = "transformers:Qwen3VLConfig"
    tower_class_name = "transformers.models.qwen3_vl.modeling_qwen3_vl:Qwen3VLVisionModel"
    model_class_name = "transformers:Qwen3VLForConditionalGeneration"
    size_fields = ("depth", "hidden_size", "num_heads")

    def precompute(self, tower, layout, grid_thw, device) -> dict:
        from transformers.vision_utils import get_vision_interpolation_indices_and_weights

        inputs = super().precompute(tower, layout, grid_thw, device)
        indices, weights = get_vision_interpolation_indices_and_weights(
            grid_thw,
            num_grid_per_side=tower.num_grid_per_side,
            mode=tower.interpolation_mode,
            align_corners=tower.interpolation_align_corners,
            spatial_merge_size=tower.spatial_merge_size,
        )
        inputs["interp_indices"] = indices.to(device)
        inputs["interp_weights"] = weights.to(device)
        return inputs

    @staticmethod
    def _outputs(result):
        return (result.pooler_output, *(getattr(result, "deepstack_features", None) or ()))

    def forward(self, tower, inputs: dict):
        return self._outputs(tower(**inputs))

    def reference_forward(self, tower, inputs: dict):
        return self._outputs(tower(inputs["hidden_states"], inputs["grid_thw"]))

    vllm = VllmSource("model_executor/models/qwen3_vl.py", "Qwen3VLForConditionalGeneration")
    aliases = {"qwen3-vl": "qwen3-vl-8b"}


ADAPTERS = (Qwen3VLAdapter(),)
