"""Qwen2.5-VL: Qwen2-VL's tower plus window attention (full attention every few blocks).

The window reordering and window segments are precomputed too: ``window_index`` on the device,
``cu_window_seqlens`` on the host where sdpa splits windows there, on the device with the longest
window given for varlen attention.

vLLM normalizes the pixels on the device, as for Qwen2-VL (Qwen2_5_VLForConditionalGeneration declares
supports_mm_device_do_normalize), with the same OpenAI CLIP mean and std.
"""

from __future__ import annotations

import functools

from ..base import VllmSource
from ..grids import per_grid, staging
from .qwen2_vl import Qwen2VLAdapter


class Qwen2_5VLAdapter(Qwen2VLAdapter):
    family = "qwen2.5-vl"
    model_types = ("qwen2_5_vl",)
    config_class_name = "transformers:Qwen2_5_VLConfig"
    tower_class_name = "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl:Qwen2_5_VisionTransformerPretrainedModel"
    model_class_name = "transformers:Qwen2_5_VLForConditionalGeneration"
    size_fields = ("depth", "hidden_size", "num_heads")

    def precompute(self, tower, layout, grid_thw, device) -> dict:
        """Qwen2-VL's, and the windows of one image of each grid (``per_grid``): the reordering, shifted
        by each image's merged tokens, and the windows' lengths, which give the segments of the batch."""
        import torch
        import torch.nn.functional as F
        from transformers.vision_utils import get_vision_window_index

        inputs = super().precompute(tower, layout, grid_thw, device)
        m = tower.spatial_merge_size

        @functools.cache  # once a grid for its reordering and its windows
        def windows(one):
            return get_vision_window_index(
                torch.tensor([one]), spatial_merge_size=m, window_size=tower.window_size, patch_size=tower.patch_size
            )

        window_index = per_grid(
            layout.grids,
            lambda one: windows(one)[0],
            staging(device),
            step=lambda one: one[0] * (one[1] // m) * (one[2] // m),
        )
        inputs["window_index"] = window_index.to(device)
        lengths = per_grid(layout.grids, lambda one: windows(one)[1].diff(), torch.device("cpu"))
        cu_window_seqlens = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
        if "max_seqlen" in inputs:  # packed attention, as for the full-attention blocks
            inputs["cu_window_seqlens"] = cu_window_seqlens.to(device)
            inputs["max_window_seqlen"] = int((cu_window_seqlens[1:] - cu_window_seqlens[:-1]).max())
        else:
            inputs["cu_window_seqlens"] = cu_window_seqlens
        return inputs

    vllm = VllmSource(
        "model_executor/models/qwen2_5_vl.py", "Qwen2_5_VLForConditionalGeneration", normalizes_pixels=True
    )
    aliases = {"qwen2.5-vl": "qwen2.5-vl-7b"}


ADAPTERS = (Qwen2_5VLAdapter(),)
