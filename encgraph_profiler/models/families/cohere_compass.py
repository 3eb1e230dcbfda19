"""Cohere Compass (``cohere_compass``: CohereLabs' North-Micro-Vision): Qwen3-VL's tower (3-D patch
embedding, a learned position table resampled per image, 2-D rotary positions, DeepStack mergers on
some blocks, the 2 x 2 merger) before a Command-style language model. Images only.

vLLM captures it in model_executor/models/cohere_compass.py, where CohereCompassForConditionalGeneration
implements the encoder-graph methods itself, with Qwen3-VL's rules:

- get_encoder_cudagraph_budget_range: 64 tokens up to the scheduler's batched-token limit (capped
  by the model length); k as for every family, min(largest // 64, smallest budget).
- prepare_encoder_cudagraph_capture_inputs: k images of grid [1, m, ceil(B / k) * m] (rounding up, as
  Qwen2-VL does), cu_seqlens of k + 1 entries and the longest sequence fixed at B * m^2 for every
  budget (prepare_encoder_metadata).
- get_encoder_cudagraph_config: images only; no video layout (so --max-frames-per-batch does not
  apply), and no encoder graphs at all when video pruning is on (``video_pruning_rate`` > 0): the
  graphs would skip the positions that pruning appends to the embeddings.
- encoder_cudagraph_forward: the patch embedding, the blocks, the DeepStack mergers and the merger,
  the merger's tokens and the DeepStack features concatenated into one tensor of
  out_hidden_size * (1 + DeepStack levels) per token. ``forward`` returns that tensor too.

Its pixels are normalized by the processor, not on the device as Qwen3-VL's:
CohereCompassForConditionalGeneration does not declare supports_mm_device_do_normalize (vLLM turns
the option off for such a class) and captures pixels in the tower's dtype; so does ``--as vllm``.

The position table's resampling and the rotary positions depend on the grid: as for Qwen3-VL they
are given to transformers' CohereCompassVisionModel precomputed (``transformers.vision_utils``).
"""

from __future__ import annotations

from ..base import VllmSource
from .qwen3_vl import Qwen3VLAdapter


class CohereCompassAdapter(Qwen3VLAdapter):
    family = "cohere-compass"
    model_types = ("cohere_compass",)
    vllm = VllmSource("model_executor/models/cohere_compass.py", "CohereCompassForConditionalGeneration")
    hub_ids = {
        "north-micro-vision": "CohereLabs/North-Micro-Vision-Instruct",
        "cohere-compass": "CohereLabs/North-Micro-Vision-Instruct",
    }
    config_class_name = "transformers:CohereCompassConfig"
    tower_class_name = "transformers.models.cohere_compass.modeling_cohere_compass:CohereCompassVisionModel"
    model_class_name = "transformers:CohereCompassForConditionalGeneration"
    size_fields = ("depth", "hidden_size", "num_heads", "out_hidden_size")
    captures_video = False  # get_encoder_cudagraph_config: modalities ["image"]

    @staticmethod
    def _outputs(result):
        """The merger's tokens with each DeepStack level's beside them, one tensor, as vLLM's tower returns."""
        import torch

        return (torch.cat([result.pooler_output, *(result.deepstack_features or ())], dim=1),)


ADAPTERS = (CohereCompassAdapter(),)
