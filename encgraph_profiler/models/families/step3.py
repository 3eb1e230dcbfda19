"""Step3 (StepFun's ``step3_vl``, 321 B): refused for now. Its own ViT has no transformers class;
vLLM captures it with step3_vl.py, whose two encoder paths Step-3.7 and Step3-VL-10B (step3p7.py
here) follow."""

from __future__ import annotations

from ..base import Refusal, VllmSource

REFUSALS = (
    Refusal(
        "step3_vl",
        "Step3 publishes a step3_vl config for its own code (its own ViT), which encgraph does not run and "
        "transformers has no class for; this model is not supported yet (Step3-VL-10B, model_type step_robotics, "
        "and Step-3.7, model_type step3p7, are)",
        ("step3",),
        (VllmSource("model_executor/models/step3_vl.py", "Step3VLForConditionalGeneration"),),
    ),
)
