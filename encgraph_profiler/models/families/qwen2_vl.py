"""Qwen2-VL: dynamic resolution, 2-D rotary positions, merge size m = 2.

The tower cannot be captured as it is: it derives rotary positions and attention segments from
``grid_thw`` with host syncs. transformers' ``vision_utils`` computes them up front; the tower pops
them from its forward kwargs. With sdpa the per-segment split runs on the host, so ``cu_seqlens``
stays a CPU tensor; with varlen attention it is a device tensor and the longest sequence is given.

vLLM's capture inputs (qwen2_vl.py, qwen2_5_vl.py, qwen3_vl.py, ``prepare_encoder_cudagraph_capture_inputs``):
k items of grid [1, m, ceil(B / k) * m], and the longest sequence fixed at B * m^2 whatever the
grid. With video enabled and F = max_frames_per_batch // k > 1, each item is a video of grid
[F, m, ceil(ceil(B / k) / F) * m] instead: one attention sequence per frame.

vLLM normalizes the pixels on the device (Qwen2VLForConditionalGeneration declares
supports_mm_device_do_normalize, and the tower it builds with build_mm_input_norm runs its input norm
before the patch embedding): it captures uint8 pixels, and each graph first writes them normalized
in the tower's dtype; --as vllm does too. The processor's (x / 255 - mean) / std is OpenAI CLIP's
mean and std, as Qwen2-VL's and Qwen2.5-VL's preprocessor_config.json state them.
"""

from __future__ import annotations

from dataclasses import replace

from ...errors import UsageError
from ...ladder import tokens_per_item
from ...units import counted
from .. import varlen
from ..base import Adapter, Layout, PixelNorm, VllmSource
from ..grids import per_grid, staging

CLIP_PIXELS = PixelNorm((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


class Qwen2VLAdapter(Adapter):
    family = "qwen2-vl"
    model_types = ("qwen2_vl",)
    config_class_name = "transformers:Qwen2VLConfig"
    tower_class_name = "transformers.models.qwen2_vl.modeling_qwen2_vl:Qwen2VisionTransformerPretrainedModel"
    model_class_name = "transformers:Qwen2VLForConditionalGeneration"
    size_fields = ("depth", "embed_dim", "num_heads")
    packs_sequences = True
    captures_video = True
    processor_norm = CLIP_PIXELS

    def tokens_per_item(self, budget: int, items: int) -> int:
        """Tokens each of the ``items`` images gets: ceil(B / k), so that together they cover B."""
        return tokens_per_item(budget, items)

    def layout(self, vision_config, budget: int, items: int) -> Layout:
        m = vision_config.spatial_merge_size
        if items > budget:
            raise UsageError(f"budget {budget} cannot hold {counted(items, 'images')} of at least one token each")
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
            meaning=f"{budget:,} tokens = {counted(items, 'images')} of {m * p}x{per_item * m * p} px, {patches:,} "
            f"ViT patches merged {m}x{m}",
        )

    def vllm_layout(self, layout: Layout, vision_config, frames_per_batch: int) -> Layout:
        m, p = vision_config.spatial_merge_size, vision_config.patch_size
        frames = frames_per_batch // layout.items
        if frames > 1 and self.captures_video:
            per_frame = -(-self.tokens_per_item(layout.budget, layout.items) // frames)
            patches = layout.items * frames * m * per_frame * m
            layout = replace(
                layout,
                tokens=layout.items * frames * per_frame,
                input_patches=patches,
                grids=((frames, m, per_frame * m),) * layout.items,
                meaning=(
                    f"{layout.budget:,} tokens = {layout.items} videos of {frames} frames of "
                    f"{m * p}x{per_frame * m * p} px, "
                    f"{patches:,} ViT patches merged {m}x{m}"
                ),
            )
        return replace(layout, max_seqlen=layout.budget * m * m)

    def patch_features(self, vision_config) -> int:
        c = vision_config.in_channels
        return c * vision_config.temporal_patch_size * vision_config.patch_size**2

    def make_inputs(self, tower, vision_config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch

        grid_thw = torch.tensor(layout.grids, dtype=torch.long)
        shape = (layout.input_patches, self.patch_features(vision_config))
        inputs = {
            "hidden_states": self.pixels(tower, layout, shape, dtype, device, generator),
            "grid_thw": grid_thw.to(device),
        }
        inputs.update(self.precompute(tower, layout, grid_thw, device))
        return inputs

    def precompute(self, tower, layout: Layout, grid_thw, device) -> dict:
        """transformers' grid-dependent tensors (``vision_utils``), each made for one image of each grid
        (``per_grid``); the segments for the whole batch."""
        import torch
        from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids

        cu_seqlens = get_vision_cu_seqlens(grid_thw).to(torch.int32)
        m = tower.spatial_merge_size
        positions = per_grid(layout.grids, lambda one: get_vision_position_ids(torch.tensor([one]), m), staging(device))
        return {
            "position_ids": positions.to(device),
            **varlen.sequences(tower.config, cu_seqlens, layout.max_seqlen, device),
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs).pooler_output,)

    def reference_forward(self, tower, inputs: dict):
        return (tower(inputs["hidden_states"], inputs["grid_thw"]).pooler_output,)

    vllm = VllmSource("model_executor/models/qwen2_vl.py", "Qwen2VLForConditionalGeneration", normalizes_pixels=True)
    aliases = {"qwen2-vl": "qwen2-vl-7b"}


ADAPTERS = (Qwen2VLAdapter(),)
