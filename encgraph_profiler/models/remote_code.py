"""Configs that model authors publish for their own modeling code (``auto_map``, run with
``trust_remote_code``), read as transformers' native classes where the architecture is the same.
encgraph never runs code from a model repository: a form it cannot map is refused with the form
that works instead. No torch here.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..units import is_whole_number


def _pair(value):
    return list(value) if isinstance(value, (list, tuple)) else [value, value]


def _whole_numbers(data: dict[str, Any], key: str, default: Any, source: str, least: int = 0, many: bool = True) -> list[int]:
    """``data[key]`` (or ``default``): a whole number, or with ``many`` a list of them, each at least ``least``."""
    value = data.get(key, default)
    values = value if isinstance(value, list) and many else [value]
    if not values or not all(is_whole_number(v, least) for v in values):
        raise UsageError(f"{source}: {key} is {value!r}; it must be a whole number of at least {least}"
                         + (", or a list of them" if many else ""))
    return values


def _internvl_chat(data: dict[str, Any], source: str) -> dict[str, Any]:
    """OpenGVLab's ``internvl_chat`` (InternViT ``intern_vit_6b`` + an LLM), field for field onto
    transformers' ``internvl``: the same InternViT, the v2 pixel shuffle and the mlp1 projector
    (LayerNorm, Linear, GELU, Linear) that InternVLMultiModalProjector holds."""
    vision, text = data.get("vision_config"), data.get("llm_config")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise UsageError(f"{source}: an internvl_chat config needs vision_config and llm_config objects")
    if data.get("ps_version", "v2") != "v2":
        raise UsageError(f"{source}: ps_version {data.get('ps_version')!r} shuffles pixels as only OpenGVLab's own code does; "
                         "use an InternVL checkpoint with ps_version v2 (InternVL 1.5 and later)")
    if text.get("model_type") == "internlm2":
        raise UsageError(f"{source}: transformers has no InternLM2 language model; use the transformers-format "
                         "checkpoint of this model (OpenGVLab publishes them with an -hf suffix)")
    renamed = {"qkv_bias": "attention_bias", "qk_normalization": "use_qk_norm", "initializer_factor": "layer_scale_init_value"}
    kept = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "hidden_act", "layer_norm_eps",
            "norm_type", "num_channels", "attention_dropout")
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


# DeepSeek-OCR 2's vision tower as vLLM builds it (deepseek_ocr2.py: ImageEncoderViT and
# build_qwen2_decoder_as_encoder, with fixed arguments), whatever a config's vision_config says.
_DEEPSEEK_OCR2_SAM = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4.0,
                      "image_size": 1024, "patch_size": 16, "window_size": 14, "global_attn_indexes": [2, 5, 8, 11],
                      "output_channels": 256, "downsample_channels": [512, 896], "layer_norm_eps": 1e-6, "qkv_bias": True,
                      "use_rel_pos": True}
_DEEPSEEK_OCR2_ENCODER = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                          "intermediate_size": 4864, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "hidden_act": "silu",
                          "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}


_DEEPSEEK_VL2_REFUSED = ("DeepSeek-VL2 and DeepSeek-OCR publish a deepseek_vl_v2 config for their own code, which encgraph does "
                         "not run and transformers has no class for; these families are not supported yet (DeepSeek-OCR 2's "
                         "deepseek_vl_v2 config is)")


def _deepseek_vl_v2(data: dict[str, Any], source: str) -> dict[str, Any]:
    """DeepSeek's own ``deepseek_vl_v2`` form. DeepSeek-OCR 2's (architecture ``DeepseekOCR2ForCausalLM``,
    the form ``vllm serve deepseek-ai/DeepSeek-OCR-2`` reads) onto transformers' ``deepseek_ocr2``: the
    vision tower at the fixed sizes vLLM builds whatever ``vision_config`` says (SAM ViT-B, its last
    convolution 896 wide, and a 24-layer 896-wide Qwen2 encoder), the linear projector of
    ``projector_config``, and the language model of ``language_config`` (DeepSeek-V2 with multi-head
    attention), sparse from layer ``first_k_dense_replace`` on at every ``moe_layer_freq``-th layer.
    DeepSeek-VL2 and DeepSeek-OCR have no transformers class at all."""
    if "DeepseekOCR2ForCausalLM" not in data.get("architectures", ()):
        raise UsageError(f"{source}: {_DEEPSEEK_VL2_REFUSED}")
    text, projector = data.get("language_config"), data.get("projector_config")
    if not isinstance(text, dict) or not isinstance(projector, dict):
        raise UsageError(f"{source}: a DeepSeek-OCR 2 config needs language_config and projector_config objects")
    if text.get("use_mla", True):
        raise UsageError(f"{source}: language_config has multi-head latent attention (use_mla); DeepSeek-OCR 2's language model, "
                         "as transformers builds it, has plain multi-head attention")
    if data.get("tile_tag", "2D") != "2D":
        raise UsageError(f"{source}: tile_tag is {data['tile_tag']!r}; vLLM's DeepSeek-OCR 2 lays out 2D tiles only")
    width = _DEEPSEEK_OCR2_ENCODER["hidden_size"]
    expected = {"projector_type": "linear", "input_dim": width, "n_embed": text.get("hidden_size")}
    for key, value in expected.items():
        if projector.get(key) != value:
            raise UsageError(f"{source}: projector_config {key} is {projector.get(key)!r}; DeepSeek-OCR 2's projector is one linear layer "
                             f"from its {width}-wide encoder to the language model's hidden_size ({value!r} expected)")
    kept = ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "n_group", "topk_group",
            "topk_method", "routed_scaling_factor", "max_position_embeddings", "rms_norm_eps", "hidden_act", "bos_token_id",
            "eos_token_id")
    native_text = {"model_type": "deepseek_ocr2_text", **{k: text[k] for k in kept if k in text}}
    native_text["rope_parameters"] = {"rope_type": "default", "rope_theta": text.get("rope_theta", 10000.0)}
    [layers] = _whole_numbers(text, "num_hidden_layers", 30, source, least=1, many=False)
    [first] = _whole_numbers(text, "first_k_dense_replace", 0, source, many=False)
    [every] = _whole_numbers(text, "moe_layer_freq", 1, source, least=1, many=False)
    sparse = bool(text.get("n_routed_experts"))
    native_text["mlp_layer_types"] = ["sparse" if sparse and i >= first and i % every == 0 else "dense" for i in range(layers)]
    return {"model_type": "deepseek_ocr2", "architectures": ["DeepseekOcr2ForConditionalGeneration"],
            "vision_config": {"sam_config": dict(_DEEPSEEK_OCR2_SAM), "encoder_config": dict(_DEEPSEEK_OCR2_ENCODER)},
            "text_config": native_text, "tie_word_embeddings": text.get("tie_word_embeddings", False)}


def _kimi_k25(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Moonshot's ``kimi_k25`` for its own code (MoonViT sized by ``vt_*`` keys, a ``patchmerger``
    projector) onto transformers' ``kimi_k25``: the same MoonViT (its fused qkv split in three), the
    same 64x64 learned position table with a fixed temporal one, the same 2x2 merge and the same
    projector (LayerNorm, Linear, GELU, Linear). A config already in transformers' form is kept."""
    vision = data.get("vision_config")
    if not isinstance(vision, dict) or "vt_hidden_size" not in vision:
        return data
    expected = {"mm_projector_type": "patchmerger", "merge_type": "sd2_tpool", "pos_emb_type": "divided_fixed"}
    for key, value in expected.items():
        if vision.get(key, value) != value:
            raise UsageError(f"{source}: vision_config {key} {vision[key]!r} is built only by the authors' own code "
                             f"(transformers' Kimi-K2.5 has {value!r}), which encgraph does not run")
    renamed = {"vt_hidden_size": "hidden_size", "vt_intermediate_size": "intermediate_size",
               "vt_num_attention_heads": "num_attention_heads", "vt_num_hidden_layers": "num_hidden_layers",
               "init_pos_emb_height": "pos_emb_height", "init_pos_emb_width": "pos_emb_width",
               "init_pos_emb_time": "pos_emb_time", "patch_size": "patch_size", "merge_kernel_size": "merge_kernel_size"}
    native_vision = {"model_type": "kimi_k25_vision"}
    native_vision.update({new: vision[old] for old, new in renamed.items() if old in vision})
    text = data.get("text_config")
    if not isinstance(text, dict):
        raise UsageError(f"{source}: a kimi_k25 config needs a text_config object")
    return _kimi_native(data, native_vision, text,
                        projection_hidden_size=vision.get("mm_hidden_size", native_vision.get("hidden_size")),
                        projection_layer_norm_eps=vision.get("projector_ln_eps", 1e-5))


