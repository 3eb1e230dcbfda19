"""ERNIE-4.5-VL (transformers' ``ernie4_5_vl_moe``): a Qwen2-VL-style dynamic-resolution ViT (2-D
rotary positions, merge size m = 2) whose patches carry no temporal axis. vLLM captures the ViT
only; its variable-resolution resampler runs eagerly after the graph, so the graph's output is the
ViT's last hidden state, m^2 rows per budget token.

vLLM's layout for budget B (ernie45_vl.py): k items of grid [1, m, ceil(B / k) * m], as for
Qwen2-VL, the longest sequence fixed at B * m^2; images only (its video path runs eagerly).
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ...units import is_whole_number
from ..base import VllmSource, whole_numbers
from .qwen2_vl import Qwen2VLAdapter

# The text model's fields the own form and transformers' name alike.
_TEXT_FIELDS = (
    "hidden_size", "intermediate_size", "max_position_embeddings", "moe_intermediate_size", "moe_k",
    "moe_num_shared_experts", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps",
    "vocab_size", "tie_word_embeddings", "use_bias", "hidden_act",
)  # fmt: skip
# The own form's special tokens -> transformers' names.
_TOKENS = {
    "im_patch_id": "image_token_id", "image_start_token_id": "image_start_token_id",
    "image_end_token_id": "image_end_token_id", "video_start_token_id": "video_start_token_id",
    "video_end_token_id": "video_end_token_id",
}  # fmt: skip


def _ernie4_5_moe_vl(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Baidu's own ``ernie4_5_moe_vl`` (one flat config with a ``vision_config``, for its own code and
    vLLM's) onto transformers' ``ernie4_5_vl_moe``: the same ViT and the same text model (below)."""
    vision = data.get("vision_config")
    if not isinstance(vision, dict):
        raise UsageError(f"{source}: an ernie4_5_moe_vl config needs a vision_config object")
    native = {
        "model_type": "ernie4_5_vl_moe",
        "architectures": data.get("architectures"),
        "vision_config": _ernie_vision(data, vision, source),
        "text_config": _ernie_text(data, source),
        "tie_word_embeddings": data.get("tie_word_embeddings", True),
    }
    native.update({new: data[old] for old, new in _TOKENS.items() if old in data})
    return native


def _ernie_vision(data: dict[str, Any], vision: dict[str, Any], source: str) -> dict[str, Any]:
    """The ViT: its MLP ``mlp_ratio`` times wide, the spatial and temporal merge sizes from the
    top-level ``*_conv_size``; as vLLM does, its layer norms take the top-level ``rms_norm_eps``."""
    width = vision.get("hidden_size", vision.get("embed_dim"))
    if vision.get("embed_dim", width) != width:
        raise UsageError(
            f"{source}: vision_config embed_dim {vision['embed_dim']!r} differs from hidden_size {width!r}; "
            "transformers' ERNIE-4.5-VL has one ViT width"
        )
    native = {"model_type": "ernie4_5_vl_moe_vision", "hidden_size": width}
    native.update({k: vision[k] for k in ("depth", "num_heads", "hidden_act", "patch_size") if k in vision})
    if "in_channels" in vision or "in_chans" in vision:
        native["in_channels"] = vision.get("in_channels", vision.get("in_chans"))
    if "mlp_ratio" in vision:
        ratio = vision["mlp_ratio"]
        if not is_whole_number(width) or not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
            raise UsageError(f"{source}: vision_config mlp_ratio {ratio!r} and width {width!r} give no MLP size")
        native["intermediate_size"] = int(width * ratio)
    native["spatial_merge_size"] = data.get("spatial_conv_size", vision.get("spatial_merge_size", 2))
    native["temporal_merge_size"] = data.get("temporal_conv_size", 2)
    native["rms_norm_eps"] = data.get("rms_norm_eps", 1e-6)
    return native


def _ernie_text(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The text model, whose MoE layers are those from the first ``moe_layer_start_index`` to the last
    ``moe_layer_end_index`` at every ``moe_layer_interval``-th layer, with one expert count."""
    experts = data.get("moe_num_experts", 64)
    if isinstance(experts, list) and len(set(experts)) != 1:
        raise UsageError(
            f"{source}: moe_num_experts {experts!r} differs between text and vision experts, which only the "
            "authors' own code builds; transformers' ERNIE-4.5-VL has one expert count"
        )
    text = {"model_type": "ernie4_5_vl_moe_text", **{k: data[k] for k in _TEXT_FIELDS if k in data}}
    text["moe_num_experts"] = experts[0] if isinstance(experts, list) else experts
    text["moe_num_shared_experts"] = text.get("moe_num_shared_experts") or 0
    rope = {"rope_type": "default", "rope_theta": data.get("rope_theta", 500000.0)}
    if isinstance(data.get("rope_scaling"), dict) and "mrope_section" in data["rope_scaling"]:
        rope["mrope_section"] = data["rope_scaling"]["mrope_section"]
    text["rope_parameters"] = rope
    [layers] = whole_numbers(data, "num_hidden_layers", 28, source, least=1, many=False)
    first = min(whole_numbers(data, "moe_layer_start_index", 1, source))
    last = max(whole_numbers(data, "moe_layer_end_index", layers - 1, source))
    [interval] = whole_numbers(data, "moe_layer_interval", 1, source, least=1, many=False)
    text["mlp_layer_types"] = [
        "sparse" if (i + 1) % interval == 0 and first <= i <= last else "dense" for i in range(layers)
    ]
    return text


class Ernie4_5VLAdapter(Qwen2VLAdapter):
    family = "ernie4.5-vl"
    model_types = ("ernie4_5_vl_moe",)
    own_forms = {"ernie4_5_moe_vl": _ernie4_5_moe_vl}
    config_class_name = "transformers:Ernie4_5_VLMoeConfig"
    tower_class_name = (
        "transformers.models.ernie4_5_vl_moe.modeling_ernie4_5_vl_moe:Ernie4_5_VLMoeVisionTransformerPretrainedModel"
    )
    model_class_name = "transformers:Ernie4_5_VLMoeForConditionalGeneration"
    size_fields = ("depth", "hidden_size", "num_heads")
    captures_video = False

    def patch_features(self, vision_config) -> int:
        return vision_config.in_channels * vision_config.patch_size**2

    def forward(self, tower, inputs: dict):
        return (tower(**inputs).last_hidden_state,)

    def reference_forward(self, tower, inputs: dict):
        return (tower(inputs["hidden_states"], inputs["grid_thw"]).last_hidden_state,)

    vllm = VllmSource("model_executor/models/ernie45_vl.py", "Ernie4_5_VLMoeForConditionalGeneration")
    aliases = {
        "ernie-4.5-vl": "ernie-4.5-vl-28b-a3b",
        "ernie4.5-vl": "ernie-4.5-vl-28b-a3b",
        "ernie-4.5-vl-28b-a3b-pt": "ernie-4.5-vl-28b-a3b",
    }


ADAPTERS = (Ernie4_5VLAdapter(),)
