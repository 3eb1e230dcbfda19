"""GLM-5.3-Flash (``glm5_next``, Zhipu's GLM-5 hybrid text model with its own vision tower): refused for now.

vLLM 0.33.0 captures its encoder graphs with GLM-4.1V's rules: Glm5NextForConditionalGeneration
(models/glm5next/common/model.py) subclasses glm4_1v.py's Glm4vForConditionalGeneration and overrides only
get_encoder_cudagraph_config, to drop the position-table buffer its tower (Glm5NextVisionTransformer)
does not have. The budgets, items and capture inputs are GLM-4.1V's, which glm4v here reproduces.
"""

from __future__ import annotations

from ..base import Refusal, VllmSource

REFUSALS = (
    Refusal(
        "glm5_next",
        "vLLM 0.33.0 captures its encoder graphs (model_executor/models/glm4_1v.py, through "
        "models/glm5next/common/model.py), which encgraph does not reproduce yet: no adapter for its vision tower "
        "(transformers' Glm5NextVisionModel) is built",
        ("glm-5-3-flash", "glm5-next"),
        (VllmSource("model_executor/models/glm4_1v.py", "Glm4vForConditionalGeneration"),),
    ),
)
