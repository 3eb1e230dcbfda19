"""GLM-4.1V and GLM-4.6V-Flash: a Qwen-style dynamic-resolution ViT (2-D rotary positions, merge
size m = 2) with a learned position table interpolated per image, a 2 x 2 convolution that merges
patches, and the merger MLP. The captured graph covers the ViT and the merger, as vLLM's does.
GLM-4.5V and GLM-4.6V (``glm4v_moe``) have the same tower before a MoE language model; vLLM's
Glm4vMoeForConditionalGeneration subclasses GLM-4.1V's model and captures it the same way.

vLLM's layout for budget B (glm4_1v.py): k items of grid [1, m, floor(B / k) * m], rounding down
where the Qwen families round up; its video layout and fixed longest sequence are the Qwen ones.

vLLM normalizes the pixels on the device (Glm4vForConditionalGeneration declares
supports_mm_device_do_normalize; Glm4vMoeForConditionalGeneration subclasses it), as for Qwen2-VL:
uint8 pixels captured, normalized in the graph before the patch embedding, with the OpenAI CLIP mean
and std of GLM-4.1V's image processor.

transformers derives the per-image lengths its position interpolation needs from ``cu_seqlens``,
which the sdpa path must keep on the host, and then compares them with device tensors. ``forward``
runs the tower's steps with those lengths precomputed on the device; a CPU test checks it against
the model's own ``get_image_features``.
"""

from __future__ import annotations

from dataclasses import replace

from ..base import Layout, VllmSource
from .qwen2_vl import Qwen2VLAdapter


def as_frames(layout: Layout) -> Layout:
    """transformers' GLM towers take a video as its frames, each an image of grid [1, h, w] (as
    Glm4vModel.get_video_features hands them over): the same sequences, one per frame."""
    return replace(layout, grids=tuple((1, h, w) for t, h, w in layout.grids for _ in range(t)))


def run_tower(tower, inputs: dict, embed) -> tuple:
    """The ViT blocks over the packed sequences, then the 2 x 2 merging convolution and the merger.
    ``embed(tower, inputs)`` gives the embedded patches and their rotary embedding: everything before
    the blocks, in its own frame, so that nothing it made stays referenced while the blocks run."""
    hidden, rotary = embed(tower, inputs)
    for block in tower.blocks:
        hidden = block(
            hidden, cu_seqlens=inputs["cu_seqlens"], max_seqlen=inputs.get("max_seqlen"), position_embeddings=rotary
        )
    hidden = tower.post_layernorm(hidden)
    m = tower.spatial_merge_size
    hidden = hidden.view(-1, m, m, hidden.shape[-1]).permute(0, 3, 1, 2)
    hidden = tower.downsample(hidden).view(-1, tower.config.out_hidden_size)
    return (tower.merger(hidden),)


def _embed(tower, inputs: dict) -> tuple:
    """Patches, their rotary embedding, and the learned position table resampled per image."""
    position_ids = inputs["position_ids"]
    hidden = tower.post_conv_layernorm(tower.patch_embed(inputs["hidden_states"]))
    rotary = tower.rotary_pos_emb(hidden, position_ids)
    hidden = tower.embeddings(hidden, inputs["lengths"], inputs["grid_thw"], position_ids[:, 0], position_ids[:, 1])
    return hidden, rotary


class Glm4vAdapter(Qwen2VLAdapter):
    family = "glm4v"
    model_types = ("glm4v",)
    vllm = VllmSource("model_executor/models/glm4_1v.py", "Glm4vForConditionalGeneration", normalizes_pixels=True)
    aliases = {"glm-4.1v": "glm-4.1v-9b", "glm4v": "glm-4.1v-9b"}
    config_class_name = "transformers:Glm4vConfig"
    tower_class_name = "transformers.models.glm4v.modeling_glm4v:Glm4vVisionModel"
    model_class_name = "transformers:Glm4vForConditionalGeneration"
    size_fields = ("depth", "hidden_size", "num_heads", "out_hidden_size")

    def tokens_per_item(self, budget: int, items: int) -> int:
        return budget // items  # floor(B / k)

    def make_inputs(self, tower, vision_config, layout: Layout, dtype: str, device, generator) -> dict:
        inputs = super().make_inputs(tower, vision_config, as_frames(layout), dtype, device, generator)
        cu_seqlens = inputs["cu_seqlens"]
        inputs["lengths"] = (cu_seqlens[1:] - cu_seqlens[:-1]).to(device)
        return inputs

    def forward(self, tower, inputs: dict):
        """The steps of Glm4vVisionModel.forward, with every grid-dependent tensor given."""
        return run_tower(tower, inputs, _embed)

    def reference_forward(self, tower, inputs: dict):
        """The tower's own forward, which runs where every tensor is on one device (the CPU)."""
        return (tower(inputs["hidden_states"], grid_thw=inputs["grid_thw"]).pooler_output,)


class Glm46vAdapter(Glm4vAdapter):
    family = "glm46v"
    model_types = ("glm46v",)
    config_class_name = "transformers:Glm46VConfig"
    model_class_name = "transformers:Glm46VForConditionalGeneration"


class Glm4vMoeAdapter(Glm4vAdapter):
    family = "glm4v-moe"
    model_types = ("glm4v_moe",)
    aliases = {"glm4v-moe": "glm-4.6v"}
    config_class_name = "transformers:Glm4vMoeConfig"
    tower_class_name = "transformers.models.glm4v_moe.modeling_glm4v_moe:Glm4vMoeVisionModel"
    model_class_name = "transformers:Glm4vMoeForConditionalGeneration"


ADAPTERS = (Glm4vAdapter(), Glm46vAdapter(), Glm4vMoeAdapter())
