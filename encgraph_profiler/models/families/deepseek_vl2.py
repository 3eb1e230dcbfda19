"""DeepSeek-VL2 and DeepSeek-OCR (DeepSeek's ``deepseek_vl_v2`` form for their own code): refused for
now, as transformers has no class for either tower. DeepSeek-OCR 2 publishes the same form and is
read by deepseek_ocr2.py, which refuses the others with this reason."""

from __future__ import annotations

from ..base import Refusal, VllmSource

DEEPSEEK_VL2_REFUSED = (
    "DeepSeek-VL2 and DeepSeek-OCR publish a deepseek_vl_v2 config for their own code, which encgraph does "
    "not run and transformers has no class for; these families are not supported yet (DeepSeek-OCR 2's "
    "deepseek_vl_v2 config is)"
)

REFUSALS = (
    Refusal(
        "deepseek_vl_v2",
        DEEPSEEK_VL2_REFUSED,
        ("deepseek-vl2", "deepseek-vl2-small", "deepseek-vl2-tiny", "deepseek-ocr"),
        (
            VllmSource("model_executor/models/deepseek_vl2.py", "DeepseekVLV2ForCausalLM"),
            VllmSource("model_executor/models/deepseek_ocr.py", "DeepseekOCRForCausalLM"),
        ),
    ),
)
