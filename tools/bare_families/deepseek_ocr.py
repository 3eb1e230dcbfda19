"""DeepSeek-OCR's SAM ViT-B, CLIP-L and linear projector on two paths, as vLLM's encoder graph manager
captures them (deepseek_ocr.py with deepencoder.py), written with torch alone. The global SAM blocks add
their relative-position bias inside one fused attention call (each query carries its bias rows over the
softmax scale, each key the one-hot of its row and column), never building the tokens x tokens bias, as
vLLM's Triton kernel does not; the windowed blocks pass it as sdpa's mask, as vLLM does."""

import torch
import torch.nn.functional as F

from bare_families.common import path_ladder

MODEL_TYPES = ("deepseek_ocr", "unlimited-ocr", "unlimited_ocr")
GLOBAL, LOCAL = 1024, 640  # vLLM's BASE_SIZE and IMAGE_SIZE
SAM_B = {"width": 768, "layers": 12, "heads": 12, "mlp": 3072, "window": 14, "globals": (2, 5, 8, 11), "out": 256,
         "down": (512, 1024)}  # fmt: skip
CLIP_L = {"width": 1024, "hidden": 4096, "layers": 24, "heads": 16, "grid": 16, "eps": 1e-5}


def _sizes(data):
    if "language_config" in data:  # DeepSeek's own form: the encoder vLLM builds whatever it says
        return dict(SAM_B), dict(CLIP_L), data["projector_config"]["n_embed"]
    s, c = data["vision_config"]["sam_config"], data["vision_config"]["clip_config"]
    sam = {"width": s["hidden_size"], "layers": s["num_hidden_layers"], "heads": s["num_attention_heads"],
           "mlp": int(s["hidden_size"] * s.get("mlp_ratio", 4.0)), "window": s["window_size"],
           "globals": tuple(s["global_attn_indexes"]), "out": s["output_channels"],
           "down": tuple(s["downsample_channels"])}  # fmt: skip
    clip = {"width": c["hidden_size"], "hidden": c["intermediate_size"], "layers": c["num_hidden_layers"],
            "heads": c["num_attention_heads"], "grid": c["image_size"] // c["patch_size"],
            "eps": c.get("layer_norm_eps", 1e-5)}  # fmt: skip
    return sam, clip, data["projector_config"]["n_embed"]


def _rel_table(table, size):
    distances = 2 * size - 1
    if table.shape[0] != distances:
        table = F.interpolate(table.float().T[None], size=distances, mode="linear")[0].T.to(table.dtype)
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + size - 1]


