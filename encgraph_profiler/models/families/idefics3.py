"""Idefics3 and SmolVLM: a SigLIP-style ViT on fixed S x S tiles, then the connector, whose pixel
shuffle merges scale_factor x scale_factor patches and projects them to the language model's width.
The captured graph covers both, as vLLM's does.

vLLM's layout for budget B (idefics3.py, smolvlm.py): ceil(B / image_seq_len) whole tiles,
image_seq_len = (S / patch)^2 / scale_factor^2, with the position ids of whole tiles computed up
front; the maximum items per batch does not apply.

transformers derives position ids from a patch mask, in some versions with a boolean index (a host
sync, which a capture cannot hold), drops all-zero padding tiles with another, and builds an attention
mask for the padding. A captured batch holds whole tiles only, where every patch is real and keeps
its own position: the graph runs the patch embedding plus the precomputed positions, the encoder
without a mask, the final norm and the connector. A CPU test checks it against the model's own
``get_image_features``.
"""

from __future__ import annotations

from ..base import Layout, VllmSource
from ..layouts.tiled import TiledAdapter, side


def _tower_module(vision_class: str, connector_class: str):
    """The vision transformer and connector as one module (defined lazily: it needs torch)."""
    import torch

    from ..base import load_class

    class TiledTower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_model = load_class(vision_class)._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.connector = load_class(connector_class)(config).to(dtype)

        def forward(self, pixel_values, position_ids):
            vision = self.vision_model
            embeddings = vision.embeddings
            hidden = embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
            hidden = hidden + embeddings.position_embedding(position_ids)
            hidden = vision.encoder(inputs_embeds=hidden).last_hidden_state  # whole tiles: no padding to mask
            return self.connector(vision.post_layernorm(hidden))

    return TiledTower


class Idefics3Adapter(TiledAdapter):
    family = "idefics3"
    model_types = ("idefics3",)
    vllm = VllmSource("model_executor/models/idefics3.py", "Idefics3ForConditionalGeneration")
    config_class_name = "transformers:Idefics3Config"
    model_class_name = "transformers:Idefics3ForConditionalGeneration"
    vision_class_name = "transformers.models.idefics3.modeling_idefics3:Idefics3VisionTransformer"
    connector_class_name = "transformers.models.idefics3.modeling_idefics3:Idefics3Connector"
    takes_max_items = False
    # Published SmolVLM configs leave the depth and MLP width to the class defaults.
    size_fields = ("hidden_size", "num_attention_heads", "image_size", "patch_size")

    def tower_module(self):
        return _tower_module(self.vision_class_name, self.connector_class_name)

    def tokens_per_tile(self, config) -> int:
        patches_per_side = side(config.vision_config.image_size) // side(config.vision_config.patch_size)
        return patches_per_side**2 // config.scale_factor**2

    def tiles(self, config, budget: int, items: int) -> int:
        return -(-budget // self.tokens_per_tile(config))

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch

        inputs = super().make_inputs(tower, config, layout, dtype, device, generator)
        patches = (side(config.vision_config.image_size) // side(config.vision_config.patch_size)) ** 2
        inputs["position_ids"] = torch.arange(patches, device=device).expand(layout.items, -1)  # whole tiles
        return inputs


class SmolVLMAdapter(Idefics3Adapter):
    family = "smolvlm"
    model_types = ("smolvlm",)
    aliases = {"smolvlm": "smolvlm2-500m", "smolvlm2": "smolvlm2-500m", "smolvlm2-500m-video": "smolvlm2-500m"}
    config_class_name = "transformers:SmolVLMConfig"
    model_class_name = "transformers:SmolVLMForConditionalGeneration"
    vision_class_name = "transformers.models.smolvlm.modeling_smolvlm:SmolVLMVisionTransformer"
    connector_class_name = "transformers.models.smolvlm.modeling_smolvlm:SmolVLMConnector"


ADAPTERS = (Idefics3Adapter(), SmolVLMAdapter())
