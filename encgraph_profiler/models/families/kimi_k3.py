"""Kimi K3 (``kimi_k3``, Moonshot's Kimi-K2.5 vision tower on a KimiLinear text model): refused for now.

vLLM 0.33.0 captures its encoder graphs only in the NVIDIA build of the model: models/kimi_k3/nvidia/
model.py's KimiK3ForConditionalGeneration implements SupportsEncoderCudaGraph (the ROCm class in amd/
does not). Images only; each budget is max-items grids of the MoonViT3d tower, as near square as its
2D rotary table allows, merged by merge_kernel_size, from 64 tokens up to the batched-token limit.
"""

from __future__ import annotations

from ..base import Refusal, VllmSource

REFUSALS = (
    Refusal(
        "kimi_k3",
        "vLLM 0.33.0 captures its encoder graphs (models/kimi_k3/nvidia/model.py), which encgraph does not reproduce "
        "yet: transformers has no class for its kimi_k3 config, and an adapter for its tower (Kimi-K2.5's MoonViT3d) "
        "reading that config is not yet built",
        ("kimi-k3",),
        (VllmSource("models/kimi_k3/nvidia/model.py", "KimiK3ForConditionalGeneration"),),
    ),
)
