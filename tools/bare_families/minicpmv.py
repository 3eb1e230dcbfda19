"""MiniCPM-V 2.5 / 2.6 / 4.0 and MiniCPM-o 2.6: the SigLIP ViT with NaViT patch positions, then the
perceiver resampler, laid out as vLLM 0.33.0's minicpmv.py (_MiniCPMVEncoderCudaGraphMixin) captures them."""

import torch
from torch import nn
from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

from bare_families import common

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
    with torch.device(common.DEVICE):
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
                    "pixel_values": pixels.to(common.DEVICE, bf16),
                    "mask": torch.ones(n, rows * cols, dtype=torch.bool, device=common.DEVICE),
                    "tgt": torch.tensor([[rows, cols]] * n, device=common.DEVICE),
                }
            )

    def positions(mask3, tgt):  # vLLM's get_position_ids, statement by statement: every local held to the end
        n = mask3.shape[0]
        boundaries = torch.arange(1 / side, 1.0, 1 / side, device=common.DEVICE)
        flat = mask3.view(n, -1)
        if version == (2, 5):  # no grid given to the ViT: one row of the valid patches
            nb_h, nb_w = mask3[:, :, 0].sum(dim=1), mask3[:, 0, :].sum(dim=1)
        else:
            nb_h, nb_w = tgt[:, 0], tgt[:, 1]
        h1, w1 = nb_h.clamp(min=1).unsqueeze(1), nb_w.clamp(min=1).unsqueeze(1)
        i = torch.arange(flat.shape[-1], device=common.DEVICE)
        hi, wi = i.unsqueeze(0) // w1, i.unsqueeze(0) % w1
        fh, fw = hi / h1, wi / w1
        bh, bw = torch.bucketize(fh, boundaries, right=True), torch.bucketize(fw, boundaries, right=True)
        ids = bh * side + bw
        return torch.where(flat, ids, 0)

    def embed(pixel_values, mask3, tgt):  # vLLM's Idefics2VisionEmbeddings.forward
        conv = vit.embeddings.patch_embedding(pixel_values)
        emb = conv.flatten(2).transpose(1, 2)
        ids = positions(mask3, tgt)
        emb += vit.embeddings.position_embedding(ids)
        return emb

    def resample(feats, tgt):  # vLLM's Resampler2_5.forward, statement by statement
        n, length = feats.shape[:2]
        plen = tgt[:, 0] * tgt[:, 1]
        seq = torch.arange(length, device=common.DEVICE).unsqueeze(0)
        tw = tgt[:, 1].unsqueeze(1).clamp(min=1)
        hi, wi = seq // tw, seq % tw
        hi = hi.clamp(max=table.shape[0] - 1)
        wi = wi.clamp(max=table.shape[1] - 1)
        padded = seq >= plen.unsqueeze(1)
        pos = table[hi, wi].to(bf16)
        pos = torch.where(padded.unsqueeze(-1), torch.zeros_like(pos), pos).permute(1, 0, 2)
        feats = to_width(feats) if to_width is not None else feats  # the argument's name reused, as vLLM's x
        feats = ln_kv(feats).permute(1, 0, 2)
        q = ln_q(query)
        out = cross(q.unsqueeze(1).repeat(1, n, 1), feats + pos, feats, key_padding_mask=padded)[0]
        feats = out.permute(1, 0, 2)
        feats = ln_post(feats)
        return feats @ proj

    def vision(pixel_values, mask3, tgt):  # vLLM's Idefics2VisionTransformer.forward: emb and bias held to its end
        n = mask3.shape[0]
        emb = embed(pixel_values, mask3, tgt)
        bias = (~mask3.view(n, -1)).to(bf16) * torch.finfo(bf16).min
        encoded = vit.encoder(inputs_embeds=emb, attention_mask=bias[:, None, None, :]).last_hidden_state
        return vit.post_layernorm(encoded)

    def forward(pixel_values, mask, tgt):
        feats = vision(pixel_values, mask.unsqueeze(1), None if version == (2, 5) else tgt)
        return resample(feats, tgt).reshape(mask.shape[0] * queries, width)

    return forward, runs, items
