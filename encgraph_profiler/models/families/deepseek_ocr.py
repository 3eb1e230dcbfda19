"""DeepSeek-OCR (the first; Baidu's Unlimited-OCR has the same encoder): SAM ViT-B, whose neck and two
stride-2 convolutions shrink each view's 16 px patch grid fourfold per side, then CLIP-L run over SAM's
output as its patch embeddings, the two concatenated (1024 + 1024 wide) and projected by one linear
layer (towers/deepseek_ocr.py).

vLLM (deepseek_ocr.py, DeepseekOCRForCausalLM; unlimited_ocr.py's UnlimitedOCRForCausalLM inherits it)
captures it on two encoder paths, two sets of budget graphs in one pool. Their sizes come from the
processor's constants BASE_SIZE = 1024 and IMAGE_SIZE = 640 (transformers_utils/processors/deepseek_ocr.py),
not from the config, and the 16 px patches and fourfold downsampling are fixed too:

- ``global``: g = global_image_output_token = 16 * (16 + 1) = 272 tokens per 1024 x 1024 view (16 x 16
  tokens, a newline after each row, inserted inside the graph); min(B // 272, k) views;
- ``local``: c = single_patch_output_token = 10 * 10 = 100 tokens per 640 x 640 crop, no newlines (added
  after the graph); B // 100 crops, k not applying. vLLM's local ladder also holds a budget of zero
  crops (allow_zero_tokens), which it never captures.

vLLM's smallest budget (get_encoder_cudagraph_budget_range) is g, and each path captures its own ladder
from one item of that path (272, 100) doubling up to the largest budget, plus the largest, global first,
each largest first. Each graph covers SAM, CLIP and the projector (and the global newlines). Inside it,
for the 640 px crops, SAM's and CLIP's position tables and the global SAM blocks' relative-position
tables are resized to the smaller grid, as vLLM does.
"""

from __future__ import annotations

from typing import Any

from ...errors import UsageError
from ..base import Layout, VllmSource, random_input
from ..layouts.two_path import TwoPathAdapter
from .deepseek_vl2 import checked_attention, language_model, read_config, whole_model_class

GLOBAL_VIEW = 1024  # vLLM's BASE_SIZE
LOCAL_CROP = 640  # vLLM's IMAGE_SIZE
PATCH = 16  # SAM's patches, which vLLM's token counts assume
DOWNSAMPLE = 4  # net_2 and net_3, stride 2 each

# build_sam_vit_b and the CLIPVisionConfig vLLM builds (deepencoder.py, deepseek_ocr.py), whatever
# the config's vision_config says.
_SAM_VIT_B = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4.0,
    "image_size": 1024,
    "patch_size": PATCH,
    "window_size": 14,
    "global_attn_indexes": [2, 5, 8, 11],
    "output_channels": 256,
    "downsample_channels": [512, 1024],
}
_CLIP_L = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "layer_norm_eps": 1e-5,
}


def deepseek_vl_v2(data: dict[str, Any], source: str) -> dict[str, Any]:
    """DeepSeek's ``deepseek_vl_v2`` form of DeepSeek-OCR (architecture ``DeepseekOCRForCausalLM``, what
    ``vllm serve deepseek-ai/DeepSeek-OCR`` reads; Unlimited-OCR's ``unlimited-ocr`` form is the same)
    onto encgraph's ``deepseek_ocr`` form: the encoder vLLM builds, the linear projector of
    ``projector_config`` and the language model of ``language_config``."""
    text, projector = data.get("language_config"), data.get("projector_config")
    if not isinstance(text, dict) or not isinstance(projector, dict):
        raise UsageError(f"{source}: a DeepSeek-OCR config needs language_config and projector_config objects")
    width = _CLIP_L["hidden_size"] + _SAM_VIT_B["downsample_channels"][-1]
    expected = {"projector_type": "linear", "input_dim": width}
    for key, value in expected.items():
        if projector.get(key) != value:
            raise UsageError(
                f"{source}: projector_config {key} is {projector.get(key)!r}; DeepSeek-OCR's projector is one linear "
                f"layer over CLIP's and SAM's features side by side, {width} wide ({value!r} expected)"
            )
    if data.get("tile_tag", "2D") != "2D":
        raise UsageError(f"{source}: tile_tag is {data['tile_tag']!r}; vLLM's DeepSeek-OCR lays out 2D tiles only")
    return {
        "model_type": "deepseek_ocr",
        "vision_config": {"sam_config": dict(_SAM_VIT_B), "clip_config": dict(_CLIP_L)},
        "projector_config": {"projector_type": "linear", "input_dim": width, "n_embed": projector.get("n_embed")},
        "text_config": language_model(text, source),
    }


