"""DeepSeek-OCR's DeepEncoder as vLLM 0.33.0 captures it (DeepseekOCRForCausalLM.encoder_cudagraph_forward,
model_executor/models/deepseek_ocr.py, with deepencoder.py and clip.py): SAM ViT-B, then CLIP-L over SAM's
output, the two concatenated and projected; on the global path the newlines are inserted in the graph.
Module names are the checkpoint's (model.sam_model.*, model.vision_model.*, model.projector.*,
model.image_newline; CLIP's patch_embedding held, unused: SAM's output is the patch embedding).

Each forward follows vLLM's statement for statement, so that every tensor is made, copied and freed as
there (a module's argument lives until it returns). Attention with ``sdpa`` is vLLM's on CUDA: sdpa with
the relative-position bias as its mask in the windowed SAM blocks; in the global ones vLLM's Triton kernel
with the bias fused (deepencoder_rel_pos_attention, restated in deepencoder_kernel.py), which
allocates its output and nothing else (on the CPU the same attention, the bias built in full, fills that
output); vLLM's TORCH_SDPA encoder attention in CLIP. ``eager`` builds every score matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..families.deepseek_ocr import GLOBAL_VIEW
from .deepencoder_kernel import fused_kernel
from .deepseek_vl2 import MlpProjector, attention

SAM_LN_EPS = 1e-6


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """deepencoder.get_rel_pos: the table resized where it differs, indexed by query - key."""
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        dtype = rel_pos.dtype
        rel_pos = rel_pos.to(torch.float32)
        rel_pos_resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"
        ).to(dtype)
        rel_pos_resized = rel_pos_resized.reshape(-1, max_rel_dist).permute(1, 0)
    else:
        rel_pos_resized = rel_pos
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative_coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos_resized[relative_coords.long()]


def add_decomposed_rel_pos(q, rel_pos_h, rel_pos_w, q_size, k_size):
    """deepencoder.add_decomposed_rel_pos: the terms over key rows (B, HW, k_h, 1) and columns (B, HW, 1, k_w)."""
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)
    B, _, dim = q.shape
    r_q = q.reshape(B, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    rel_h = rel_h.unsqueeze(-1)
    rel_w = rel_w.unsqueeze(-2)
    rel_h = rel_h.reshape(B, q_h * q_w, k_h, 1)
    rel_w = rel_w.reshape(B, q_h * q_w, 1, k_w)
    return rel_h, rel_w


def rel_pos_attention(q, k, v, rel_h, rel_w, width: int, scale: float) -> torch.Tensor:
    """deepencoder_rel_pos_attention: attention with the bias rel_h[query, key row] + rel_w[query, key column];
    the output, made as torch.empty_like(q), is all it allocates."""
    output = torch.empty_like(q)
    batch, heads, tokens, head_dim = q.shape
    if q.is_cuda:
        strides = (s for t in (q, k, v, rel_h, rel_w, output) for s in t.stride())
        fused_kernel()[((tokens + 63) // 64, batch * heads)](
            q, k, v, rel_h, rel_w, output, scale, tokens, heads, width, *strides,
            BLOCK_M=64, BLOCK_N=64, BLOCK_D=head_dim, num_warps=4, num_stages=2,
        )  # fmt: skip
    elif not q.is_meta:
        bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2)
        output.copy_(((q @ k.transpose(-2, -1)) * scale + bias).softmax(dim=-1) @ v)
    return output


class RelPosAttention(nn.Module):
    def __init__(self, width: int, heads: int, side: int, attn: str, fused: bool):
        super().__init__()
        self.num_heads, self.attn, self.fused = heads, attn, fused
        self.scale = (width // heads) ** -0.5
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * side - 1, width // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * side - 1, width // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
        rel_h, rel_w = add_decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        q, k, v = (t.view(B, self.num_heads, H * W, -1) for t in (q, k, v))
        rel_h, rel_w = (t.view(B, self.num_heads, t.size(1), t.size(2), t.size(3)) for t in (rel_h, rel_w))
        if self.fused and self.attn == "sdpa":
            x = rel_pos_attention(q, k, v, rel_h.squeeze(-1), rel_w.squeeze(-2), W, self.scale)
        else:
            attn_bias = (rel_h + rel_w).view(B, self.num_heads, rel_h.size(2), rel_h.size(3) * rel_w.size(4))
            if self.attn == "sdpa":
                x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
            else:
                x = ((q * self.scale) @ k.transpose(-2, -1) + attn_bias).softmax(dim=-1) @ v
        x = x.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        x = self.proj(x)
        return x


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """deepencoder.window_partition: padded (only where needed) and copied into windows."""
    B, H, W, C = x.shape
    pad_h = (window_size - H % window_size) % window_size
    pad_w = (window_size - W % window_size) % window_size
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(windows, window_size: int, pad_hw, hw) -> torch.Tensor:
    """deepencoder.window_unpartition: merged back with a copy, the padding cut off with another."""
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // (Hp * Wp // window_size // window_size)
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :].contiguous()
    return x


class SamMlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(width, hidden)
        self.lin2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class SamBlock(nn.Module):
    def __init__(self, sam, window: int, attn: str):
        super().__init__()
        width, side = sam.hidden_size, window or sam.image_size // sam.patch_size
        self.window_size = window
        self.norm1 = nn.LayerNorm(width, eps=SAM_LN_EPS)
        self.attn = RelPosAttention(width, sam.num_attention_heads, side, attn, fused=window == 0)
        self.norm2 = nn.LayerNorm(width, eps=SAM_LN_EPS)
        self.mlp = SamMlp(width, int(width * sam.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        x = shortcut + x
        x = x + self.mlp(self.norm2(x))
        return x


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + SAM_LN_EPS)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SamPatchEmbed(nn.Module):
    def __init__(self, sam):
        super().__init__()
        self.proj = nn.Conv2d(sam.num_channels, sam.hidden_size, kernel_size=sam.patch_size, stride=sam.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class SamEncoder(nn.Module):
    def __init__(self, sam, attn: str):
        super().__init__()
        side, out, (middle, last) = sam.image_size // sam.patch_size, sam.output_channels, sam.downsample_channels
        self.patch_embed = SamPatchEmbed(sam)
        self.pos_embed = nn.Parameter(torch.zeros(1, side, side, sam.hidden_size))
        self.blocks = nn.ModuleList(
            SamBlock(sam, 0 if i in sam.global_attn_indexes else sam.window_size, attn)
            for i in range(sam.num_hidden_layers)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(sam.hidden_size, out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )
        self.net_2 = nn.Conv2d(out, middle, kernel_size=3, stride=2, padding=1, bias=False)
        self.net_3 = nn.Conv2d(middle, last, kernel_size=3, stride=2, padding=1, bias=False)

    def get_abs_pos(self, abs_pos: torch.Tensor, tgt_size: int) -> torch.Tensor:
        """ImageEncoderViT.get_abs_pos: the table resized (bicubic, antialiased, float32) where it differs."""
        if abs_pos.size(1) == tgt_size:
            return abs_pos
        old = abs_pos.permute(0, 3, 1, 2).to(torch.float32)
        new = F.interpolate(old, size=(tgt_size, tgt_size), mode="bicubic", antialias=True, align_corners=False)
        return new.to(abs_pos.dtype).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageEncoderViT.forward: the last block's output and the neck's live until this returns."""
        x = self.patch_embed(x)
        x = x + self.get_abs_pos(self.pos_embed, x.size(1))
        for blk in self.blocks:
            x = blk(x)
        neck_output = self.neck(x.permute(0, 3, 1, 2))
        conv2_output = self.net_2(neck_output)
        conv3_output = self.net_3(conv2_output)
        return conv3_output