def _kimi_native(data: dict[str, Any], native_vision: dict[str, Any], text: dict[str, Any], **projection) -> dict[str, Any]:
    """A Kimi config read as transformers' Kimi_K25Config: the vision config given, the text config
    without the authors' code references, the projector's settings, the image placeholder renamed."""
    native = {k: v for k, v in data.items() if k not in ("auto_map", "vision_config", "text_config", "media_placeholder_token_id")}
    native.update(vision_config=native_vision, text_config={k: v for k, v in text.items() if k not in ("architectures", "auto_map")},
                  **projection)
    if "media_placeholder_token_id" in data:
        native["image_token_id"] = data["media_placeholder_token_id"]
    return native


def _kimi_vl(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Moonshot's ``kimi_vl`` for its own code onto transformers' Kimi-K2.5 classes, its model_type
    kept: its ``moonvit`` vision config is Kimi-K2.5's MoonViT for images (the same blocks, 2-D
    rotary positions, learned position table and 2x2 merge; Kimi-K2.5's temporal table adds nothing
    to a single frame) and its projector Kimi-K2.5's (LayerNorm of the vision width, Linear, GELU,
    Linear); its language model is DeepSeek-V3's, as Kimi-K2.5's."""
    vision, text = data.get("vision_config"), data.get("text_config")
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise UsageError(f"{source}: a kimi_vl config needs vision_config and text_config objects")
    if vision.get("model_type", "moonvit") != "moonvit":
        raise UsageError(f"{source}: vision_config model_type {vision['model_type']!r} is built only by the authors' own code "
                         "(Kimi-VL's is 'moonvit'), which encgraph does not run")
    kept = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "patch_size", "merge_kernel_size")
    native_vision = {"model_type": "kimi_k25_vision", **{k: vision[k] for k in kept if k in vision}}
    renamed = {"init_pos_emb_height": "pos_emb_height", "init_pos_emb_width": "pos_emb_width"}
    native_vision.update({new: vision[old] for old, new in renamed.items() if old in vision})
    return _kimi_native(data, native_vision, {"model_type": "deepseek_v3", **text},
                        projection_hidden_size=native_vision.get("hidden_size", 1152), projection_layer_norm_eps=1e-5,
                        tie_word_embeddings=data.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))


def _lfm2_vl_early(data: dict[str, Any], source: str) -> dict[str, Any]:
    """LFM2-VL's first release (``lfm2-vl``, for Liquid AI's own code) onto transformers' ``lfm2_vl``:
    the same SigLIP2 NaFlex tower, pixel unshuffle and projector, which always had a layer norm.
    Its vision_feature_layer cut the tower (layers[:vision_feature_layer + 1] unless -1), and its
    config.json carried the image processor's token limits, read here as preprocessor fields."""
    vision = data.get("vision_config")
    if not isinstance(vision, dict) or not isinstance(data.get("text_config"), dict):
        raise UsageError(f"{source}: an lfm2-vl config needs vision_config and text_config objects")
    native = {k: v for k, v in data.items() if k not in ("auto_map", "image_token_index", "vision_feature_layer")}
    native.update(model_type="lfm2_vl", projector_use_layernorm=True, vision_config=dict(vision))
    if "image_token_index" in data:
        native["image_token_id"] = data["image_token_index"]
    layer = data.get("vision_feature_layer", -1)
    if not is_whole_number(layer):
        raise UsageError(f"{source}: vision_feature_layer is {layer!r}; it must be a whole number (a layer index)")
    if layer != -1 and "num_hidden_layers" in vision:
        native["vision_config"]["num_hidden_layers"] = len(range(vision["num_hidden_layers"])[: layer + 1])
    native["preprocessor_config"] = {k: data[k] for k in ("min_image_tokens", "max_image_tokens") if k in data}
    return native


