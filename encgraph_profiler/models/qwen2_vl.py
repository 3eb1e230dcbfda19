"""Qwen2-VL: dynamic resolution, 2-D rotary positions, merge size m = 2.

The tower cannot be captured as it is: it derives rotary positions and attention segments from
``grid_thw`` with host syncs. transformers' ``vision_utils`` computes them up front; the tower pops
them from its forward kwargs. With sdpa the per-segment split runs on the host, so ``cu_seqlens``
stays a CPU tensor.
"""

from __future__ import annotations

from .base import Adapter, Layout
from ..errors import UsageError
from ..ladder import tokens_per_item


class Qwen2VLAdapter(Adapter):
    family = "qwen2-vl"
    model_types = ("qwen2_vl",)
    config_class_name = "transformers:Qwen2VLConfig"
    tower_class_name = "transformers.models.qwen2_vl.modeling_qwen2_vl:Qwen2VisionTransformerPretrainedModel"
    model_class_name = "transformers:Qwen2VLForConditionalGeneration"
    size_fields = ("depth", "embed_dim", "num_heads")

    def tokens_per_item(self, budget: int, items: int) -> int:
        """Tokens each of the ``items`` images gets: ceil(B / k), so that together they cover B."""
        return tokens_per_item(budget, items)

    def layout(self, vision_config, budget: int, items: int) -> Layout:
        m = vision_config.spatial_merge_size
        if items > budget:
            raise UsageError(f"budget {budget} cannot hold {items} images of at least one token each")
        per_item = self.tokens_per_item(budget, items)
        grid = (1, m, per_item * m)
        patches = items * m * per_item * m
        p = vision_config.patch_size
        return Layout(
            budget=budget,
            items=items,
            tokens=items * per_item,
            input_patches=patches,
            grids=(grid,) * items,
            meaning=f"{budget:,} tokens = {items} images of {m * p}x{per_item * m * p} px, {patches:,} ViT patches merged {m}x{m}",
        )

    def patch_features(self, vision_config) -> int:
        c = vision_config.in_channels
        return c * vision_config.temporal_patch_size * vision_config.patch_size**2

    def make_inputs(self, tower, vision_config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch

        grid_thw = torch.tensor(layout.grids, dtype=torch.long)
        pixels = torch.randn(layout.input_patches, self.patch_features(vision_config), generator=generator)
        inputs = {
            "hidden_states": pixels.to(device=device, dtype=getattr(torch, dtype)),
            "grid_thw": grid_thw.to(device),
        }
        inputs.update(self.precompute(tower, grid_thw, device))
        return inputs

    def precompute(self, tower, grid_thw, device) -> dict:
        import torch
        from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids

        return {
            "position_ids": get_vision_position_ids(grid_thw, tower.spatial_merge_size).to(device),
            "cu_seqlens": get_vision_cu_seqlens(grid_thw).to(torch.int32),  # stays on the host
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs).pooler_output,)

    def reference_forward(self, tower, inputs: dict):
        return (tower(inputs["hidden_states"], inputs["grid_thw"]).pooler_output,)
