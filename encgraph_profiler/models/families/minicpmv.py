"""MiniCPM-V: refused for now, each model type with its reason.

MiniCPM-V 2.5, 2.6 and 4.0 publish a ``minicpmv`` config for their own code (a ViT and a resampler);
vLLM captures their encoder graphs (minicpmv.py, MiniCPMV2_5 / MiniCPMV2_6 / MiniCPMV4_0 through
_MiniCPMVEncoderCudaGraphMixin), which encgraph does not reproduce yet: transformers has no class for
the resampler. 4.6 and 4.7 have no resampler and vLLM captures no encoder graphs for them.
"""

from __future__ import annotations

from ..base import Refusal, VllmSource

_WITHOUT_RESAMPLER = (
    "{model} has no resampler (a window-attention merger inside the ViT, then a merger), the part by "
    "whose queries vLLM lays out the encoder graphs of MiniCPM-V 2.5, 2.6 and 4.0; {engine}"
)
_NO_VLLM_GRAPHS = (
    "vLLM does not capture encoder CUDA graphs for it (its model there does not opt in), so there are none to measure"
)

REFUSALS = (
    Refusal(
        "minicpmv",
        "MiniCPM-V 2.5 to 4.5 publish a minicpmv config for their own code (a ViT and a resampler), which "
        "encgraph does not run and transformers has no class for; this family is not supported yet",
        ("minicpm-v", "minicpm-llama3-v-2-5", "minicpm-v-2-6", "minicpm-v-4", "minicpm-v-4-5"),
        (VllmSource("model_executor/models/minicpmv.py", "_MiniCPMVEncoderCudaGraphMixin"),),
    ),
    Refusal(
        "minicpmo",
        "MiniCPM-o 2.6 publishes a minicpmo config for its own code (MiniCPM-V 2.6's ViT and resampler, with audio and "
        "speech parts), which encgraph does not run and transformers has no class for; vLLM captures its vision "
        "encoder graphs as MiniCPM-V 2.6's (minicpmv.py, through minicpmo.py); this family is not supported yet",
        ("minicpm-o-2-6", "minicpm-o"),
        (VllmSource("model_executor/models/minicpmv.py", "_MiniCPMVEncoderCudaGraphMixin"),),
    ),
    Refusal(
        "minicpmv4_6", _WITHOUT_RESAMPLER.format(model="MiniCPM-V 4.6", engine=_NO_VLLM_GRAPHS), ("minicpm-v-4-6",)
    ),
    Refusal(
        "minicpmv4_7", _WITHOUT_RESAMPLER.format(model="MiniCPM-V 4.7", engine=_NO_VLLM_GRAPHS), ("minicpm-v-4-7",)
    ),
    Refusal(
        "minicpm_ocr",
        _WITHOUT_RESAMPLER.format(model="MiniCPM-OCR", engine="no engine layout for its encoder graphs is known"),
        ("minicpm-ocr",),
    ),
)
