"""GLM-5.3-Flash (transformers' ``glm5_next``): a GLM-OCR-style ViT (2-D rotary positions alone, no
position table, RMS norms, q/k norms in attention, a clamped SwiGLU MLP), then the 2 x 2 merging
convolution and a merger whose SwiGLU is clamped too, before Zhipu's hybrid language model (linear
attention, sparse MLA, MoE). The captured graph covers the ViT and the merger.

vLLM 0.33.0 captures it with GLM-4.1V's rules: Glm5NextForConditionalGeneration
(models/glm5next/common/model.py) subclasses glm4_1v.py's Glm4vForConditionalGeneration and keeps its
get_encoder_cudagraph_budget_range (64 tokens up to the batched-token limit),
get_encoder_cudagraph_item_specs and prepare_encoder_cudagraph_capture_inputs: k items of grid
[1, m, floor(B / k) * m], the longest sequence fixed at B * m^2, and with video F = frames per batch // k
> 1 frames per item. It overrides only get_encoder_cudagraph_config, to drop the position-table buffer
(``pos_embeds``) that its tower (Glm5NextVisionTransformer) does not have. It inherits GLM-4.1V's
supports_mm_device_do_normalize, and its tower runs build_mm_input_norm's norm before the patch
embedding: uint8 pixels captured and normalized in the graph, as for GLM-4.1V. As for GLM-OCR, the
tower's steps run here with the positions and segments precomputed.
"""

from __future__ import annotations

from ..base import VllmSource
from .glm_ocr import GlmOcrAdapter


class Glm5NextAdapter(GlmOcrAdapter):
    family = "glm5-next"
    model_types = ("glm5_next",)
    # The census lists Glm5NextForConditionalGeneration as an inheritor of this place.
    vllm = VllmSource("model_executor/models/glm4_1v.py", "Glm4vForConditionalGeneration", normalizes_pixels=True)
    hub_ids = {"glm-5.3-flash": "zai-org/GLM-5.3-Flash", "glm5-next": "zai-org/GLM-5.3-Flash"}
    config_class_name = "transformers:Glm5NextConfig"
    tower_class_name = "transformers.models.glm5_next.modeling_glm5_next:Glm5NextVisionModel"
    model_class_name = "transformers:Glm5NextForConditionalGeneration"


ADAPTERS = (Glm5NextAdapter(),)
