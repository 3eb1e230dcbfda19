"""Qwen3.5 and Qwen3.5-MoE, and the MoE variant of Qwen3-VL: the vision tower is Qwen3-VL's
(learned position table resampled per image, 2-D rotary positions, merge size 2), dense in every
variant; only the language model differs. vLLM lays their budgets out as for Qwen2-VL: k items of
grid [1, m, ceil(B / k) * m]. Qwen3.5's tower has no DeepStack outputs; Qwen3-VL-MoE's has.

vLLM normalizes their pixels on the device as for Qwen3-VL: Qwen3_5ForConditionalGeneration and
Qwen3VLMoeForConditionalGeneration subclass Qwen3VLForConditionalGeneration, which declares
supports_mm_device_do_normalize, and build their towers with build_mm_input_norm.

Qwen3.5's language model is hybrid: only its full-attention layers keep a per-token KV cache, which
``models.facts`` counts from ``layer_types``.
"""

from __future__ import annotations

from .qwen3_vl import Qwen3VLAdapter


class Qwen3VLMoeAdapter(Qwen3VLAdapter):
    family = "qwen3-vl-moe"
    model_types = ("qwen3_vl_moe",)
    aliases = {"qwen3-vl-moe": "qwen3-vl-30b-a3b"}
    config_class_name = "transformers:Qwen3VLMoeConfig"
    tower_class_name = "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe:Qwen3VLMoeVisionModel"
    model_class_name = "transformers:Qwen3VLMoeForConditionalGeneration"


class Qwen3_5Adapter(Qwen3VLAdapter):
    family = "qwen3.5"
    model_types = ("qwen3_5",)
    aliases = {"qwen3.5": "qwen3.5-27b"}
    config_class_name = "transformers:Qwen3_5Config"
    tower_class_name = "transformers.models.qwen3_5.modeling_qwen3_5:Qwen3_5VisionModel"
    model_class_name = "transformers:Qwen3_5ForConditionalGeneration"


class Qwen3_5MoeAdapter(Qwen3_5Adapter):
    family = "qwen3.5-moe"
    model_types = ("qwen3_5_moe",)
    config_class_name = "transformers:Qwen3_5MoeConfig"
    tower_class_name = "transformers.models.qwen3_5_moe.modeling_qwen3_5_moe:Qwen3_5MoeVisionModel"
    model_class_name = "transformers:Qwen3_5MoeForConditionalGeneration"


ADAPTERS = (Qwen3VLMoeAdapter(), Qwen3_5Adapter(), Qwen3_5MoeAdapter())
