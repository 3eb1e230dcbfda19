"""DeepSeek-VL2's SigLIP so400m and MLP projector over 384 px tiles, as vLLM's encoder graph manager
captures them (DeepseekVLV2ForCausalLM.encoder_cudagraph_forward: ``self.projector(self.vision.
forward_features(pixel_values))``), written with torch alone: timm 1.0's VisionTransformer.forward_features
(tiles padded to whole 14 px patches, the 27 x 27 position table resampled to 28 x 28 in the graph), then
vLLM's MlpProjector (2 x 2 unfold, padding only a grid the ratio does not divide, and the MLP).

Each function below follows one forward of timm or vLLM statement for statement, so that every tensor
dies when it dies there: a module's argument lives until the module returns (nn.Module's call holds it),
so the functions standing for modules never rebind their first argument; the 27 blocks run as timm's
nn.Sequential does, their first input referenced until the last block returns. DeepSeek's own
deepseek_vl_v2 form of DeepSeek-OCR goes to bare_families/deepseek_ocr.py."""

import math
from itertools import pairwise

import torch
import torch.nn.functional as F

from bare_families import common, deepseek_ocr

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


def _weights(vision, projector, gen):
    width, hidden, patch = vision["width"], vision["hidden"], vision["patch"]
    grid = vision["size"] // patch

    def weight(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to(common.DEVICE, torch.bfloat16)

    w = {"patch": weight(width, 3, patch, patch), "patch_bias": weight(width), "pos": weight(1, grid * grid, width)}
    w["blocks"] = [
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
    w["norm"] = (weight(width) + 1, weight(width))
    inner = projector["n_embed"] * projector["mlp_ratio"]
    dims = [4 * width] + [inner] * (projector["depth"] - 1) + [projector["n_embed"]]
    w["mlp"] = [(weight(b, a), weight(b)) for a, b in pairwise(dims)]
    return w


def _block(vision, attn):
    """timm's Block, Attention and Mlp forwards."""
    width, heads = vision["width"], vision["heads"]

    def attention(h, b):  # Attention.forward; h, its argument, lives until it returns
        batch, tokens, _ = h.shape
        qkv = F.linear(h, *b["qkv"]).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if attn == "sdpa":
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        x = x.transpose(1, 2).reshape(batch, tokens, width)
        x = F.linear(x, *b["proj"])
        return x

    def mlp(h, b):  # Mlp.forward
        x = F.linear(h, *b["fc1"])
        x = F.gelu(x)
        x = F.linear(x, *b["fc2"])
        return x

    def block(x, b):  # Block.forward
        x = x + attention(F.layer_norm(x, (width,), *b["ln1"], eps=1e-6), b)
        x = x + mlp(F.layer_norm(x, (width,), *b["ln2"], eps=1e-6), b)
        return x

    return block


def _vit(vision, w, attn):
    """timm's VisionTransformer.forward_features with dynamic_img_size and dynamic_img_pad."""
    width, patch, grid = vision["width"], vision["patch"], vision["size"] // vision["patch"]
    block = _block(vision, attn)

    def patch_embed(x):  # PatchEmbed.forward: pad to whole patches, project, NHWC
        height, wide = x.shape[-2:]
        x = F.pad(x, (0, (patch - wide % patch) % patch, 0, (patch - height % patch) % patch))
        x = F.conv2d(x, w["patch"], w["patch_bias"], stride=patch)
        return x.permute(0, 2, 3, 1)

    def pos_embed(x):  # _pos_embed with resample_abs_pos_embed (bicubic, antialiased, float32)
        batch, rows, cols, _ = x.shape
        pos = w["pos"]
        if (rows, cols) != (grid, grid):
            pos = pos.float()
            pos = pos.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(rows, cols), mode="bicubic", antialias=True)
            pos = pos.permute(0, 2, 3, 1).reshape(1, -1, width)
            pos = pos.to(torch.bfloat16)
        x = x.view(batch, -1, width)
        x = x + pos
        return x

    def blocks(input):  # nn.Sequential.forward
        for b in w["blocks"]:
            input = block(input, b)
        return input

    def forward_features(x):
        x = patch_embed(x)
        x = pos_embed(x)
        x = blocks(x)
        x = F.layer_norm(x, (width,), *w["norm"], eps=1e-6)
        return x

    return forward_features


def _projector(w):
    """vLLM's MlpProjector.forward (downsample_mlp_gelu, ratio 2) and its nn.Sequential of layers."""

    def layers(input):
        for i, layer in enumerate(w["mlp"]):
            if i:
                input = F.gelu(input)
            input = F.linear(input, *layer)
        return input

    def projector(x):
        bs, hw, input_dim = x.shape
        h = wide = int(hw**0.5)
        pad = 2 - h % 2 if h % 2 else 0
        x = x.reshape(bs, h, wide, input_dim)
        if pad > 0:
            x = F.pad(x, (0, 0, 0, pad, 0, pad), "constant", 0)
        x = x.permute(0, 3, 1, 2)
        x = F.unfold(x, kernel_size=2, stride=2, padding=0)
        x = x.permute(0, 2, 1)
        return layers(x)

    return projector


def build(data, budgets, items, gen, attn="sdpa"):
    """ceil(B / 196) tiles per budget B (prepare_encoder_cudagraph_capture_inputs), k not applying;
    one graph per budget, largest first."""
    if "DeepseekOCRForCausalLM" in (data.get("architectures") or ()):
        return deepseek_ocr.build(data, budgets, items, gen, attn)
    if "DeepseekOCR2ForCausalLM" in (data.get("architectures") or ()):
        raise SystemExit("DeepSeek-OCR 2 in DeepSeek's own form: give transformers' deepseek_ocr2 form instead")
    vision, projector_sizes = _sizes(data)
    size, grid = vision["size"], vision["size"] // vision["patch"]
    w = _weights(vision, projector_sizes, gen)
    forward_features, projector = _vit(vision, w, attn), _projector(w)

    def forward(pixel_values):  # encoder_cudagraph_forward
        features = forward_features(pixel_values)
        return projector(features)

    per_tile = math.ceil(grid / 2) ** 2
    runs = [
        {"pixel_values": torch.randn(-(-b // per_tile), 3, size, size, generator=gen).to(common.DEVICE, torch.bfloat16)}
        for b in budgets
    ]
    return forward, runs, max(run["pixel_values"].shape[0] for run in runs)
