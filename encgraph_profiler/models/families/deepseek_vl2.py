"""DeepSeek-VL2 (tiny, small and the full model): SigLIP so400m over 384 x 384 tiles, each tile's 2 x 2
patch blocks unfolded and projected into 14 x 14 tokens (towers/deepseek_vl2.py).

vLLM (deepseek_vl2.py, DeepseekVLV2ForCausalLM) captures one graph per budget B on a single path:

- its smallest budget, get_encoder_cudagraph_budget_range, is one image of one global view and one
  local tile with their newlines: h * (w + 1) * 2 + 1 = 421 for h = w = ceil((384 // 14) / 2) = 14;
- prepare_encoder_cudagraph_capture_inputs gives ceil(B / (h * w)) tiles (h * w = 196 tokens each,
  the newlines left out so that a batch never falls short), whatever k is: k does not cap tiles;
- the graph covers SigLIP's forward_features and the projector; the newlines and the view separator
  are added after it (postprocess_encoder_output).

vLLM builds that tower whatever the config's ``vision_config`` says (timm's
``vit_so400m_patch14_siglip_384.webli``), reading only image_size, patch_size and the projector's
downsample_ratio for the layout. Every ``deepseek_vl_v2`` config reaches this module through
deepseek_ocr2.py, which hands it those whose architectures name neither DeepSeek-OCR nor DeepSeek-OCR 2.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from ...errors import UsageError
from ...units import counted
from ..base import Adapter, Layout, VllmSource, random_input, whole_numbers

# The SigLIP so400m ViT vLLM builds with timm (vit_so400m_patch14_siglip_384), whatever the config says.
SIGLIP_SO400M = {
    "hidden_size": 1152,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "intermediate_size": 4304,  # int(1152 * 3.7362)
    "image_size": 384,
    "patch_size": 14,
}
# vLLM's MlpProjectorConfig defaults, where a config's projector_config leaves a field out.
PROJECTOR_DEFAULTS = {
    "projector_type": "downsample_mlp_gelu",
    "input_dim": 1152,
    "n_embed": 2048,
    "depth": 2,
    "mlp_ratio": 1,
    "downsample_ratio": 2,
}


def deepseek_vl_v2(data: dict[str, Any], source: str) -> dict[str, Any]:
    """DeepSeek's ``deepseek_vl_v2`` form of DeepSeek-VL2 (what ``vllm serve deepseek-ai/deepseek-vl2``
    reads) onto encgraph's ``deepseek_vl2`` form: the tower vLLM builds, the projector of
    ``projector_config`` and the language model of ``language_config``."""
    vision = data.get("vision_config", {})
    projector = {**PROJECTOR_DEFAULTS, **data.get("projector_config", {})}
    if not isinstance(vision, dict) or not isinstance(data.get("language_config"), dict):
        raise UsageError(f"{source}: a DeepSeek-VL2 config needs vision_config and language_config objects")
    stated = {
        "vision_config.image_size": (vision.get("image_size", 384), 384),
        "vision_config.patch_size": (vision.get("patch_size", 16), 14),
        "projector_config.projector_type": (projector["projector_type"], "downsample_mlp_gelu"),
        "projector_config.input_dim": (projector["input_dim"], 1152),
        "projector_config.downsample_ratio": (projector["downsample_ratio"], 2),
        "tile_tag": (data.get("tile_tag", "2D"), "2D"),
    }
    for field, (value, built) in stated.items():
        if value != built:
            raise UsageError(
                f"{source}: {field} is {value!r}; vLLM builds DeepSeek-VL2's SigLIP so400m for 384 px tiles of 14 px "
                f"patches, unfolded 2 x 2 into its MLP projector, and lays budgets out for it ({built!r} expected)"
            )
    keys = ("projector_type", "input_dim", "n_embed", "depth", "mlp_ratio", "downsample_ratio")
    return {
        "model_type": "deepseek_vl2",
        "vision_config": dict(SIGLIP_SO400M),
        "projector_config": {k: projector[k] for k in keys},
        "text_config": language_model(data["language_config"], source),
    }


# DeepSeek-V2 fields the own form and transformers' DeepseekV2Config name alike.
_MLA_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "n_routed_experts", "n_shared_experts", "num_experts_per_tok",
    "first_k_dense_replace", "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
    "n_group", "topk_group", "topk_method", "routed_scaling_factor", "norm_topk_prob", "max_position_embeddings",
    "rms_norm_eps", "hidden_act", "bos_token_id", "eos_token_id",
)  # fmt: skip


def language_model(text: dict[str, Any], source: str) -> dict[str, Any]:
    """The language model of a ``deepseek_vl_v2`` config as transformers builds it, for parameter
    counts and the KV cache: DeepSeek-V2 with multi-head latent attention (DeepseekV2Config), or, where
    ``use_mla`` is off or ``kv_lora_rank`` null, with plain multi-head attention (DeepSeek-OCR 2's text
    model, which DeepSeek-OCR's and DeepSeek-VL2-Tiny's language models are)."""
    from .deepseek_ocr2 import _language_model as with_multi_head_attention

    if text.get("use_mla", True) is False or ("kv_lora_rank" in text and text["kv_lora_rank"] is None):
        return with_multi_head_attention(text, source)
    native = {"model_type": "deepseek_v2", **{k: text[k] for k in _MLA_FIELDS if k in text}}
    # DeepSeek's own DeepseekV2Config has 30 layers where a config names none (transformers' has 32).
    [native["num_hidden_layers"]] = whole_numbers(text, "num_hidden_layers", 30, source, least=1, many=False)
    native["rope_parameters"] = {"rope_type": "default", "rope_theta": text.get("rope_theta", 10000.0)}
    return native


def read_config(adapter: Adapter, data: dict[str, Any]):
    """encgraph's form of a DeepSeek-VL2 or DeepSeek-OCR config as an object: vision_config and
    projector_config as attributes, text_config as the transformers config of the language model."""
    from transformers import DeepseekV2Config
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2TextConfig

    text = dict(data["text_config"])
    text_class = DeepseekV2Config if text.pop("model_type", None) == "deepseek_v2" else DeepseekOcr2TextConfig
    return SimpleNamespace(
        vision_config=_namespace(data["vision_config"]),
        projector_config=SimpleNamespace(**{**PROJECTOR_DEFAULTS, **data.get("projector_config", {})}),
        text_config=adapter.read_config(text_class, text),
    )


def _namespace(value):
    if isinstance(value, dict):
        return SimpleNamespace(**{"num_channels": 3, **{k: _namespace(v) for k, v in value.items()}})
    return value


def checked_attention(family: str, attn: str) -> str:
    """The attention encgraph's own DeepSeek towers run: torch's sdpa or the plain product."""
    if attn not in ("sdpa", "eager"):
        raise UsageError(f"--attn {attn}: encgraph's {family} tower runs sdpa or eager attention; use one of them")
    return attn


def whole_model_class(adapter: Adapter):
    """The whole model for parameter counts: built as ``cls._from_config(config)`` like a transformers class."""

    class Whole:
        @staticmethod
        def _from_config(config):
            from ..towers.deepseek_vl2 import DeepseekWholeModel

            return DeepseekWholeModel(adapter.build_tower(config, "bfloat16", "sdpa"), config)

    return Whole


class DeepseekVl2Adapter(Adapter):
    family = "deepseek-vl2"
    model_types = ("deepseek_vl2",)  # encgraph's form; DeepSeek's deepseek_vl_v2 arrives by deepseek_ocr2.py
    dynamic_resolution = False
    takes_max_items = False  # vLLM's tile count ignores the maximum items per batch
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size")

    def check_config(self, data, source: str) -> None:
        super().check_config(data, source)
        if not isinstance(data.get("text_config"), dict):
            raise UsageError(f"{source}: a DeepSeek-VL2 config needs a text_config object (its language model)")

    def full_config(self, data):
        return read_config(self, data)

    def tower_config(self, data):
        return self.full_config(data)  # the projector needs the language model's width

    def full_model_class(self):
        return whole_model_class(self)

    def tower_module(self):
        from ..towers.deepseek_vl2 import DeepseekVl2Tower

        return DeepseekVl2Tower

    def build_tower(self, tower_config, dtype: str, attn: str):
        return super().build_tower(tower_config, dtype, checked_attention(self.family, attn))

    def token_grid(self, config) -> int:
        """h = w: tokens per tile side after the projector's unfold (vLLM's _proj_hw)."""
        vision = config.vision_config
        return math.ceil((vision.image_size // vision.patch_size) / config.projector_config.downsample_ratio)

    def min_budget(self, config) -> int:
        side = self.token_grid(config)
        return side * (side + 1) * 2 + 1  # one global view and one local tile, with newlines and separator

    def layout(self, config, budget: int, items: int) -> Layout:
        per_tile = self.token_grid(config) ** 2
        tiles = -(-budget // per_tile)
        size, patch = config.vision_config.image_size, config.vision_config.patch_size
        patches = tiles * math.ceil(size / patch) ** 2  # each tile padded to whole patches
        return Layout(
            budget=budget,
            items=tiles,
            tokens=tiles * per_tile,
            input_patches=patches,
            meaning=f"{budget:,} tokens = {counted(tiles, 'tiles')} of {size}x{size} px, "
            f"{patches:,} SigLIP patches unfolded to {per_tile} tokens each",
        )

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        size = config.vision_config.image_size
        shape = (layout.items, config.vision_config.num_channels, size, size)
        return {"pixel_values": random_input(shape, dtype, device, generator)}

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    vllm = VllmSource("model_executor/models/deepseek_vl2.py", "DeepseekVLV2ForCausalLM")
    hub_ids = {
        "deepseek-vl2-small": "deepseek-ai/deepseek-vl2-small",
        "deepseek-vl2-tiny": "deepseek-ai/deepseek-vl2-tiny",
    }


ADAPTERS = (DeepseekVl2Adapter(),)
