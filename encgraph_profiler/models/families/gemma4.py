"""Gemma 4: a ViT over a fixed number of patches per image (max_soft_tokens x k^2, k the pooling
kernel), with 2-D positions given per patch, average-pooled k x k into soft tokens, then the
multimodal embedder to the language model's width. The captured graph covers all of it, as vLLM's
does; max_soft_tokens comes from the model's image processor settings (processor_config.json or
preprocessor_config.json; the image processor's default, 280, where it has none).

vLLM's layout for budget B (gemma4.py): max(min(B // max_soft_tokens, k_items), 1) images of
max_soft_tokens x k^2 patches each. vLLM captures on padded inputs, so its graph holds the
attention mask for padding. Here each image is a near-square grid of soft tokens less its last row,
with real patch positions, and the rest is padding, as the image processor pads a smaller image:
eager runs and captures both take the masked path, and the padded soft tokens exercise the step
that moves valid tokens first.

transformers strips padded soft tokens with a boolean index, which no capture can hold. As vLLM
does, the graph keeps each image's row count fixed and moves the valid soft tokens first (a stable
sort); a CPU test checks the result against the model's own ``get_image_features``.
"""

from __future__ import annotations

from ...units import counted
from ..base import Adapter, Layout, VllmSource, random_input

DEFAULT_MAX_SOFT_TOKENS = 280  # transformers' Gemma4ImageProcessor


def _tower_module():
    """Gemma 4's vision model and multimodal embedder as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder, Gemma4VisionModel

    class Gemma4Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_tower = Gemma4VisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.embed_vision = Gemma4MultimodalEmbedder(config.vision_config, config.text_config).to(dtype)

        def forward(self, pixel_values, pixel_position_ids):
            """The steps of Gemma4VisionModel.forward and the embedder, with a fixed-shape output."""
            vision = self.vision_tower
            config = vision.config
            padding = (pixel_position_ids == -1).all(dim=-1)
            embeds = vision.patch_embedder(pixel_values, pixel_position_ids, padding)
            hidden = vision.encoder(
                inputs_embeds=embeds, attention_mask=~padding, pixel_position_ids=pixel_position_ids
            ).last_hidden_state
            length = pixel_values.shape[-2] // config.pooling_kernel_size**2
            hidden, valid = vision.pooler(
                hidden_states=hidden,
                pixel_position_ids=pixel_position_ids,
                padding_positions=padding,
                output_length=length,
            )
            order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # valid soft tokens first
            hidden = torch.take_along_dim(hidden, order[..., None], dim=1)
            if config.standardize:
                hidden = (hidden - vision.std_bias.float()) * vision.std_scale.float()
            return self.embed_vision(hidden.to(embeds.dtype))

    return Gemma4Tower


def _soft_grid(tokens: int) -> tuple[int, int]:
    """Rows and columns of soft tokens, as near square as ``tokens`` allows."""
    rows = max(r for r in range(1, int(tokens**0.5) + 1) if tokens % r == 0)
    return rows, tokens // rows


class Gemma4Adapter(Adapter):
    family = "gemma4"
    model_types = ("gemma4",)
    config_class_name = "transformers:Gemma4Config"
    model_class_name = "transformers:Gemma4ForConditionalGeneration"
    dynamic_resolution = False
    preprocessor_fields = ("max_soft_tokens",)
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")

    def tower_config(self, data):
        config = self.full_config(data)  # the embedder needs the language model's width
        config.max_soft_tokens = self.preprocessor_int(data, "max_soft_tokens", DEFAULT_MAX_SOFT_TOKENS)
        return config

    def min_budget(self, config) -> int:
        return config.max_soft_tokens  # vLLM's smallest Gemma 4 budget: one image

    def tower_module(self):
        return _tower_module()

    @staticmethod
    def image_grid(config) -> tuple[int, int]:
        """Soft-token rows and columns of each captured image: a near-square grid less one row."""
        rows, cols = _soft_grid(config.max_soft_tokens)
        return max(rows - 1, 1), cols

    def layout(self, config, budget: int, items: int) -> Layout:
        soft, k = config.max_soft_tokens, config.vision_config.pooling_kernel_size
        images = max(min(budget // soft, items), 1)
        rows, cols = _soft_grid(soft)
        p = config.vision_config.patch_size
        patches = images * soft * k * k
        return Layout(
            budget=budget,
            items=images,
            tokens=images * soft,
            input_patches=patches,
            meaning=f"{budget:,} tokens = {counted(images, 'images')} of {rows * k * p}x{cols * k * p} px, "
            f"{patches:,} ViT patches pooled to {soft} tokens each",
        )

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch

        soft, k, p = config.max_soft_tokens, config.vision_config.pooling_kernel_size, config.vision_config.patch_size
        rows, cols = self.image_grid(config)
        y, x = torch.meshgrid(torch.arange(rows * k), torch.arange(cols * k), indexing="ij")
        positions = torch.full((layout.items, soft * k * k, 2), -1, dtype=torch.long)  # -1: padding
        positions[:, : rows * cols * k * k] = torch.stack([x.flatten(), y.flatten()], dim=-1)
        return {
            "pixel_values": random_input(
                (layout.items, soft * k * k, 3 * p * p), dtype, device, generator, uniform=True
            ),
            "pixel_position_ids": positions.to(device),
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    vllm = VllmSource("model_executor/models/gemma4_mm.py", "Gemma4ForConditionalGeneration")
    aliases = {"gemma4": "gemma-4-31b", "gemma-4": "gemma-4-31b"}


ADAPTERS = (Gemma4Adapter(),)
