"""Cohere Compass (``cohere_compass``, CohereLabs' North-Micro-Vision): refused for now.

vLLM 0.33.0 captures its encoder graphs in model_executor/models/cohere_compass.py, where
CohereCompassForConditionalGeneration implements SupportsEncoderCudaGraph itself: a Qwen3-VL-style
tower (3D patch embedding, position table, 2D rotary, deepstack features) packed with cu_seqlens, images
only (no graphs at all when multimodal pruning is on), each budget laid out as max-items strips of
merge x (merge * tokens per item) patches, from 64 tokens up to the scheduler's batched-token limit.
"""

from __future__ import annotations

from ..base import Refusal, VllmSource

REFUSALS = (
    Refusal(
        "cohere_compass",
        "vLLM 0.33.0 captures its encoder graphs (model_executor/models/cohere_compass.py), which encgraph does not "
        "reproduce yet: no adapter for its vision tower (transformers' CohereCompassVisionModel) is built",
        ("cohere-compass", "north-micro-vision"),
        (VllmSource("model_executor/models/cohere_compass.py", "CohereCompassForConditionalGeneration"),),
    ),
)
