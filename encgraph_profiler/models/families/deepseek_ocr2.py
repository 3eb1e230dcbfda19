"""DeepSeek-OCR 2 (transformers' ``deepseek_ocr2``): a SAM ViT-B whose neck and two stride-2
convolutions shrink each view's 16 px patch grid fourfold per side, then a Qwen2 decoder run as an
encoder over those tokens followed by as many learned queries (bidirectional over the image tokens,
causal over the queries), whose query outputs the linear projector maps into the language model.

vLLM (deepseek_ocr2.py) captures it on two encoder paths, two sets of budget graphs in one pool:

- ``global``: min(B // 256, k) views of 1024 x 1024 px (its BASE_SIZE; 64 x 64 patches, 16 x 16
  tokens each);
- ``local``: B // 144 crops of 768 x 768 px (its IMAGE_SIZE; 48 x 48 patches, 12 x 12 tokens
  each); k does not apply.

Each path captures vLLM's own ladder: from one item of that path (256 or 144 tokens) doubling up to
the largest budget, plus the largest, global first, each largest first. Each graph covers SAM, the
Qwen2 encoder and the projector. Outside the graph: SAM's position embedding resized to the grid, each SAM attention
block's relative-position tables (transformers indexes them with a host tensor, which capture
forbids), the encoder's attention mask and its rotary embedding.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..base import Layout, random_input, whole_numbers
from ..layouts.two_path import TwoPathAdapter
from . import deepseek_ocr, deepseek_vl2

GLOBAL_VIEW = 1024  # vLLM's BASE_SIZE: the global view of every image
LOCAL_CROP = 768  # vLLM's IMAGE_SIZE: the crops of a large image
DOWNSAMPLE = 4  # the two stride-2 convolutions after SAM's neck
# The learned queries transformers' vision model holds, one per output token of a view.
QUERIES = {GLOBAL_VIEW: 256, LOCAL_CROP: 144}


def _tower_module():
    """SAM, the Qwen2 encoder and the projector as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2VisionModel

    class DeepseekOcr2Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_tower = DeepseekOcr2VisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.multi_modal_projector = torch.nn.Linear(
                config.vision_config.encoder_config.hidden_size, config.text_config.hidden_size, dtype=dtype
            )

        def forward(self, pixel_values, pos_embed, rel_pos, attention_mask, cos, sin):
            """DeepseekOcr2VisionModel's forward with every grid-dependent tensor given, then the
            projector. ``rel_pos`` holds each SAM block's (height, width) tables."""
            sam, encoder = self.vision_tower.sam_encoder, self.vision_tower.vision_encoder
            hidden = sam.patch_embed(pixel_values) + pos_embed
            for layer, tables in zip(sam.layers, rel_pos, strict=True):
                layer.attn.get_rel_pos = _given(layer.attn, tables)
                try:
                    hidden = layer(hidden)
                finally:
                    del layer.attn.get_rel_pos  # the block computes its own tables again
            hidden = sam.proj(sam.neck(hidden)).flatten(2).transpose(1, 2)
            batch, tokens, _ = hidden.shape
            queries = (
                self.vision_tower.query_768_resolution if tokens <= 144 else self.vision_tower.query_1024_resolution
            )
            hidden = torch.cat([hidden, queries.weight.unsqueeze(0).expand(batch, -1, -1)], dim=1)
            for layer in encoder.layers:
                hidden = layer(hidden, attention_mask=attention_mask, position_embeddings=(cos, sin))
            return self.multi_modal_projector(encoder.norm(hidden)[:, tokens:])

    return DeepseekOcr2Tower


def _given(attn, tables):
    """A SAM attention block's get_rel_pos, answered from its (height, width) tables."""

    def get_rel_pos(q_size, k_size, rel_pos):
        return tables[0] if rel_pos is attn.rel_pos_h else tables[1]

    return get_rel_pos


# DeepSeek-OCR 2's vision tower as vLLM builds it (deepseek_ocr2.py: ImageEncoderViT and
# build_qwen2_decoder_as_encoder, with fixed arguments), whatever a config's vision_config says.
_DEEPSEEK_OCR2_SAM = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4.0,
    "image_size": 1024,
    "patch_size": 16,
    "window_size": 14,
    "global_attn_indexes": [2, 5, 8, 11],
    "output_channels": 256,
    "downsample_channels": [512, 896],
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "use_rel_pos": True,
}
_DEEPSEEK_OCR2_ENCODER = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
}


