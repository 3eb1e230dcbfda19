"""InternVL 2 to 3.5 (transformers' native ``internvl``): InternViT on fixed 448 x 448 tiles, then a
pixel shuffle that merges 2 x 2 patches and the MLP projector. The captured graph covers all three,
as vLLM's does.

vLLM's layout for budget B: max(B // num_image_token, 1) tiles, num_image_token = (S / patch)^2 x
downsample^2 (256 for 448 px tiles); the maximum items per batch does not apply.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..base import VllmSource
from ..layouts.tiled import TiledAdapter, side


def _tower_module():
    """InternViT, pixel shuffle and projector as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.internvl.modeling_internvl import (
        InternVLModel,
        InternVLMultiModalProjector,
        InternVLVisionModel,
    )

    class InternVLTower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.config = config
            self.vision_tower = InternVLVisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.multi_modal_projector = InternVLMultiModalProjector(config).to(dtype)

        def forward(self, pixel_values):
            """The steps of InternVLModel.get_image_features, without the language model."""
            layer = self.config.vision_feature_layer
            outputs = self.vision_tower(pixel_values=pixel_values, output_hidden_states=layer != -1)
            features = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
            if self.config.vision_feature_select_strategy == "default":
                features = features[:, 1:, :]  # the CLS token
            batch, tokens, width = features.shape
            side = int(tokens**0.5)
            # pixel_shuffle reads nothing from the model it belongs to.
            features = InternVLModel.pixel_shuffle(
                None, features.reshape(batch, side, side, width), self.config.downsample_ratio
            )
            return self.multi_modal_projector(features.reshape(batch, -1, features.shape[-1]))

    return InternVLTower


def _pair(value):
    return list(value) if isinstance(value, (list, tuple)) else [value, value]


def _internvl_chat(data: dict[str, Any], source: str) -> dict[str, Any]:
    """OpenGVLab's ``internvl_chat`` (InternViT ``intern_vit_6b`` + an LLM), field for field onto
    transformers' ``internvl``: the same InternViT, the v2 pixel shuffle and the mlp1 projector
    (LayerNorm, Linear, GELU, Linear) that InternVLMultiModalProjector holds."""
    vision, text = data.get("vision_config"), data.get("llm_config")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise UsageError(f"{source}: an internvl_chat config needs vision_config and llm_config objects")
    if data.get("ps_version", "v2") != "v2":
        raise UsageError(
            f"{source}: ps_version {data.get('ps_version')!r} shuffles pixels as only OpenGVLab's own code does; "
            "use an InternVL checkpoint with ps_version v2 (InternVL 1.5 and later)"
        )
    if text.get("model_type") == "internlm2":
        raise UsageError(
            f"{source}: transformers has no InternLM2 language model; use the transformers-format "
            "checkpoint of this model (OpenGVLab publishes them with an -hf suffix)"
        )
    renamed = {
        "qkv_bias": "attention_bias",
        "qk_normalization": "use_qk_norm",
        "initializer_factor": "layer_scale_init_value",
    }
    kept = (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_hidden_layers",
        "hidden_act",
        "layer_norm_eps",
        "norm_type",
        "num_channels",
        "attention_dropout",
    )
    native_vision = {"model_type": "internvl_vision"}
    native_vision.update({k: vision[k] for k in kept if k in vision})
    native_vision.update({new: vision[old] for old, new in renamed.items() if old in vision})
    if "patch_size" in vision:
        native_vision["patch_size"] = _pair(vision["patch_size"])
    size = data.get("force_image_size") or vision.get("image_size")
    if size is not None:
        native_vision["image_size"] = _pair(size)
    native_text = {k: v for k, v in text.items() if k not in ("architectures", "_name_or_path", "auto_map")}
    # The LLM's own config, as the authors' code builds it, ties no embeddings unless it says so.
    native_text.setdefault("tie_word_embeddings", bool(data.get("tie_word_embeddings", False)))
    return {
        "model_type": "internvl",
        "architectures": ["InternVLForConditionalGeneration"],
        "vision_config": native_vision,
        "text_config": native_text,
        "tie_word_embeddings": native_text["tie_word_embeddings"],
        "downsample_ratio": data.get("downsample_ratio", 0.5),
        "vision_feature_layer": data.get("select_layer", -1),
        "vision_feature_select_strategy": "default",
        "projector_hidden_act": "gelu",
    }


class InternVLAdapter(TiledAdapter):
    family = "internvl"
    model_types = ("internvl",)
    own_forms = {"internvl_chat": _internvl_chat}
    config_class_name = "transformers:InternVLConfig"
    model_class_name = "transformers:InternVLForConditionalGeneration"
    takes_max_items = False
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size")

    def tower_module(self):
        return _tower_module()

    def tokens_per_tile(self, config) -> int:
        patches = (side(config.vision_config.image_size) // side(config.vision_config.patch_size)) ** 2
        return int(patches * config.downsample_ratio**2)

    def tiles(self, config, budget: int, items: int) -> int:
        return max(budget // self.tokens_per_tile(config), 1)

    vllm = VllmSource("model_executor/models/internvl.py", "InternVLChatModel")
    aliases = {"internvl": "internvl3-1b", "internvl3": "internvl3-1b"}


ADAPTERS = (InternVLAdapter(),)
