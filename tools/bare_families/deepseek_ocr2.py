"""DeepSeek-OCR 2's SAM, Qwen2 encoder and projector on two paths, as vLLM's encoder graph manager captures them."""

import torch
from transformers import (
    DeepseekOcr2Config,
)
from transformers.masking_utils import create_causal_mask
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2VisionModel

from bare_families import common
from bare_families.common import path_ladder

MODEL_TYPES = ("deepseek_ocr2",)


def build(data, budgets, items, gen):
    """DeepSeek-OCR 2 as vLLM's encoder graph manager captures it: a global path of min(B // 256, k)
    views of 1024 px and a local path of B // 144 crops of 768 px, each path's budgets running from one
    of its items, doubling, up to the largest budget, plus the largest; global first, largest first.
    SAM's position embedding at the view's grid, its blocks' relative-position tables (made once in
    the warm-up, as transformers indexes them with a host tensor), the encoder's mask (bidirectional
    over the SAM tokens, causal over the queries) and its rotary embedding are made before capture."""
    config = DeepseekOcr2Config(**data)
    width = config.vision_config.encoder_config.hidden_size
    with torch.device(common.DEVICE):
        vision = DeepseekOcr2VisionModel._from_config(
            config.vision_config, dtype=torch.bfloat16, attn_implementation="sdpa"
        ).eval()
        projector = torch.nn.Linear(width, config.text_config.hidden_size, dtype=torch.bfloat16).eval()
    sam, encoder = vision.sam_encoder, vision.vision_encoder
    tables = {}
    for block in sam.layers:

        def get_rel_pos(q_size, k_size, rel_pos, make=block.attn.get_rel_pos):
            key = (q_size, k_size, rel_pos.data_ptr())
            if key not in tables:
                tables[key] = make(q_size, k_size, rel_pos)
            return tables[key]

        block.attn.get_rel_pos = get_rel_pos

    views_cap = min(budgets[0] // 256, budgets[-1])  # vLLM's default items per batch for this family
    runs = []
    for size, tokens, counts in (
        (1024, 256, [min(b // 256, views_cap) for b in path_ladder(256, budgets[0])]),
        (768, 144, [b // 144 for b in path_ladder(144, budgets[0])]),
    ):
        side = size // config.vision_config.sam_config.patch_size
        with torch.inference_mode():
            pos_embed = sam.interpolate_pos_encoding(side, side)
            cos, sin = encoder.rotary_emb(
                torch.empty(1, dtype=torch.bfloat16, device=common.DEVICE),
                torch.arange(2 * tokens, device=common.DEVICE)[None],
            )
        for count in counts:
            embeds = torch.empty(count, 2 * tokens, width, dtype=torch.bfloat16, device=common.DEVICE)
            blocks = torch.full((count, 2 * tokens), -1, dtype=torch.long, device=common.DEVICE)
            blocks[:, :tokens] = 0
            with torch.inference_mode():
                mask = create_causal_mask(encoder.config, embeds, None, None, block_sequence_ids=blocks)
            runs.append(
                {
                    "pixel_values": torch.randn(count, 3, size, size, generator=gen).to(common.DEVICE, torch.bfloat16),
                    "pos_embed": pos_embed,
                    "mask": mask,
                    "cos": cos,
                    "sin": sin,
                }
            )

    def forward(pixel_values, pos_embed, mask, cos, sin):
        hidden = sam.patch_embed(pixel_values) + pos_embed
        for block in sam.layers:
            hidden = block(hidden)
        hidden = sam.proj(sam.neck(hidden)).flatten(2).transpose(1, 2)
        count, tokens, _ = hidden.shape
        queries = (vision.query_768_resolution if tokens == 144 else vision.query_1024_resolution).weight
        hidden = torch.cat([hidden, queries.expand(count, -1, -1)], dim=1)
        for layer in encoder.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin))
        return projector(encoder.norm(hidden)[:, tokens:])

    return forward, runs, views_cap
