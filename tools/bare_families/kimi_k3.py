"""Kimi-K3's MoonViT3d and patchmergerv2 projector (Moonshot's kimi_k3 form), laid out as vLLM 0.33.0's
models/kimi_k3/nvidia/model.py captures them. transformers has no class for this tower, so it is written
here in plain torch, apart from encgraph's, with the operations that decide what is allocated: RMS norms,
a bias-free fused qkv, the rotary embedding applied in place on it, one attention call per block over
the packed images (varlen) or one per image (sdpa, transformers' function), the kh x kw windows gathered
after the last norm, then Linear, GELU, Linear and RMSNorm."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from bare_families import common
from bare_families.common import packed_flash

MODEL_TYPES = ("kimi_k3",)


class _Block(nn.Module):
    def __init__(self, width, heads, head_dim, inner, act, attn):
        super().__init__()
        self.heads, self.head_dim, self.attn, self.act = heads, head_dim, attn, ACT2FN[act]
        self.is_causal, self.num_key_value_groups = False, 1  # what transformers' sdpa function reads
        self.norm0, self.norm1 = nn.RMSNorm(width), nn.RMSNorm(width)
        self.wqkv = nn.Linear(width, 3 * heads * head_dim, bias=False)
        self.wo = nn.Linear(heads * head_dim, width, bias=False)
        self.fc0, self.fc1 = nn.Linear(width, inner, bias=False), nn.Linear(inner, width, bias=False)

    def attend(self, h, cos, sin, cu_seqlens, max_seqlen):
        """vLLM's attention_qkvpacked: qkv and h (the first norm's output) held until wo has run."""
        qkv = self.wqkv(h).view(len(h), 3, self.heads, self.head_dim)
        _rotate(qkv[:, :2], cos[:, None, None], sin[:, None, None])
        q, k, v = (t[None].transpose(1, 2) for t in qkv.unbind(1))
        scale = self.head_dim**-0.5
        if self.attn == "varlen":
            out = packed_flash(self, q, k, v, None, scale, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)[0]
        else:
            lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
            pieces = zip(*(t.split(lengths, dim=2) for t in (q, k, v)), strict=True)
            out = torch.cat(
                [sdpa_attention_forward(self, *p, None, scaling=scale, is_causal=False)[0] for p in pieces], 1
            )
        return self.wo(out.reshape(len(h), -1))

    def mlp(self, h):
        """vLLM's MLP2: h (the second norm's output) held until fc1 has run."""
        return self.fc1(self.act(self.fc0(h)))

    def forward(self, x, cos, sin, cu_seqlens, max_seqlen=None):
        """vLLM's MoonViTEncoderLayer.forward: the attention's tensors gone before the residual add."""
        x = x + self.attend(self.norm0(x), cos, sin, cu_seqlens, max_seqlen)
        return x + self.mlp(self.norm1(x))


def _rotate(qk, cos, sin):
    """q and k rotated in place, pairs interleaved, as vLLM's packed_qk_rope_ (whose kernel keeps no
    copy; here the pairs' first halves are copied, and the copy goes on return)."""
    even, odd = qk.unflatten(-1, (-1, 2)).unbind(-1)
    saved = even.clone()
    even.mul_(cos).addcmul_(odd, sin, value=-1)
    odd.mul_(cos).addcmul_(saved, sin)


