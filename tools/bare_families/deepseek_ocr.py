"""DeepSeek-OCR's SAM ViT-B, CLIP-L and linear projector on two paths, as vLLM's encoder graph manager
captures them (DeepseekOCRForCausalLM._batched_encoder_forward_global_path and _local_path, with
deepencoder.py and clip.py), written with torch alone (and the Triton that ships with it).

Each function follows one of vLLM's forwards statement for statement, so that every tensor dies when it
dies there: a module's argument lives until the module returns (nn.Module's call holds it), so functions
standing for modules keep their first argument. The global SAM blocks run vLLM's fused attention (a
Triton kernel with the relative-position bias added to each score, restated here),
which allocates its output and nothing else; the windowed blocks pass the bias as sdpa's mask; CLIP runs
vLLM's TORCH_SDPA encoder attention; quick GELU is vLLM's fused kernel, one tensor made."""

import functools
import math

import torch
import torch.nn.functional as F

from bare_families import common
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


def _rel_pos(q_size, k_size, rel_pos):
    """get_rel_pos."""
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        dtype = rel_pos.dtype
        rel_pos = rel_pos.to(torch.float32)
        resized = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist,
                                mode="linear").to(dtype)  # fmt: skip
        resized = resized.reshape(-1, max_rel_dist).permute(1, 0)
    else:
        resized = rel_pos
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative_coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return resized[relative_coords.long()]