def _deepseek_vl_v2(data: dict[str, Any], source: str) -> dict[str, Any]:
    """DeepSeek's own ``deepseek_vl_v2`` form, which DeepSeek-VL2, DeepSeek-OCR and DeepSeek-OCR 2 all
    publish, told apart by their architectures as vLLM's DeepseekVLV2Config does: DeepseekOCRForCausalLM
    (read by deepseek_ocr.py), DeepseekOCR2ForCausalLM (here), anything else DeepSeek-VL2 (deepseek_vl2.py;
    its published configs name no architecture)."""
    architectures = data.get("architectures") or ()
    if "DeepseekOCRForCausalLM" in architectures:
        return deepseek_ocr.deepseek_vl_v2(data, source)
    if "DeepseekOCR2ForCausalLM" not in architectures:
        return deepseek_vl2.deepseek_vl_v2(data, source)
    return _deepseek_ocr2_form(data, source)


def _deepseek_ocr2_form(data: dict[str, Any], source: str) -> dict[str, Any]:
    """DeepSeek-OCR 2's form (architecture ``DeepseekOCR2ForCausalLM``,
    what ``vllm serve deepseek-ai/DeepSeek-OCR-2`` reads) onto transformers' ``deepseek_ocr2``: the
    vision tower at the fixed sizes vLLM builds whatever ``vision_config`` says (SAM ViT-B, its last
    convolution 896 wide, and a 24-layer 896-wide Qwen2 encoder), the linear projector of
    ``projector_config``, and the language model of ``language_config`` (DeepSeek-V2 with multi-head
    attention), sparse from layer ``first_k_dense_replace`` on at every ``moe_layer_freq``-th layer."""
    text, projector = data.get("language_config"), data.get("projector_config")
    if not isinstance(text, dict) or not isinstance(projector, dict):
        raise UsageError(f"{source}: a DeepSeek-OCR 2 config needs language_config and projector_config objects")
    if text.get("use_mla", True):
        raise UsageError(
            f"{source}: language_config has multi-head latent attention (use_mla); DeepSeek-OCR 2's language model, "
            "as transformers builds it, has plain multi-head attention"
        )
    if data.get("tile_tag", "2D") != "2D":
        raise UsageError(f"{source}: tile_tag is {data['tile_tag']!r}; vLLM's DeepSeek-OCR 2 lays out 2D tiles only")
    width = _DEEPSEEK_OCR2_ENCODER["hidden_size"]
    expected = {"projector_type": "linear", "input_dim": width, "n_embed": text.get("hidden_size")}
    for key, value in expected.items():
        if projector.get(key) != value:
            raise UsageError(
                f"{source}: projector_config {key} is {projector.get(key)!r}; DeepSeek-OCR 2's projector is one "
                f"linear layer from its {width}-wide encoder to the language model's hidden_size ({value!r} expected)"
            )
    return {
        "model_type": "deepseek_ocr2",
        "architectures": ["DeepseekOcr2ForConditionalGeneration"],
        "vision_config": {"sam_config": dict(_DEEPSEEK_OCR2_SAM), "encoder_config": dict(_DEEPSEEK_OCR2_ENCODER)},
        "text_config": _language_model(text, source),
        "tie_word_embeddings": text.get("tie_word_embeddings", False),
    }


# The language model's fields the own form and transformers' name alike.
_TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "n_routed_experts", "n_shared_experts", "num_experts_per_tok",
    "n_group", "topk_group", "topk_method", "routed_scaling_factor", "max_position_embeddings", "rms_norm_eps",
    "hidden_act", "bos_token_id", "eos_token_id",
)  # fmt: skip


