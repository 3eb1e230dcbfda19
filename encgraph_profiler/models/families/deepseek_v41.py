"""DeepSeek-V4.1 (``deepseek_v41``, DeepSeek's V4.1 with a vision tower): refused for now.

vLLM 0.33.0 captures its encoder graphs through DeepseekV41ForCausalLM, defined once for NVIDIA
(models/deepseek_v41/nvidia/vl_model.py) and once for ROCm (amd/vl_model.py); both take the capture
rules of DeepseekV4VLEncoderCudaGraphMixin (common/vl_cudagraph.py): the ViT runs a whole batch of
images as one varlen sequence, the aligner's spatial merge becomes a gather with a mask, images only,
each dummy item one aligner row of ratio x (ratio * tokens per item) patches. The config is vLLM's own.
"""

from __future__ import annotations

from ..base import Refusal, VllmSource

REFUSALS = (
    Refusal(
        "deepseek_v41",
        "vLLM 0.33.0 captures its encoder graphs (models/deepseek_v41/common/vl_cudagraph.py), which encgraph does "
        "not reproduce yet: transformers has no class for its vision tower or its deepseek_v41 config",
        ("deepseek-v4-1",),
        (
            VllmSource("models/deepseek_v41/amd/vl_model.py", "DeepseekV41ForCausalLM"),
            VllmSource("models/deepseek_v41/nvidia/vl_model.py", "DeepseekV41ForCausalLM"),
        ),
    ),
)