class _Tower(nn.Module):
    def __init__(self, v, text_width, attn):
        super().__init__()
        width, heads = v["vt_hidden_size"], v["vt_num_attention_heads"]
        head_dim, act = v["qkv_hidden_size"] // heads, v.get("activation_func", "gelu_pytorch_tanh")
        self.patch = nn.Parameter(torch.randn(width, 3 * v["patch_size"] ** 2) * 0.02)
        self.table = nn.Parameter(torch.randn(v["init_pos_emb_height"], v["init_pos_emb_width"], width))
        inner = v["vt_intermediate_size"]
        self.blocks = nn.ModuleList(
            _Block(width, heads, head_dim, inner, act, attn) for _ in range(v["vt_num_hidden_layers"])
        )
        self.final = nn.RMSNorm(width)
        merged = width * math.prod(v["merge_kernel_size"])
        self.proj = nn.Sequential(
            nn.Linear(merged, merged, bias=False), nn.GELU(), nn.Linear(merged, text_width, bias=False)
        )
        self.post_norm = nn.RMSNorm(text_width, eps=v.get("projector_ln_eps", 1e-5))

    def forward(self, pixel_values, pos_embeds, cos, sin, windows, **segments):
        x = F.linear(pixel_values.flatten(1), self.patch) + pos_embeds
        for block in self.blocks:
            x = block(x, cos, sin, **segments)
        return self.post_norm(self.proj(self.final(x)[windows].flatten(1)))


def _inputs(tower, v, grid, items, gen, attn):
    """One budget's pixels and what vLLM precomputes for them: the table resampled (bilinear), the
    rotary angles (x and y interleaved, head_dim // 4 frequencies), the segments and the window index."""
    _, h, w = grid
    (kh, kw), p = v["merge_kernel_size"], v["patch_size"]
    head_dim = v["qkv_hidden_size"] // v["vt_num_attention_heads"]
    with torch.no_grad():
        table = tower.table
        if (h, w) != tuple(table.shape[:2]):
            table = F.interpolate(table.permute(2, 0, 1)[None], size=(h, w), mode="bilinear")[0].permute(1, 2, 0)
        pos = table.reshape(h * w, -1).repeat(items, 1)
    freqs = 1.0 / (10000 ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))
    rows, cols = torch.arange(h * w).div(w, rounding_mode="floor").float(), torch.arange(h * w).remainder(w).float()
    angles = torch.stack((torch.outer(cols, freqs), torch.outer(rows, freqs)), -1).flatten(1).repeat(items, 1)
    window = torch.arange(h * w).view(h // kh, kh, w // kw, kw).transpose(1, 2).reshape(-1, kh * kw)
    cu_seqlens = torch.arange(items + 1, dtype=torch.int32) * (h * w)
    segments = (
        {"cu_seqlens": cu_seqlens.to(common.DEVICE), "max_seqlen": h * w}
        if attn == "varlen"
        else {"cu_seqlens": cu_seqlens}
    )
    return {
        "pixel_values": torch.randn(items * h * w, 3, p, p, generator=gen).to(common.DEVICE, torch.bfloat16),
        "pos_embeds": pos,
        "cos": angles.cos().to(common.DEVICE),
        "sin": angles.sin().to(common.DEVICE),
        "windows": torch.cat([window + i * h * w for i in range(items)]).to(common.DEVICE),
        **segments,
    }


def build(data, budgets, items, gen, attn="sdpa"):
    """Each budget as vLLM 0.33.0's prepare_encoder_cudagraph_capture_inputs lays it out
    (models/kimi_k3/nvidia/model.py): k items of ceil(B / k) tokens, as near square as the 512 x 512-patch
    RoPE table allows, wo = min(ceil(sqrt(per)), 512 // kw), ho = ceil(per / wo), capped at 512 // kh rows;
    the longest image given to varlen attention (encgraph's plain capture)."""
    v = data["vision_config"]
    kh, kw = v["merge_kernel_size"]
    with torch.device(common.DEVICE):
        tower = _Tower(v, data["text_config"]["hidden_size"], attn).to(torch.bfloat16).eval()
    runs = []
    for budget in budgets:
        per = -(-budget // items)
        wo = min(math.isqrt(per - 1) + 1, 512 // kw)
        ho = -(-per // wo)
        if ho > 512 // kh:
            ho = 512 // kh
            wo = -(-per // ho)
        runs.append(_inputs(tower, v, (1, ho * kh, wo * kw), items, gen, attn))
    return tower, runs, items