class DeepseekOcrAdapter(TwoPathAdapter):
    family = "deepseek-ocr"
    model_types = ("deepseek_ocr",)  # encgraph's form; DeepSeek's deepseek_vl_v2 arrives by deepseek_ocr2.py
    own_forms = {"unlimited-ocr": deepseek_vl_v2, "unlimited_ocr": deepseek_vl_v2}  # Unlimited-OCR's
    global_noun = "views"
    patches_caption = "SAM patches, {per} tokens each"

    def check_config(self, data, source: str) -> None:
        super().check_config(data, source)
        vision, projector = data["vision_config"], data.get("projector_config", {})
        sam, clip = vision.get("sam_config"), vision.get("clip_config")
        if not isinstance(sam, dict) or not isinstance(clip, dict) or not isinstance(data.get("text_config"), dict):
            raise UsageError(
                f"{source}: a DeepSeek-OCR config needs vision_config.sam_config, clip_config and text_config"
            )
        size, patch = sam.get("image_size"), sam.get("patch_size")
        if size != GLOBAL_VIEW or patch != PATCH:
            raise UsageError(
                f"{source}: sam_config has image_size {size!r} and patch_size {patch!r}; "
                f"vLLM counts DeepSeek-OCR's tokens for SAM at {GLOBAL_VIEW} px with {PATCH} px patches"
            )
        last = (sam.get("downsample_channels") or [0])[-1]
        if clip.get("hidden_size") != last or projector.get("input_dim") != 2 * last:
            raise UsageError(
                f"{source}: SAM's last convolution ({last} wide) must be CLIP's hidden_size and half the projector's "
                "input_dim: CLIP takes SAM's output as its patch embeddings and the projector both side by side"
            )

    def full_config(self, data):
        return read_config(self, data)

    def full_model_class(self):
        return whole_model_class(self)

    def tower_module(self):
        from ..towers.deepseek_ocr import DeepseekOcrTower

        return DeepseekOcrTower

    def build_tower(self, tower_config, dtype: str, attn: str):
        return super().build_tower(tower_config, dtype, checked_attention(self.family, attn))

    def view_size(self, config, path: str) -> int:
        return GLOBAL_VIEW if path == "global" else LOCAL_CROP

    def patch_size(self, config) -> int:
        return PATCH

    def tokens(self, config, size: int) -> int:
        """The tokens one view makes: its grid side after the downsampling, squared, and for a global
        view one newline per row (vLLM's global_image_output_token and single_patch_output_token)."""
        side = -(-(size // PATCH) // DOWNSAMPLE)
        return side * (side + 1) if size == GLOBAL_VIEW else side * side

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        size = self.view_size(config, layout.path)
        shape = (layout.items, 3, size, size)
        return {"pixel_values": random_input(shape, dtype, device, generator)}

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    vllm = VllmSource("model_executor/models/deepseek_ocr.py", "DeepseekOCRForCausalLM")
    hub_ids = {"unlimited-ocr": "baidu/Unlimited-OCR"}


ADAPTERS = (DeepseekOcrAdapter(),)