def _ernie4_5_moe_vl(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Baidu's own ``ernie4_5_moe_vl`` (one flat config with a ``vision_config``, for its own code and
    vLLM's) onto transformers' ``ernie4_5_vl_moe``: the same ViT (its MLP ``mlp_ratio`` times wide, the
    spatial and temporal merge sizes from the top-level ``*_conv_size``) and the same text model,
    whose MoE layers are those from the first ``moe_layer_start_index`` to the last
    ``moe_layer_end_index`` at every ``moe_layer_interval``-th layer. As vLLM does, the ViT's layer
    norms take the top-level ``rms_norm_eps``."""
    vision = data.get("vision_config")
    if not isinstance(vision, dict):
        raise UsageError(f"{source}: an ernie4_5_moe_vl config needs a vision_config object")
    width = vision.get("hidden_size", vision.get("embed_dim"))
    if vision.get("embed_dim", width) != width:
        raise UsageError(f"{source}: vision_config embed_dim {vision['embed_dim']!r} differs from hidden_size {width!r}; "
                         "transformers' ERNIE-4.5-VL has one ViT width")
    experts = data.get("moe_num_experts", 64)
    if isinstance(experts, list) and len(set(experts)) != 1:
        raise UsageError(f"{source}: moe_num_experts {experts!r} differs between text and vision experts, which only the "
                         "authors' own code builds; transformers' ERNIE-4.5-VL has one expert count")
    native_vision = {"model_type": "ernie4_5_vl_moe_vision", "hidden_size": width}
    native_vision.update({k: vision[k] for k in ("depth", "num_heads", "hidden_act", "patch_size") if k in vision})
    if "in_channels" in vision or "in_chans" in vision:
        native_vision["in_channels"] = vision.get("in_channels", vision.get("in_chans"))
    if "mlp_ratio" in vision:
        ratio = vision["mlp_ratio"]
        if not is_whole_number(width) or not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
            raise UsageError(f"{source}: vision_config mlp_ratio {ratio!r} and width {width!r} give no MLP size")
        native_vision["intermediate_size"] = int(width * ratio)
    native_vision["spatial_merge_size"] = data.get("spatial_conv_size", vision.get("spatial_merge_size", 2))
    native_vision["temporal_merge_size"] = data.get("temporal_conv_size", 2)
    native_vision["rms_norm_eps"] = data.get("rms_norm_eps", 1e-6)
    kept = ("hidden_size", "intermediate_size", "max_position_embeddings", "moe_intermediate_size", "moe_k",
            "moe_num_shared_experts", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps",
            "vocab_size", "tie_word_embeddings", "use_bias", "hidden_act")
    text = {"model_type": "ernie4_5_vl_moe_text", **{k: data[k] for k in kept if k in data}}
    text["moe_num_experts"] = experts[0] if isinstance(experts, list) else experts
    text["moe_num_shared_experts"] = text.get("moe_num_shared_experts") or 0
    rope = {"rope_type": "default", "rope_theta": data.get("rope_theta", 500000.0)}
    if isinstance(data.get("rope_scaling"), dict) and "mrope_section" in data["rope_scaling"]:
        rope["mrope_section"] = data["rope_scaling"]["mrope_section"]
    text["rope_parameters"] = rope
    [layers] = _whole_numbers(data, "num_hidden_layers", 28, source, least=1, many=False)
    first = min(_whole_numbers(data, "moe_layer_start_index", 1, source))
    last = max(_whole_numbers(data, "moe_layer_end_index", layers - 1, source))
    [interval] = _whole_numbers(data, "moe_layer_interval", 1, source, least=1, many=False)
    text["mlp_layer_types"] = ["sparse" if (i + 1) % interval == 0 and first <= i <= last else "dense" for i in range(layers)]
    native = {"model_type": "ernie4_5_vl_moe", "architectures": data.get("architectures"),
              "vision_config": native_vision, "text_config": text,
              "tie_word_embeddings": data.get("tie_word_embeddings", True)}
    tokens = {"im_patch_id": "image_token_id", "image_start_token_id": "image_start_token_id",
              "image_end_token_id": "image_end_token_id", "video_start_token_id": "video_start_token_id",
              "video_end_token_id": "video_end_token_id"}
    native.update({new: data[old] for old, new in tokens.items() if old in data})
    return native


# model_type -> how to read it (or which form to use instead), and the native model_type it reads as. Forms absent here and
# absent from transformers are refused by the registry as unsupported model types.
_MAPPED = {
    "internvl_chat": (_internvl_chat, "internvl"),
    "deepseek_vl_v2": (_deepseek_vl_v2, "deepseek_ocr2"),  # DeepSeek-OCR 2's; DeepSeek-VL2's is refused
    "kimi_k25": (_kimi_k25, "kimi_k25"),  # Moonshot's own form shares transformers' model_type
    "kimi_vl": (_kimi_vl, "kimi_vl"),  # read by Kimi-K2.5's classes, as the kimi-vl family
    "lfm2-vl": (_lfm2_vl_early, "lfm2_vl"),
    "ernie4_5_moe_vl": (_ernie4_5_moe_vl, "ernie4_5_vl_moe"),
}
_REFUSED = {
    "minicpmv": "MiniCPM-V 2.5 to 4.5 publish a minicpmv config for their own code (a ViT and a resampler), which encgraph "
                "does not run and transformers has no class for; this family is not supported yet",
    "step3_vl": "Step3 publishes a step3_vl config for its own code (its own ViT), which encgraph does not run and "
                "transformers has no class for; this model is not supported yet (Step3-VL-10B, model_type step_robotics, "
                "and Step-3.7, model_type step3p7, are)",
}


def native_config(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` itself when it is a transformers-native config; else its native equivalent."""
    model_type = data.get("model_type")
    if model_type in _REFUSED:
        raise UsageError(f"{source}: {_REFUSED[model_type]}")
    mapping = _MAPPED.get(model_type)
    return mapping[0](data, source) if mapping else data


def refused_forms() -> dict[str, str]:
    """The authors' own forms encgraph refuses, each with why (of deepseek_vl_v2, all but DeepSeek-OCR 2's)."""
    return {**_REFUSED, "deepseek_vl_v2": _DEEPSEEK_VL2_REFUSED}


def own_forms(native_type: str) -> list[str]:
    """The model_types of authors' own forms that read as ``native_type``."""
    return [own for own, (_, native) in _MAPPED.items() if native == native_type and own != native_type]