def _rel_attention(x, b, heads, fused, attn):
    batch, rows, cols, _ = x.shape
    q, k, v = F.linear(x, *b["qkv"]).reshape(batch, rows * cols, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    grid = q.reshape(batch, heads, rows, cols, -1)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, _rel_table(b["rel_h"], rows)).flatten(2, 3)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, _rel_table(b["rel_w"], cols)).flatten(2, 3)
    scale = q.shape[-1] ** -0.5
    if attn == "sdpa" and fused:
        keys = torch.arange(rows * cols, device=x.device)
        one_hot = torch.cat(
            [keys[:, None] // cols == torch.arange(rows, device=x.device),
             keys[:, None] % cols == torch.arange(cols, device=x.device)], dim=-1
        ).to(q.dtype)  # fmt: skip
        q = torch.cat([q, rel_h / scale, rel_w / scale], dim=-1)
        k = torch.cat([k, one_hot.expand(*k.shape[:2], -1, -1)], dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    else:
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2)
        if attn == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            out = ((q * scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1) @ v
    return F.linear(out.reshape(batch, heads, rows, cols, -1).permute(0, 2, 3, 1, 4).reshape(x.shape), *b["proj"])


def _ln2d(x, weight, bias):
    mean = x.mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt((x - mean).pow(2).mean(1, keepdim=True) + 1e-6)
    return weight[:, None, None] * x + bias[:, None, None]


def build(data, budgets, items, gen, attn="sdpa"):
    """Global: min(B // 272, k) views of 1024 px (16 x 16 tokens and a newline per row, in the graph);
    local: B // 100 crops of 640 px; each path from one item doubling to the largest budget, plus it,
    global first, largest first."""
    sam, clip, n_embed = _sizes(data)
    sw, cw = sam["width"], clip["width"]

    def weight(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to("cuda", torch.bfloat16)

    def ln(width):
        return (weight(width) + 1, weight(width))

    out, (middle, last) = sam["out"], sam["down"]
    s = {
        "patch": (weight(sw, 3, 16, 16), weight(sw)),
        "pos": weight(1, 64, 64, sw),
        "neck": (weight(out, sw, 1, 1), ln(out), weight(out, out, 3, 3), ln(out)),
        "net_2": weight(middle, out, 3, 3),
        "net_3": weight(last, middle, 3, 3),
    }
    s["blocks"] = []
    for i in range(sam["layers"]):
        window = 0 if i in sam["globals"] else sam["window"]
        side = 2 * (window or 64) - 1
        s["blocks"].append(
            {
                "window": window,
                "ln1": ln(sw),
                "ln2": ln(sw),
                "qkv": (weight(3 * sw, sw), weight(3 * sw)),
                "proj": (weight(sw, sw), weight(sw)),
                "rel_h": weight(side, sw // sam["heads"]),
                "rel_w": weight(side, sw // sam["heads"]),
                "lin1": (weight(sam["mlp"], sw), weight(sam["mlp"])),
                "lin2": (weight(sw, sam["mlp"]), weight(sw)),
            }
        )
    c = {"cls": weight(cw), "pos": weight(clip["grid"] ** 2 + 1, cw), "pre": ln(cw),
         "ids": torch.arange(clip["grid"] ** 2 + 1, device="cuda")[None]}  # fmt: skip
    c["layers"] = [
        {"ln1": ln(cw), "ln2": ln(cw), "qkv": (weight(3 * cw, cw), weight(3 * cw)), "out": (weight(cw, cw), weight(cw)),
         "fc1": (weight(clip["hidden"], cw), weight(clip["hidden"])), "fc2": (weight(cw, clip["hidden"]), weight(cw))}
        for _ in range(clip["layers"])
    ]  # fmt: skip
    projector, newline = (weight(n_embed, cw + sam["down"][1]), weight(n_embed)), weight(n_embed)

    def sam_forward(pixels):
        x = F.conv2d(pixels, *s["patch"], stride=16).permute(0, 2, 3, 1)
        table = s["pos"]
        if table.shape[1] != x.shape[1]:
            table = F.interpolate(table.permute(0, 3, 1, 2).float(), size=x.shape[1:3], mode="bicubic", antialias=True)
            table = table.to(torch.bfloat16).permute(0, 2, 3, 1)
        x = x + table
        for b in s["blocks"]:
            shortcut, h = x, F.layer_norm(x, (sw,), *b["ln1"], eps=1e-6)
            if b["window"]:
                batch, rows, cols, _ = h.shape
                n = b["window"]
                padded = F.pad(h, (0, 0, 0, -cols % n, 0, -rows % n))
                tall, wide = padded.shape[1] // n, padded.shape[2] // n
                windows = padded.view(batch, tall, n, wide, n, sw).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, n, sw)
                out = _rel_attention(windows, b, sam["heads"], False, attn)
                out = out.view(batch, tall, wide, n, n, sw).permute(0, 1, 3, 2, 4, 5)
                h = out.reshape(batch, tall * n, wide * n, sw)[:, :rows, :cols]
            else:
                h = _rel_attention(h, b, sam["heads"], True, attn)
            x = shortcut + h
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (sw,), *b["ln2"], eps=1e-6), *b["lin1"])), *b["lin2"])
        conv1, norm1, conv2, norm2 = s["neck"]
        x = _ln2d(F.conv2d(_ln2d(F.conv2d(x.permute(0, 3, 1, 2), conv1), *norm1), conv2, padding=1), *norm2)
        return F.conv2d(F.conv2d(x, s["net_2"], stride=2, padding=1), s["net_3"], stride=2, padding=1)

    def clip_forward(features):
        patches = features.flatten(2).transpose(1, 2)
        x = torch.cat([c["cls"].expand(patches.shape[0], 1, -1), patches], dim=1)
        table, grid = F.embedding(c["ids"], c["pos"]), features.shape[-1]
        if grid != clip["grid"]:
            old = table[0, 1:].reshape(1, clip["grid"], clip["grid"], -1).permute(0, 3, 1, 2).float()
            new = F.interpolate(old, size=(grid, grid), mode="bicubic", antialias=True).to(torch.bfloat16)
            table = torch.cat([table[0, :1], new.permute(0, 2, 3, 1).reshape(grid * grid, -1)])[None]
        x = F.layer_norm(x + table, (cw,), *c["pre"], eps=clip["eps"])
        batch, tokens, _ = x.shape
        for b in c["layers"]:
            h = F.linear(F.layer_norm(x, (cw,), *b["ln1"], eps=clip["eps"]), *b["qkv"])
            q, k, v = (p.reshape(batch, tokens, clip["heads"], -1).transpose(1, 2) for p in h.chunk(3, dim=-1))
            if attn == "sdpa":
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                out = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
            x = x + F.linear(out.transpose(1, 2).reshape(batch, tokens, cw), *b["out"])
            h = F.linear(F.layer_norm(x, (cw,), *b["ln2"], eps=clip["eps"]), *b["fc1"])
            x = x + F.linear(h * torch.sigmoid(1.702 * h), *b["fc2"])
        return x

    def forward(pixel_values):
        features = sam_forward(pixel_values)
        hidden = clip_forward(features)
        out = F.linear(torch.cat([hidden[:, 1:], features.flatten(2).permute(0, 2, 1)], dim=-1), *projector)
        batch, _, width = out.shape
        if pixel_values.shape[-1] != GLOBAL:
            return out.reshape(-1, width)
        side = features.shape[-1]
        grid = out.view(batch, side, side, width)
        return torch.cat([grid, newline.view(1, 1, 1, width).expand(batch, side, 1, width)], dim=2).view(-1, width)

    views_cap = min(budgets[0] // 272, budgets[-1])  # vLLM's default items per batch, as encgraph resolves it
    runs = []
    for size, counts in (
        (GLOBAL, [min(b // 272, views_cap) for b in path_ladder(272, budgets[0])]),
        (LOCAL, [b // 100 for b in path_ladder(100, budgets[0])]),
    ):
        for count in counts:
            runs.append({"pixel_values": torch.randn(count, 3, size, size, generator=gen).to("cuda", torch.bfloat16)})
    return forward, runs, views_cap
