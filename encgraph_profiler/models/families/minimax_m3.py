"""MiniMax M3 (``minimax_m3_vl``, MiniMax's sparse-attention M3 with a vision tower): refused for now.

vLLM 0.33.0 captures its encoder graphs through MiniMaxM3EncoderCudaGraphMixin (models/minimax_m3/
common/encoder_cudagraph.py), which both the NVIDIA and the ROCm MiniMaxM3SparseForConditionalGeneration
inherit: images only, varlen attention over cu_seqlens padded with one trailing sequence, rotary planes
as buffers, and only with the FLASH_ATTN (or ROCm AITER) ViT attention backend; videos stay eager.
"""

from __future__ import annotations

from ..base import Refusal, VllmSource

REFUSALS = (
    Refusal(
        "minimax_m3_vl",
        "vLLM 0.33.0 captures its encoder graphs (models/minimax_m3/common/encoder_cudagraph.py), which encgraph "
        "does not reproduce yet: no adapter for its vision tower (transformers' MiniMaxM3VLVisionModel) is built",
        ("minimax-m3",),
        (VllmSource("models/minimax_m3/common/encoder_cudagraph.py", "MiniMaxM3EncoderCudaGraphMixin"),),
    ),
)
