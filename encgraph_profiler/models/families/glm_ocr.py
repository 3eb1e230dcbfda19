"""GLM-OCR (transformers' ``glm_ocr``): GLM-4.1V's tower without its learned position table (2-D
rotary positions alone, no post-convolution norm), with q/k norms in attention, then the 2 x 2
merging convolution and the merger MLP. The captured graph covers the ViT and the merger.

vLLM captures it with GLM-4.1V's rules: its GlmOcrForConditionalGeneration (glm_ocr.py) subclasses
Glm4vForConditionalGeneration and keeps glm4_1v.py's budget range, item specs and capture inputs:
k items of grid [1, m, floor(B / k) * m], the video layout and the fixed longest sequence as for
GLM-4.1V, and the pixels normalized on the device as for GLM-4.1V (uint8 pixels captured; its tower
runs build_mm_input_norm's norm before the patch embedding). The tower's own forward takes the
precomputed positions and segments, but this runs its steps directly, as for GLM-4.1V, so that no
grid-dependent tensor is derived inside the graph.
"""

from __future__ import annotations

from ..base import Layout
from .glm4v import Glm4vAdapter, as_frames, run_tower
from .qwen2_vl import Qwen2VLAdapter


class GlmOcrAdapter(Glm4vAdapter):
    family = "glm-ocr"
    model_types = ("glm_ocr",)
    hub_ids = {"glm-ocr": "zai-org/GLM-OCR"}
    config_class_name = "transformers:GlmOcrConfig"
    tower_class_name = "transformers.models.glm_ocr.modeling_glm_ocr:GlmOcrVisionModel"
    model_class_name = "transformers:GlmOcrForConditionalGeneration"

    def make_inputs(self, tower, vision_config, layout: Layout, dtype: str, device, generator) -> dict:
        """Qwen2-VL's inputs for the frames, without GLM-4.1V's per-image lengths (no position table)."""
        return Qwen2VLAdapter.make_inputs(self, tower, vision_config, as_frames(layout), dtype, device, generator)

    def forward(self, tower, inputs: dict):
        """The steps of GlmOcrVisionModel.forward, with the positions and segments given."""
        return run_tower(tower, inputs, _embed)


def _embed(tower, inputs: dict) -> tuple:
    """Patches and their rotary embedding: GLM-OCR has no position table."""
    hidden = tower.patch_embed(inputs["hidden_states"])
    return hidden, tower.rotary_pos_emb(hidden, inputs["position_ids"])


ADAPTERS = (GlmOcrAdapter(),)
