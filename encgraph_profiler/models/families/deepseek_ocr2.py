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

from ..errors import UsageError
from .base import Layout
from .two_path import TwoPathAdapter

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
            self.vision_tower = DeepseekOcr2VisionModel._from_config(config.vision_config, dtype=dtype, attn_implementation=attn)
            self.multi_modal_projector = torch.nn.Linear(config.vision_config.encoder_config.hidden_size,
                                                         config.text_config.hidden_size, dtype=dtype)

        def forward(self, pixel_values, pos_embed, rel_pos, attention_mask, cos, sin):
            """DeepseekOcr2VisionModel's forward with every grid-dependent tensor given, then the
            projector. ``rel_pos`` holds each SAM block's (height, width) tables."""
            sam, encoder = self.vision_tower.sam_encoder, self.vision_tower.vision_encoder
            hidden = sam.patch_embed(pixel_values) + pos_embed
            for layer, tables in zip(sam.layers, rel_pos):
                layer.attn.get_rel_pos = _given(layer.attn, tables)
                try:
                    hidden = layer(hidden)
                finally:
                    del layer.attn.get_rel_pos  # the block computes its own tables again
            hidden = sam.proj(sam.neck(hidden)).flatten(2).transpose(1, 2)
            batch, tokens, _ = hidden.shape
            queries = self.vision_tower.query_768_resolution if tokens <= 144 else self.vision_tower.query_1024_resolution
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


class DeepseekOcr2Adapter(TwoPathAdapter):
    family = "deepseek-ocr2"
    model_types = ("deepseek_ocr2",)
    config_class_name = "transformers:DeepseekOcr2Config"
    model_class_name = "transformers:DeepseekOcr2ForConditionalGeneration"
    global_noun = "views"
    patches_caption = "SAM patches, {per} tokens each"

    def check_config(self, data, source: str) -> None:
        super().check_config(data, source)
        sam = data["vision_config"].get("sam_config", {})
        size, patch = sam.get("image_size", GLOBAL_VIEW), sam.get("patch_size", 16)
        if size != GLOBAL_VIEW or patch != 16:
            raise UsageError(f"{source}: vision_config.sam_config has image_size {size!r} and patch_size {patch!r}; DeepSeek-OCR 2's "
                             f"queries fit {GLOBAL_VIEW} px views of 16 px patches only")

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
        pixels = torch.randn(layout.items, config.vision_config.sam_config.num_channels, size, size, generator=generator)
        pixels = pixels.to(device=device, dtype=getattr(torch, dtype))
        with torch.inference_mode():
            rel_pos = []
            for layer in sam.layers:
                grid = layer.window_size or side
                rel_pos.append((layer.attn.get_rel_pos(grid, grid, layer.attn.rel_pos_h),
                                layer.attn.get_rel_pos(grid, grid, layer.attn.rel_pos_w)))
            tokens = (side // DOWNSAMPLE) ** 2
            embeds = torch.empty(layout.items, 2 * tokens, encoder.config.hidden_size, device=device, dtype=pixels.dtype)
            blocks = torch.full(embeds.shape[:2], -1, dtype=torch.long, device=device)
            blocks[:, :tokens] = 0  # the image tokens see each other; the queries see what precedes them
            mask = create_causal_mask(encoder.config, embeds, None, None, block_sequence_ids=blocks)
            cos, sin = encoder.rotary_emb(embeds, torch.arange(2 * tokens, device=device).unsqueeze(0))
            pos_embed = sam.interpolate_pos_encoding(side, side)
        return {"pixel_values": pixels, "pos_embed": pos_embed, "rel_pos": tuple(rel_pos), "attention_mask": mask,
                "cos": cos, "sin": sin}

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    def reference_forward(self, tower, inputs: dict):
        """DeepseekOcr2Model.get_image_features' path for one set of views: the vision model as
        transformers runs it, then the projector."""
        return (tower.multi_modal_projector(tower.vision_tower(inputs["pixel_values"]).last_hidden_state),)