class ClipEmbeddings(nn.Module):
    def __init__(self, clip):
        super().__init__()
        width, side = clip.hidden_size, clip.image_size // clip.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.patch_embedding = nn.Conv2d(clip.num_channels, width, clip.patch_size, clip.patch_size, bias=False)
        self.position_embedding = nn.Embedding(side * side + 1, width)
        self.register_buffer("position_ids", torch.arange(side * side + 1).expand((1, -1)), persistent=False)

    def get_abs_pos(self, abs_pos: torch.Tensor, tgt_size: int) -> torch.Tensor:
        """DeepCLIPVisionEmbeddings.get_abs_pos: the class row kept, the grid resized where it differs."""
        dim = abs_pos.size(-1)
        abs_pos_new = abs_pos.squeeze(0)
        cls_token, old_pos_embed = abs_pos_new[:1], abs_pos_new[1:]
        src_size, tgt_size = int((abs_pos_new.shape[0] - 1) ** 0.5), int(tgt_size**0.5)
        if src_size == tgt_size:
            return abs_pos
        old = old_pos_embed.view(1, src_size, src_size, dim).permute(0, 3, 1, 2).contiguous().to(torch.float32)
        new = F.interpolate(old, size=(tgt_size, tgt_size), mode="bicubic", antialias=True, align_corners=False)
        new = new.to(abs_pos.dtype).permute(0, 2, 3, 1).view(tgt_size * tgt_size, dim)
        vision_pos_embed = torch.cat([cls_token, new], dim=0)
        return vision_pos_embed.view(1, tgt_size * tgt_size + 1, dim)

    def forward(self, pixel_values: torch.Tensor, patch_embeds: torch.Tensor) -> torch.Tensor:
        batch_size = pixel_values.shape[0]
        patch_embeds = patch_embeds.flatten(2).transpose(1, 2)
        class_embeds = self.class_embedding.expand(batch_size, 1, -1)
        embeddings = torch.cat([class_embeds, patch_embeds], dim=1)
        embeddings = embeddings + self.get_abs_pos(self.position_embedding(self.position_ids), embeddings.size(1))
        return embeddings


