"""MiniCPM-V 2.5 / 2.6 / 4.0 and MiniCPM-o 2.6: the SigLIP ViT with NaViT patch positions, then the
perceiver resampler, laid out as vLLM 0.33.0's minicpmv.py (_MiniCPMVEncoderCudaGraphMixin) captures them."""

import torch
from torch import nn
from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

MODEL_TYPES = ("minicpmv", "minicpmo")
VISION_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "image_size",
    "patch_size",
)


def _version(data):
    """vLLM's reading of the version (model_type is gone here: an audio_config marks MiniCPM-o, 2.6 by default)."""
    if "version" in data:
        return tuple(int(x) for x in str(data["version"]).split("."))[:2]
    if "audio_config" in data:
        return (2, 6)
    return (2, 0) if (data["hidden_size"], data["query_num"]) == (2304, 64) else (2, 5)


def _sincos_2d(width, side):
    """Resampler2_5's table: [row, col] -> sin/cos of the column over width / 2, then of the row."""
    quarter = width // 4
    freqs = torch.pow(10000.0, -torch.arange(quarter, dtype=torch.float32) / quarter)
    angles = torch.outer(torch.arange(side, dtype=torch.float32), freqs)
    half = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return torch.cat([half[None, :, :].expand(side, side, -1), half[:, None, :].expand(side, side, -1)], dim=-1)


def build(data, budgets, items, gen, attn="sdpa"):
    """Budget after budget (largest first), one graph per patch grid of 32x32, 32x64, 64x32 (those
    that fit image_size // patch_size) and the full square grid, each of
    S = max(1, min(B // query_num, k * (max_slice_num + 1))) slices, k = min(largest // query_num,
    smallest); an all-true patch mask and grids (h, w). Frames per batch (2.6, 4.0) only raise the
    cap, which binds at none of these budgets unless B // query_num > 10 k."""
    version = _version(data)
    assert version in ((2, 5), (2, 6), (4, 0)), f"vLLM captures no encoder graphs for version {version}"
    vision = Idefics2VisionConfig(**{k: data["vision_config"][k] for k in VISION_KEYS})
    queries, width, patch = data["query_num"], data["hidden_size"], vision.patch_size
    side = vision.image_size // patch
    bf16 = torch.bfloat16
    with torch.device("cuda"):
        vit = Idefics2VisionTransformer._from_config(vision, dtype=bf16, attn_implementation=attn).eval()
        if data.get("drop_vision_last_layer", False):
            vit.encoder.layers = vit.encoder.layers[:-1]
        query = torch.randn(queries, width, dtype=bf16) * 0.02
        to_width = nn.Linear(vision.hidden_size, width, bias=False, dtype=bf16) if vision.hidden_size != width else None
        cross = nn.MultiheadAttention(width, width // 128, dtype=bf16).eval()
        ln_q, ln_kv, ln_post = (nn.LayerNorm(width, eps=1e-6, dtype=bf16) for _ in range(3))
        proj = torch.randn(width, width, dtype=bf16) * width**-0.5
        # 70 x 70 in bf16; a wider grid makes vLLM's warm-up rebuild it in float32
        table = _sincos_2d(width, 70).to(bf16) if side <= 70 else _sincos_2d(width, side)
        buckets = torch.arange(1 / side, 1.0, 1 / side)
    items = max(1, min(budgets[0] // queries, budgets[-1]))
    grids = [g for g in ((32, 32), (32, 64), (64, 32)) if max(g) <= side]
    grids += [] if (side, side) in grids else [(side, side)]
    per_item = data.get("max_slice_num", 9) + 1
    runs = []
    for budget in budgets:
        for rows, cols in grids:
            n = max(1, min(budget // queries, items * per_item))
            pixels = torch.rand(n, 3, rows * patch, cols * patch, generator=gen)
            runs.append(
                {
                    "pixel_values": pixels.to("cuda", bf16),
                    "mask": torch.ones(n, rows * cols, dtype=torch.bool, device="cuda"),
                    "tgt": torch.tensor([[rows, cols]] * n, device="cuda"),
                }
            )

    def forward(pixel_values, mask, tgt):
        n, length = mask.shape
        seq = torch.arange(length, device="cuda")[None]
        if version == (2, 5):  # no grid given to the ViT: one row of the valid patches
            h, w = mask[:, :1].sum(1, keepdim=True).clamp(min=1), mask.sum(1, keepdim=True).clamp(min=1)
        else:
            h, w = tgt[:, :1].clamp(min=1), tgt[:, 1:].clamp(min=1)
        ids = torch.bucketize(seq // w / h, buckets, right=True) * side + torch.bucketize(
            seq % w / w, buckets, right=True
        )
        emb = vit.embeddings.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        emb += vit.embeddings.position_embedding(torch.where(mask, ids, 0))
        bias = (~mask).to(bf16)[:, None, None, :] * torch.finfo(bf16).min
        feats = vit.post_layernorm(vit.encoder(inputs_embeds=emb, attention_mask=bias).last_hidden_state)
        cols_of = tgt[:, 1:].clamp(min=1)
        padded = seq >= tgt.prod(-1, keepdim=True)
        at = (seq // cols_of).clamp(max=table.shape[0] - 1), (seq % cols_of).clamp(max=table.shape[1] - 1)
        pos = table[at].to(bf16)
        pos = torch.where(padded[..., None], torch.zeros_like(pos), pos).transpose(0, 1)
        kv = ln_kv(to_width(feats) if to_width is not None else feats).transpose(0, 1)
        q = ln_q(query)[:, None].repeat(1, n, 1)
        out = cross(q, kv + pos, kv, key_padding_mask=padded)[0].transpose(0, 1)
        return (ln_post(out) @ proj).reshape(n * queries, width)

    return forward, runs, items
