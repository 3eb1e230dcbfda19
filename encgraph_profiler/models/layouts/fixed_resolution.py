"""Fixed-resolution ViTs (SigLIP, CLIP): every image is image_size x image_size, so a budget of B
tokens is captured as a batch of floor(B / tokens_per_image) whole images."""

from __future__ import annotations

from ...errors import UsageError
from ...units import captured, counted
from ..base import Adapter, Layout, random_input


class FixedResolutionAdapter(Adapter):
    dynamic_resolution = False
    takes_max_items = False  # bare towers: a budget is as many whole images as fit
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")
    has_language_model = False

    def patches_per_image(self, vision_config) -> int:
        return (vision_config.image_size // vision_config.patch_size) ** 2

    def tokens_per_image(self, vision_config) -> int:
        """Tokens one image contributes to a budget, as vLLM counts them."""
        return self.patches_per_image(vision_config)

    def layout(self, vision_config, budget: int, items: int) -> Layout:
        per_image = self.tokens_per_image(vision_config)
        images = budget // per_image
        if images == 0:
            raise UsageError(
                f"budget {budget} is smaller than one {vision_config.image_size}px image "
                f"({per_image} tokens); use budgets of at least {per_image}"
            )
        patches = images * self.patches_per_image(vision_config)
        size = vision_config.image_size
        return Layout(
            budget=budget,
            items=images,
            tokens=images * per_image,
            input_patches=patches,
            meaning=f"{captured(budget, images * per_image)} = {counted(images, 'images')} of {size}x{size} px, "
            f"{patches:,} ViT patches",
        )

    def make_inputs(self, tower, vision_config, layout: Layout, dtype: str, device, generator) -> dict:

        size = vision_config.image_size
        shape = (layout.items, vision_config.num_channels, size, size)
        return {"pixel_values": random_input(shape, dtype, device, generator)}

    def forward(self, tower, inputs: dict):
        return (tower(**inputs).last_hidden_state,)