def _language_model(text: dict[str, Any], source: str) -> dict[str, Any]:
    """DeepSeek-V2 with multi-head attention, sparse from layer ``first_k_dense_replace`` on at every
    ``moe_layer_freq``-th layer."""
    native = {"model_type": "deepseek_ocr2_text", **{k: text[k] for k in _TEXT_FIELDS if k in text}}
    native["rope_parameters"] = {"rope_type": "default", "rope_theta": text.get("rope_theta", 10000.0)}
    [layers] = whole_numbers(text, "num_hidden_layers", 30, source, least=1, many=False)
    [first] = whole_numbers(text, "first_k_dense_replace", 0, source, many=False)
    [every] = whole_numbers(text, "moe_layer_freq", 1, source, least=1, many=False)
    sparse = bool(text.get("n_routed_experts"))
    native["mlp_layer_types"] = [
        "sparse" if sparse and i >= first and i % every == 0 else "dense" for i in range(layers)
    ]
    return native


class DeepseekOcr2Adapter(TwoPathAdapter):
    family = "deepseek-ocr2"
    model_types = ("deepseek_ocr2",)
    own_forms = {"deepseek_vl_v2": _deepseek_vl_v2}  # DeepSeek-VL2's, DeepSeek-OCR's and DeepSeek-OCR 2's
    config_class_name = "transformers:DeepseekOcr2Config"
    model_class_name = "transformers:DeepseekOcr2ForConditionalGeneration"
    global_noun = "views"
    patches_caption = "SAM patches, {per} tokens each"

    def check_config(self, data, source: str) -> None:
        super().check_config(data, source)
        sam = data["vision_config"].get("sam_config", {})
        size, patch = sam.get("image_size", GLOBAL_VIEW), sam.get("patch_size", 16)
        if size != GLOBAL_VIEW or patch != 16:
            raise UsageError(
                f"{source}: vision_config.sam_config has image_size {size!r} and patch_size {patch!r}; DeepSeek-OCR "
                f"2's queries fit {GLOBAL_VIEW} px views of 16 px patches only"
            )

    def tower_module(self):
        return _tower_module()

    def view_size(self, config, path: str) -> int:
        return GLOBAL_VIEW if path == "global" else LOCAL_CROP

    def patch_size(self, config) -> int:
        return config.vision_config.sam_config.patch_size

    def tokens(self, config, size: int) -> int:
        return (size // self.patch_size(config) // DOWNSAMPLE) ** 2

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch
        from transformers.masking_utils import create_causal_mask

        size = self.view_size(config, layout.path)
        sam, encoder = tower.vision_tower.sam_encoder, tower.vision_tower.vision_encoder
        side = size // self.patch_size(config)
        shape = (layout.items, config.vision_config.sam_config.num_channels, size, size)
        pixels = random_input(shape, dtype, device, generator)
        with torch.inference_mode():
            rel_pos = []
            for layer in sam.layers:
                grid = layer.window_size or side
                rel_pos.append(
                    (
                        layer.attn.get_rel_pos(grid, grid, layer.attn.rel_pos_h),
                        layer.attn.get_rel_pos(grid, grid, layer.attn.rel_pos_w),
                    )
                )
            tokens = (side // DOWNSAMPLE) ** 2
            embeds = torch.empty(
                layout.items, 2 * tokens, encoder.config.hidden_size, device=device, dtype=pixels.dtype
            )
            blocks = torch.full(embeds.shape[:2], -1, dtype=torch.long, device=device)
            blocks[:, :tokens] = 0  # the image tokens see each other; the queries see what precedes them
            mask = create_causal_mask(encoder.config, embeds, None, None, block_sequence_ids=blocks)
            cos, sin = encoder.rotary_emb(embeds, torch.arange(2 * tokens, device=device).unsqueeze(0))
            pos_embed = sam.interpolate_pos_encoding(side, side)
        return {
            "pixel_values": pixels,
            "pos_embed": pos_embed,
            "rel_pos": tuple(rel_pos),
            "attention_mask": mask,
            "cos": cos,
            "sin": sin,
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    def reference_forward(self, tower, inputs: dict):
        """DeepseekOcr2Model.get_image_features' path for one set of views: the vision model as
        transformers runs it, then the projector."""
        return (tower.multi_modal_projector(tower.vision_tower(inputs["pixel_values"]).last_hidden_state),)

    aliases = {"deepseek-ocr2": "deepseek-ocr-2"}


ADAPTERS = (DeepseekOcr2Adapter(),)
