"""InternVL 2 to 3.5 (transformers' native ``internvl``): InternViT on fixed 448 x 448 tiles, then a
pixel shuffle that merges 2 x 2 patches and the MLP projector. The captured graph covers all three,
as vLLM's does.

vLLM's layout for budget B: max(B // num_image_token, 1) tiles, num_image_token = (S / patch)^2 x
downsample^2 (256 for 448 px tiles); the maximum items per batch does not apply.
"""

from __future__ import annotations

from .tiled import TiledAdapter, side


def _tower_module():
    """InternViT, pixel shuffle and projector as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.internvl.modeling_internvl import (
        InternVLModel,
        InternVLMultiModalProjector,
        InternVLVisionModel,
    )

    class InternVLTower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.config = config
            self.vision_tower = InternVLVisionModel._from_config(config.vision_config, dtype=dtype, attn_implementation=attn)
            self.multi_modal_projector = InternVLMultiModalProjector(config).to(dtype)

        def forward(self, pixel_values):
            """The steps of InternVLModel.get_image_features, without the language model."""
            layer = self.config.vision_feature_layer
            outputs = self.vision_tower(pixel_values=pixel_values, output_hidden_states=layer != -1)
            features = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
            if self.config.vision_feature_select_strategy == "default":
                features = features[:, 1:, :]  # the CLS token
            batch, tokens, width = features.shape
            side = int(tokens**0.5)
            # pixel_shuffle reads nothing from the model it belongs to.
            features = InternVLModel.pixel_shuffle(None, features.reshape(batch, side, side, width), self.config.downsample_ratio)
            return self.multi_modal_projector(features.reshape(batch, -1, features.shape[-1]))

    return InternVLTower


class InternVLAdapter(TiledAdapter):
    family = "internvl"
    model_types = ("internvl",)
    config_class_name = "transformers:InternVLConfig"
    model_class_name = "transformers:InternVLForConditionalGeneration"
    takes_max_items = False
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")

    def tower_module(self):
        return _tower_module()

    def tokens_per_tile(self, config) -> int:
        patches = (side(config.vision_config.image_size) // side(config.vision_config.patch_size)) ** 2
        return int(patches * config.downsample_ratio**2)

    def tiles(self, config, budget: int, items: int) -> int:
        return max(budget // self.tokens_per_tile(config), 1)
