"""ERNIE-4.5-VL (transformers' ``ernie4_5_vl_moe``): a Qwen2-VL-style dynamic-resolution ViT (2-D
rotary positions, merge size m = 2) whose patches carry no temporal axis. vLLM captures the ViT
only; its variable-resolution resampler runs eagerly after the graph, so the graph's output is the
ViT's last hidden state, m^2 rows per budget token.

vLLM's layout for budget B (ernie45_vl.py): k items of grid [1, m, ceil(B / k) * m], as for
Qwen2-VL, the longest sequence fixed at B * m^2; images only (its video path runs eagerly).
"""

from __future__ import annotations

from .qwen2_vl import Qwen2VLAdapter


class Ernie4_5VLAdapter(Qwen2VLAdapter):
    family = "ernie4.5-vl"
    model_types = ("ernie4_5_vl_moe",)
    config_class_name = "transformers:Ernie4_5_VLMoeConfig"
    tower_class_name = "transformers.models.ernie4_5_vl_moe.modeling_ernie4_5_vl_moe:Ernie4_5_VLMoeVisionTransformerPretrainedModel"
    model_class_name = "transformers:Ernie4_5_VLMoeForConditionalGeneration"
    size_fields = ("depth", "hidden_size", "num_heads")
    captures_video = False

    def patch_features(self, vision_config) -> int:
        return vision_config.in_channels * vision_config.patch_size**2

    def forward(self, tower, inputs: dict):
        return (tower(**inputs).last_hidden_state,)

    def reference_forward(self, tower, inputs: dict):
        return (tower(inputs["hidden_states"], inputs["grid_thw"]).last_hidden_state,)
