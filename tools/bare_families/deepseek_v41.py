"""DeepSeek-V4.1's vision tower and aligner as vLLM 0.33.0 captures them (models/deepseek_v41/common/
vl_cudagraph.py over models/deepseek_v4/common/vision.py), written here in plain torch: transformers has
no class for this tower. Intermediates live as long as in vLLM's modules (a block's input until the
block returns; the fused projections, rotated queries and keys, attention output, merged rows and first
aligner projection until the layer after them has run), since that decides the pool."""

import torch
import torch.nn.functional as F

from bare_families import common

MODEL_TYPES = ("deepseek_v41",)


def _sizes(data):
    v = data["vision_config"]
    return {
        "depth": v["num_hidden_layers"],
        "dim": v["hidden_size"],
        "heads": v["num_attention_heads"],
        "inter": v["intermediate_size"],
        "patch": v.get("patch_size", 14),
        "r": v.get("downsample_ratio", 3),
        "theta": float(v.get("rope_theta", 10000.0)),
        "width": data.get("hidden_size", data["text_config"]["hidden_size"]),
    }


def _weights(s):
    """Random bf16 weights on the GPU (their values do not matter), norms at one."""

    def weight(*shape, ones=False):
        made = torch.empty(*shape, device=common.DEVICE, dtype=torch.bfloat16)
        return made.fill_(1.0) if ones else made.normal_(std=0.02)

    dim, inter, width = s["dim"], s["inter"], s["width"]

    def block():
        return {
            "n1": weight(dim, ones=True),
            "qkv": (weight(3 * dim, dim), weight(3 * dim)),
            "o": (weight(dim, dim), weight(dim)),
            "n2": weight(dim, ones=True),
            "up": weight(2 * inter, dim),
            "down": weight(dim, inter),
        }

    return {
        "patch": (weight(dim, 3 * s["patch"] ** 2), weight(dim)),
        "blocks": [block() for _ in range(s["depth"])],
        "norm": weight(dim, ones=True),
        "a1": (weight(width, dim * s["r"] ** 2), weight(width)),
        "a2": (weight(width, width), weight(width)),
    }


def _norm(x, w):
    kind = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6)
    return (w * x).to(kind)


def _rotary(x, cos, sin):
    kind = x.dtype
    first, second = x.float().chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1).to(kind)


def _attention(q, k, v, seg):
    if seg["cu_seqlens"] is not None:  # one flash kernel over the packed images
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn(q, k, v, seg["cu_seqlens"], seg["cu_seqlens"], seg["max_seqlen"], seg["max_seqlen"])
    lengths = list(seg["lengths"])
    trios = zip(q.split(lengths), k.split(lengths), v.split(lengths), strict=True)
    return torch.cat(
        [F.scaled_dot_product_attention(*(t.transpose(0, 1) for t in trio)).transpose(0, 1) for trio in trios]
    )


def _attend(h, b, heads, seg):
    n = h.shape[0]
    qkv = F.linear(h, *b["qkv"])
    q, k, val = (t.view(n, heads, -1) for t in qkv.chunk(3, dim=-1))
    q = _rotary(q, seg["cos"], seg["sin"])
    k = _rotary(k, seg["cos"], seg["sin"])
    o = _attention(q, k, val, seg)
    return F.linear(o.reshape(n, -1), *b["o"])


def _feed_forward(h, b):
    gate_up = F.linear(h, b["up"])
    gate, up = gate_up.chunk(2, dim=-1)
    return F.linear(F.silu(gate).mul_(up), b["down"])  # one allocation, as vLLM's fused SiluAndMul


def _block(x, b, heads, seg):
    x = x + _attend(_norm(x, b["n1"]), b, heads, seg)
    return x + _feed_forward(_norm(x, b["n2"]), b)


def _vit(w, heads, patches, seg):
    x = F.linear(patches.flatten(1), *w["patch"])
    for b in w["blocks"]:
        x = _block(x, b, heads, seg)
    return _norm(x, w["norm"])


def _align(w, r, x, gather, keep):
    windows = gather.shape[0]
    merged = (x[gather] * keep).view(windows, r * r, -1)
    merged = merged.permute(0, 2, 1).reshape(windows, -1)
    hidden = F.linear(merged, *w["a1"])
    return F.linear(F.gelu(hidden), *w["a2"])


def _inputs(s, budget, items, gen, attn):
    """prepare_encoder_cudagraph_capture_inputs: k images, each one aligner row of ceil(B / k) r x r windows."""
    r, half = s["r"], s["dim"] // s["heads"] // 2
    rows, cols = r, r * -(-budget // items)
    inv_freq = s["theta"] ** -(torch.arange(0, half, 2, dtype=torch.float32) / half)
    ys, xs = torch.arange(rows).repeat_interleave(cols), torch.arange(cols).repeat(rows)
    angles = torch.cat([ys[:, None] * inv_freq, xs[:, None] * inv_freq], dim=-1).repeat(items, 1)
    # Each window's patches, windows in reading order, then row by row inside a window.
    top = torch.arange(rows // r).repeat_interleave(cols // r)[:, None] * r
    left = torch.arange(cols // r).repeat(rows // r)[:, None] * r
    inside = torch.arange(r * r)
    one_image = (top + inside // r) * cols + left + inside % r
    gather = torch.cat([one_image + i * rows * cols for i in range(items)])
    varlen = attn == "varlen"
    return {
        "patches": torch.randn(items * rows * cols, 3, s["patch"], s["patch"], generator=gen).to(
            common.DEVICE, torch.bfloat16
        ),
        "cos": angles.cos()[:, None].to(common.DEVICE),
        "sin": angles.sin()[:, None].to(common.DEVICE),
        "gather": gather.to(common.DEVICE),
        "keep": torch.ones(gather.shape[0], r * r, 1, device=common.DEVICE, dtype=torch.bfloat16),
        "lengths": () if varlen else (rows * cols,) * items,
        "cu_seqlens": (
            torch.arange(0, items + 1, dtype=torch.int32).mul_(rows * cols).to(common.DEVICE) if varlen else None
        ),
        "max_seqlen": rows * cols,  # the longest image
    }


def build(data, budgets, items, gen, attn="sdpa"):
    """k images a budget, each a patch grid of r x (r * ceil(B / k)); the ViT over the packed batch (per
    image with sdpa, one flash kernel with varlen), then the merge as a gather with a mask and the projector."""
    s = _sizes(data)
    w = _weights(s)

    def forward(patches, cos, sin, gather, keep, lengths, cu_seqlens, max_seqlen):
        seg = {"cos": cos, "sin": sin, "lengths": lengths, "cu_seqlens": cu_seqlens, "max_seqlen": max_seqlen}
        x = _vit(w, s["heads"], patches, seg)
        return _align(w, s["r"], x, gather, keep)

    return forward, [_inputs(s, budget, items, gen, attn) for budget in budgets], items