def _decomposed_rel_pos(q, rel_pos_h, rel_pos_w, size):
    """add_decomposed_rel_pos, queries and keys on the same (h, w) grid."""
    h, w = size
    Rh, Rw = _rel_pos(h, h, rel_pos_h), _rel_pos(w, w, rel_pos_w)
    B, _, dim = q.shape
    r_q = q.reshape(B, h, w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    rel_h = rel_h.unsqueeze(-1)
    rel_w = rel_w.unsqueeze(-2)
    rel_h = rel_h.reshape(B, h * w, h, 1)
    rel_w = rel_w.reshape(B, h * w, 1, w)
    return rel_h, rel_w


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(q_ptr, k_ptr, v_ptr, rh_ptr, rw_ptr, o_ptr, scale, n, heads, cols: tl.constexpr,
               sq0, sq1, sq2, sq3, sk0, sk1, sk2, sk3, sv0, sv1, sv2, sv3,
               sh0, sh1, sh2, sh3, sw0, sw1, sw2, sw3, so0, so1, so2, so3,
               BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):  # fmt: skip
        b, h = tl.program_id(1) // heads, tl.program_id(1) % heads
        m = tl.program_id(0) * BM + tl.arange(0, BM)
        d, m_ok = tl.arange(0, BD), m < n
        q = tl.load(q_ptr + b * sq0 + h * sq1 + m[:, None] * sq2 + d[None, :] * sq3, mask=m_ok[:, None], other=0.0)
        best, total = tl.full([BM], -float("inf"), tl.float32), tl.zeros([BM], tl.float32)
        acc = tl.zeros([BM, BD], tl.float32)
        rh_row, rw_row = rh_ptr + b * sh0 + h * sh1 + m[:, None] * sh2, rw_ptr + b * sw0 + h * sw1 + m[:, None] * sw2
        for start in range(0, n, BN):
            j = start + tl.arange(0, BN)
            j_ok = j < n
            ok = m_ok[:, None] & j_ok[None, :]
            k = tl.load(k_ptr + b * sk0 + h * sk1 + j[None, :] * sk2 + d[:, None] * sk3, mask=j_ok[None, :], other=0.0)
            bias = tl.load(rh_row + (j[None, :] // cols) * sh3, mask=ok, other=0.0)
            bias += tl.load(rw_row + (j[None, :] % cols) * sw3, mask=ok, other=0.0)
            s = tl.where(ok, (tl.dot(q, k) * scale + bias) * 1.4426950408889634, -float("inf"))
            new = tl.maximum(best, tl.max(s, axis=1))
            p, alpha = tl.math.exp2(s - new[:, None]), tl.math.exp2(best - new)
            total = total * alpha + tl.sum(p, axis=1)
            v = tl.load(v_ptr + b * sv0 + h * sv1 + j[:, None] * sv2 + d[None, :] * sv3, mask=j_ok[:, None], other=0.0)
            acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
            best = new
        out = o_ptr + b * so0 + h * so1 + m[:, None] * so2 + d[None, :] * so3
        tl.store(out, acc / total[:, None], mask=m_ok[:, None])

    return kernel


def _fused_attention(q, k, v, rel_h, rel_w, width, scale):
    """deepencoder_rel_pos_attention: torch.empty_like(q) filled by one Triton kernel, nothing else made;
    the tensors are read through their strides (the einsum's bias terms are not contiguous)."""
    output = torch.empty_like(q)
    if not q.is_meta:
        batch, heads, tokens, dim = q.shape
        strides = [s for t in (q, k, v, rel_h, rel_w, output) for s in t.stride()]
        _kernel()[((tokens + 63) // 64, batch * heads)](q, k, v, rel_h, rel_w, output, scale, tokens, heads,
                                                         width, *strides, BM=64, BN=64, BD=dim)  # fmt: skip
    return output


def _rel_attention(x, b, heads, fused, attn):
    """RelPosAttention.forward."""
    B, H, W, _ = x.shape
    qkv = F.linear(x, *b["qkv"]).reshape(B, H * W, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * heads, H * W, -1).unbind(0)
    rel_h, rel_w = _decomposed_rel_pos(q, b["rel_h"], b["rel_w"], (H, W))
    q, k, v = (t.view(B, heads, H * W, -1) for t in (q, k, v))
    rel_h, rel_w = (t.view(B, heads, t.size(1), t.size(2), t.size(3)) for t in (rel_h, rel_w))
    scale = q.shape[-1] ** -0.5
    if fused and attn == "sdpa":
        out = _fused_attention(q, k, v, rel_h.squeeze(-1), rel_w.squeeze(-2), W, scale)
    else:
        bias = (rel_h + rel_w).view(B, heads, rel_h.size(2), rel_h.size(3) * rel_w.size(4))
        if attn == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            out = ((q * scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1) @ v
    out = out.view(B, heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return F.linear(out, *b["proj"])


def _partition(x, n):
    """window_partition."""
    B, H, W, C = x.shape
    pad_h, pad_w = (n - H % n) % n, (n - W % n) % n
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // n, n, Wp // n, n, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, n, n, C), (Hp, Wp)


def _unpartition(windows, n, pad_hw, hw):
    """window_unpartition."""
    (Hp, Wp), (H, W) = pad_hw, hw
    B = windows.shape[0] // (Hp * Wp // n // n)
    x = windows.view(B, Hp // n, Wp // n, n, n, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :].contiguous()
    return x


def _ln2d(x, weight, bias):
    """LayerNorm2d.forward."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + 1e-6)
    return weight[:, None, None] * x + bias[:, None, None]


def _sam(sam, s, attn):
    """ImageEncoderViT.forward with its Block.forward."""
    sw = sam["width"]

    def mlp(h, b):  # MLPBlock.forward
        return F.linear(F.gelu(F.linear(h, *b["lin1"])), *b["lin2"])

    def block(x, b):
        shortcut = x
        x = F.layer_norm(x, (sw,), *b["ln1"], eps=1e-6)
        if b["window"]:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = _partition(x, b["window"])
        x = _rel_attention(x, b, sam["heads"], not b["window"], attn)
        if b["window"]:
            x = _unpartition(x, b["window"], pad_hw, (H, W))
        x = shortcut + x
        x = x + mlp(F.layer_norm(x, (sw,), *b["ln2"], eps=1e-6), b)
        return x

    def neck(input):  # the nn.Sequential neck
        conv1, norm1, conv2, norm2 = s["neck"]
        for step in (lambda t: F.conv2d(t, conv1), lambda t: _ln2d(t, *norm1),
                     lambda t: F.conv2d(t, conv2, padding=1), lambda t: _ln2d(t, *norm2)):  # fmt: skip
            input = step(input)
        return input

    def forward(x):
        x = F.conv2d(x, *s["patch"], stride=16).permute(0, 2, 3, 1)
        x = x + _sam_pos(s["pos"], x.size(1))
        for b in s["blocks"]:
            x = block(x, b)
        neck_output = neck(x.permute(0, 3, 1, 2))
        conv2_output = F.conv2d(neck_output, s["net_2"], stride=2, padding=1)
        conv3_output = F.conv2d(conv2_output, s["net_3"], stride=2, padding=1)
        return conv3_output

    return forward


def _sam_pos(abs_pos, tgt_size):
    """ImageEncoderViT.get_abs_pos."""
    if abs_pos.size(1) == tgt_size:
        return abs_pos
    old = abs_pos.permute(0, 3, 1, 2)
    old = old.to(torch.float32)
    new = F.interpolate(old, size=(tgt_size, tgt_size), mode="bicubic", antialias=True, align_corners=False)
    new = new.to(abs_pos.dtype)
    return new.permute(0, 2, 3, 1)


def _clip_pos(abs_pos, tgt_size):
    """DeepCLIPVisionEmbeddings.get_abs_pos."""
    dim = abs_pos.size(-1)
    abs_pos_new = abs_pos.squeeze(0)
    cls_token, old = abs_pos_new[:1], abs_pos_new[1:]
    src_size, tgt_size = int(math.sqrt(abs_pos_new.shape[0] - 1)), int(math.sqrt(tgt_size))
    if src_size == tgt_size:
        return abs_pos
    old = old.view(1, src_size, src_size, dim).permute(0, 3, 1, 2).contiguous()
    old = old.to(torch.float32)
    new = F.interpolate(old, size=(tgt_size, tgt_size), mode="bicubic", antialias=True, align_corners=False)
    new = new.to(abs_pos.dtype)
    new = new.permute(0, 2, 3, 1).view(tgt_size * tgt_size, dim)
    return torch.cat([cls_token, new], dim=0).view(1, tgt_size * tgt_size + 1, dim)


def _quick_gelu(x):
    """vLLM's QuickGELU on CUDA: its fused kernel writes into one torch.empty_like(x)."""
    out = torch.mul(x, 1.702)
    out.sigmoid_()
    return out.mul_(x)


def _clip(clip, c, attn):
    """DeepCLIPVisionTransformer.forward: embeddings, pre-norm, CLIPEncoder (its input kept to the end)."""
    cw, heads, eps = clip["width"], clip["heads"], clip["eps"]

    def attention(h, b):  # CLIPAttention with MMEncoderAttention's TORCH_SDPA path
        qkv_states = F.linear(h, *b["qkv"])
        bsz, q_len = qkv_states.shape[:2]
        q, k, v = (t.view(bsz, q_len, heads, -1).permute(0, 2, 1, 3) for t in qkv_states.chunk(3, dim=-1))
        if attn == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        out = out.permute(0, 2, 1, 3).contiguous().reshape(bsz, q_len, -1)
        return F.linear(out, *b["out"])

    def mlp(h, b):  # CLIPMLP.forward
        return F.linear(_quick_gelu(F.linear(h, *b["fc1"])), *b["fc2"])

    def layer(hidden_states, b):  # CLIPEncoderLayer.forward
        residual = hidden_states
        hidden_states = attention(F.layer_norm(hidden_states, (cw,), *b["ln1"], eps=eps), b)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = mlp(F.layer_norm(hidden_states, (cw,), *b["ln2"], eps=eps), b)
        return residual + hidden_states

    def forward(pixel_values, patch_embeds):
        patch_embeds = patch_embeds.flatten(2).transpose(1, 2)
        embeddings = torch.cat([c["cls"].expand(pixel_values.shape[0], 1, -1), patch_embeds], dim=1)
        embeddings = embeddings + _clip_pos(F.embedding(c["ids"], c["pos"]), embeddings.size(1))
        hidden = F.layer_norm(embeddings, (cw,), *c["pre"], eps=eps)
        del embeddings
        hidden_states = hidden
        for b in c["layers"]:
            hidden_states = layer(hidden_states, b)
        return hidden_states

    return forward


def _weights(sam, clip, n_embed, gen):
    def weight(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to(common.DEVICE, torch.bfloat16)

    def ln(width):
        return (weight(width) + 1, weight(width))

    sw, cw, out, (middle, last) = sam["width"], clip["width"], sam["out"], sam["down"]
    s = {"patch": (weight(sw, 3, 16, 16), weight(sw)), "pos": weight(1, 64, 64, sw),
         "neck": (weight(out, sw, 1, 1), ln(out), weight(out, out, 3, 3), ln(out)),
         "net_2": weight(middle, out, 3, 3), "net_3": weight(last, middle, 3, 3)}  # fmt: skip
    s["blocks"] = []
    for i in range(sam["layers"]):
        window = 0 if i in sam["globals"] else sam["window"]
        side = 2 * (window or 64) - 1
        block = {"window": window, "ln1": ln(sw), "ln2": ln(sw), "qkv": (weight(3 * sw, sw), weight(3 * sw)),
                 "proj": (weight(sw, sw), weight(sw)), "rel_h": weight(side, sw // sam["heads"]),
                 "rel_w": weight(side, sw // sam["heads"]), "lin1": (weight(sam["mlp"], sw), weight(sam["mlp"])),
                 "lin2": (weight(sw, sam["mlp"]), weight(sw))}  # fmt: skip
        s["blocks"].append(block)
    c = {"cls": weight(cw), "pos": weight(clip["grid"] ** 2 + 1, cw), "pre": ln(cw),
         "ids": torch.arange(clip["grid"] ** 2 + 1, device=common.DEVICE).expand((1, -1))}  # fmt: skip
    c["layers"] = [
        {"ln1": ln(cw), "ln2": ln(cw), "qkv": (weight(3 * cw, cw), weight(3 * cw)), "out": (weight(cw, cw), weight(cw)),
         "fc1": (weight(clip["hidden"], cw), weight(clip["hidden"])), "fc2": (weight(cw, clip["hidden"]), weight(cw))}
        for _ in range(clip["layers"])
    ]  # fmt: skip
    return s, c, (weight(n_embed, cw + sam["down"][1]), weight(n_embed)), weight(n_embed)


def build(data, budgets, items, gen, attn="sdpa"):
    """Global: min(B // 272, k) views of 1024 px (16 x 16 tokens and a newline per row, in the graph);
    local: B // 100 crops of 640 px; each path from one item doubling to the largest budget, plus it,
    global first, largest first."""
    sam, clip, n_embed = _sizes(data)
    s, c, projector, newline = _weights(sam, clip, n_embed, gen)
    sam_model, vision_model = _sam(sam, s, attn), _clip(clip, c, attn)

    def forward(pixel_values):  # _batched_encoder_forward_global_path / _local_path
        bsz = pixel_values.shape[0]
        features_1 = sam_model(pixel_values)
        features_2 = vision_model(pixel_values, features_1)
        features = torch.cat((features_2[:, 1:], features_1.flatten(2).permute(0, 2, 1)), dim=-1)
        features = F.linear(features, *projector)
        if pixel_values.shape[-1] != GLOBAL:
            return features.view(-1, features.shape[-1])
        side, dim = features_1.shape[-1], features.shape[-1]
        features = features.view(bsz, side, side, dim)
        features = torch.cat([features, newline.view(1, 1, 1, dim).expand(bsz, side, 1, dim)], dim=2)
        return features.view(-1, dim)

    views_cap = min(budgets[0] // 272, budgets[-1])  # vLLM's default items per batch, as encgraph resolves it
    runs = []
    for size, counts in (
        (GLOBAL, [min(b // 272, views_cap) for b in path_ladder(272, budgets[0])]),
        (LOCAL, [b // 100 for b in path_ladder(100, budgets[0])]),
    ):
        for count in counts:
            pixels = torch.randn(count, 3, size, size, generator=gen)
            runs.append({"pixel_values": pixels.to(common.DEVICE, torch.bfloat16)})
    return forward, runs, views_cap
