"""DeepSeek-VL2's SigLIP so400m and MLP projector over 384 px tiles, as vLLM's encoder graph manager
captures them (deepseek_vl2.py), written with torch alone: timm's forward_features (tiles padded to
whole 14 px patches, the 27 x 27 position table resampled to 28 x 28 in the graph), then 2 x 2 unfold
and the MLP. DeepSeek's own deepseek_vl_v2 form of DeepSeek-OCR goes to bare_families/deepseek_ocr.py."""

import math
from itertools import pairwise

import torch
import torch.nn.functional as F

from bare_families import deepseek_ocr

MODEL_TYPES = ("deepseek_vl2", "deepseek_vl_v2")
# timm's vit_so400m_patch14_siglip_384, which vLLM builds whatever the config's vision_config says.
SO400M = {"width": 1152, "layers": 27, "heads": 16, "hidden": 4304, "size": 384, "patch": 14}


def _sizes(data):
    projector = {"n_embed": 2048, "depth": 2, "mlp_ratio": 1, **data.get("projector_config", {})}
    if "language_config" in data:  # DeepSeek's own form
        return dict(SO400M), projector
    v = data["vision_config"]
    vision = {
        "width": v["hidden_size"],
        "layers": v["num_hidden_layers"],
        "heads": v["num_attention_heads"],
        "hidden": v["intermediate_size"],
        "size": v["image_size"],
        "patch": v["patch_size"],
    }
    return vision, projector


def build(data, budgets, items, gen, attn="sdpa"):
    """ceil(B / 196) tiles per budget B (prepare_encoder_cudagraph_capture_inputs), k not applying;
    one graph per budget, largest first."""
    if "DeepseekOCRForCausalLM" in (data.get("architectures") or ()):
        return deepseek_ocr.build(data, budgets, items, gen, attn)
    vision, projector = _sizes(data)
    width, hidden, patch, size = vision["width"], vision["hidden"], vision["patch"], vision["size"]
    grid = size // patch
    inner = projector["n_embed"] * projector["mlp_ratio"]

    def weight(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to("cuda", torch.bfloat16)

    w = {"patch": weight(width, 3, patch, patch), "patch_bias": weight(width), "pos": weight(1, grid * grid, width)}
    blocks = [
        {
            "ln1": (weight(width) + 1, weight(width)),
            "qkv": (weight(3 * width, width), weight(3 * width)),
            "proj": (weight(width, width), weight(width)),
            "ln2": (weight(width) + 1, weight(width)),
            "fc1": (weight(hidden, width), weight(hidden)),
            "fc2": (weight(width, hidden), weight(width)),
        }
        for _ in range(vision["layers"])
    ]
    norm = (weight(width) + 1, weight(width))
    dims = [4 * width] + [inner] * (projector["depth"] - 1) + [projector["n_embed"]]
    mlp = [(weight(b, a), weight(b)) for a, b in pairwise(dims)]

    def block(x, b):
        batch, tokens, _ = x.shape
        h = F.layer_norm(x, (width,), *b["ln1"], eps=1e-6)
        qkv = F.linear(h, *b["qkv"]).reshape(batch, tokens, 3, vision["heads"], -1).permute(2, 0, 3, 1, 4)
        if attn == "sdpa":
            out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        else:
            out = ((qkv[0] * qkv.shape[-1] ** -0.5) @ qkv[1].transpose(-2, -1)).softmax(-1) @ qkv[2]
        x = x + F.linear(out.transpose(1, 2).reshape(batch, tokens, width), *b["proj"])
        h = F.linear(F.gelu(F.linear(F.layer_norm(x, (width,), *b["ln2"], eps=1e-6), *b["fc1"])), *b["fc2"])
        return x + h

    def forward(pixel_values):
        pixels = F.pad(pixel_values, (0, -size % patch, 0, -size % patch))
        x = F.conv2d(pixels, w["patch"], w["patch_bias"], stride=patch).permute(0, 2, 3, 1)
        batch, rows, cols, _ = x.shape
        table = w["pos"]
        if (rows, cols) != (grid, grid):
            table = table.float().reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
            table = F.interpolate(table, size=(rows, cols), mode="bicubic", antialias=True)
            table = table.permute(0, 2, 3, 1).reshape(1, rows * cols, -1).to(torch.bfloat16)
        x = x.reshape(batch, rows * cols, width) + table
        for b in blocks:
            x = block(x, b)
        x = F.layer_norm(x, (width,), *norm, eps=1e-6)
        side = math.isqrt(x.shape[1])
        x = F.pad(x.reshape(batch, side, side, width), (0, 0, 0, side % 2, 0, side % 2))
        x = F.unfold(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).permute(0, 2, 1)
        for i, layer in enumerate(mlp):
            x = F.linear(F.gelu(x) if i else x, *layer)
        return x

    per_tile = math.ceil(grid / 2) ** 2
    runs = [
        {"pixel_values": torch.randn(-(-b // per_tile), 3, size, size, generator=gen).to("cuda", torch.bfloat16)}
        for b in budgets
    ]
    return forward, runs, max(run["pixel_values"].shape[0] for run in runs)