class ClipAttention(nn.Module):
    def __init__(self, width: int, heads: int, attn: str):
        super().__init__()
        self.heads, self.attn = heads, attn
        self.qkv_proj = nn.Linear(width, width * 3)
        self.out_proj = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """CLIPAttention with MMEncoderAttention's TORCH_SDPA path (torch_sdpa_wrapper)."""
        qkv_states = self.qkv_proj(hidden_states)
        bsz, q_len = qkv_states.shape[:2]
        q, k, v = (t.view(bsz, q_len, self.heads, -1).permute(0, 2, 1, 3) for t in qkv_states.chunk(3, dim=-1))
        out = attention(q, k, v, self.attn).permute(0, 2, 1, 3).contiguous().reshape(bsz, q_len, -1)
        return self.out_proj(out)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """vLLM's QuickGELU on CUDA, a fused kernel into torch.empty_like(x): one tensor, x * sigmoid(1.702 x)."""
    out = torch.mul(x, 1.702)
    out.sigmoid_()
    out.mul_(x)
    return out


class ClipMlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(hidden_states)))


class ClipLayer(nn.Module):
    def __init__(self, clip, attn: str):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(clip.hidden_size, eps=clip.layer_norm_eps)
        self.self_attn = ClipAttention(clip.hidden_size, clip.num_attention_heads, attn)
        self.layer_norm2 = nn.LayerNorm(clip.hidden_size, eps=clip.layer_norm_eps)
        self.mlp = ClipMlp(clip.hidden_size, clip.intermediate_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.layer_norm1(hidden_states))
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class ClipTransformer(nn.Module):
    def __init__(self, clip, attn: str):
        super().__init__()
        self.layers = nn.ModuleList(ClipLayer(clip, attn) for _ in range(clip.num_hidden_layers))

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """CLIPEncoder.forward: its input embeddings stay referenced (its hidden_states_pool) to the end."""
        hidden_states = inputs_embeds
        for encoder_layer in self.layers:
            hidden_states = encoder_layer(hidden_states)
        return hidden_states


class ClipVision(nn.Module):
    def __init__(self, clip, attn: str):
        super().__init__()
        self.embeddings = ClipEmbeddings(clip)
        self.pre_layrnorm = nn.LayerNorm(clip.hidden_size, eps=clip.layer_norm_eps)
        self.transformer = ClipTransformer(clip, attn)

    def forward(self, pixel_values: torch.Tensor, patch_embeds: torch.Tensor) -> torch.Tensor:
        hidden_states = self.embeddings(pixel_values, patch_embeds)
        hidden_states = self.pre_layrnorm(hidden_states)
        return self.transformer(hidden_states)


class DeepseekOcrTower(nn.Module):
    """The captured module: (views * 16 * 17, n_embed) with the newlines, or (crops * 10 * 10, n_embed)."""

    def __init__(self, config, dtype: torch.dtype, attn: str):
        super().__init__()
        vision = config.vision_config
        self.sam_model = SamEncoder(vision.sam_config, attn).to(dtype)
        self.vision_model = ClipVision(vision.clip_config, attn).to(dtype)
        self.projector = MlpProjector(config.projector_config).to(dtype)
        self.image_newline = nn.Parameter(torch.zeros(config.projector_config.n_embed, dtype=dtype))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """_batched_encoder_forward_global_path for 1024 px views, _local_path otherwise."""
        bsz = pixel_values.shape[0]
        features_1 = self.sam_model(pixel_values)
        features_2 = self.vision_model(pixel_values, features_1)
        features = torch.cat((features_2[:, 1:], features_1.flatten(2).permute(0, 2, 1)), dim=-1)
        features = self.projector(features)
        if pixel_values.shape[-1] != GLOBAL_VIEW:
            return features.view(-1, features.shape[-1])
        side, dim = features_1.shape[-1], features.shape[-1]
        features = features.view(bsz, side, side, dim)
        newline = self.image_newline.view(1, 1, 1, dim).expand(bsz, side, 1, dim)
        features = torch.cat([features, newline], dim=2)
        return features.view(-1, dim)
