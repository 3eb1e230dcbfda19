"""DeepSeek-OCR's DeepEncoder as vLLM 0.33.0 captures it (DeepseekOCRForCausalLM.encoder_cudagraph_forward,
model_executor/models/deepseek_ocr.py, with deepencoder.py): SAM ViT-B, then CLIP-L run over SAM's
output, the two concatenated and projected; on the global path the image newlines are inserted in
the graph too. Module names are the checkpoint's (model.sam_model.*, model.vision_model.*,
model.projector.*, model.image_newline):

- ``sam_model`` (ImageEncoderViT): patch_embed.proj, pos_embed (64 x 64), blocks.N.{norm1,
  attn.{qkv, proj, rel_pos_h, rel_pos_w}, norm2, mlp.{lin1, lin2}} (windows of 14 but in the global
  blocks), neck.{0..3}, net_2, net_3 (two stride-2 convolutions: 1024 px -> 16 x 16, 640 px -> 10 x 10).
  For another view size the position table and the global blocks' relative-position tables are
  resized inside the graph, as vLLM does.
- ``vision_model`` (DeepCLIPVisionTransformer): embeddings.{class_embedding, patch_embedding (held,
  unused: SAM's output is the patch embedding), position_embedding (257, resized to the grid inside
  the graph)}, pre_layrnorm, transformer.layers.N.{layer_norm1, self_attn.{qkv_proj, out_proj},
  layer_norm2, mlp.{fc1, fc2}} (quick GELU), no final norm.
- ``projector`` (linear) and ``image_newline``.

Attention: vLLM runs the global SAM blocks through its own Triton kernel with the relative-position
bias fused, which never builds the (tokens x tokens) bias. With ``sdpa`` encgraph gets the same
arithmetic from torch's fused kernel without that matrix either: each query carries its two bias
rows (divided by the softmax scale) and each key the one-hot of its row and column, so the
scaled dot product adds exactly the bias. The windowed blocks pass the bias as sdpa's mask, as vLLM
does; ``eager`` builds every score matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..families.deepseek_ocr import GLOBAL_VIEW
from .deepseek_vl2 import MlpProjector, attention

SAM_LN_EPS = 1e-6


def resized_rel_pos(table: torch.Tensor, size: int) -> torch.Tensor:
    """deepencoder.get_rel_pos for equal query and key sides: the table resized (linearly, in float32)
    to 2 * size - 1 distances where it differs, then indexed by query - key: (size, size, head_dim)."""
    distances = 2 * size - 1
    if table.shape[0] != distances:
        resized = F.interpolate(table.float().T[None], size=distances, mode="linear")
        table = resized[0].T.to(table.dtype)
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + size - 1]


def rel_pos_attention(q, k, v, rel_h, rel_w, attn: str, fused: bool) -> torch.Tensor:
    """Attention over (batch, heads, H * W, head_dim) with the decomposed bias rel_h[query, key row] +
    rel_w[query, key column], both (batch, heads, H * W, H or W). See the module docstring."""
    rows, cols = rel_h.shape[-1], rel_w.shape[-1]
    scale = q.shape[-1] ** -0.5
    if attn == "sdpa" and fused:
        keys = torch.arange(rows * cols, device=q.device)
        one_hot = torch.cat(
            [
                keys[:, None] // cols == torch.arange(rows, device=q.device),
                keys[:, None] % cols == torch.arange(cols, device=q.device),
            ],
            dim=-1,
        ).to(q.dtype)
        q = torch.cat([q, rel_h / scale, rel_w / scale], dim=-1)
        k = torch.cat([k, one_hot.expand(*k.shape[:2], -1, -1)], dim=-1)
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).flatten(-2)
    if attn == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return ((q * scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1) @ v


class RelPosAttention(nn.Module):
    def __init__(self, width: int, heads: int, side: int, attn: str, fused: bool):
        super().__init__()
        self.heads, self.attn, self.fused = heads, attn, fused
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * side - 1, width // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * side - 1, width // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, rows, cols, _ = x.shape
        qkv = self.qkv(x).reshape(batch, rows * cols, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (batch, heads, rows * cols, head_dim)
        grid = q.reshape(batch, self.heads, rows, cols, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, resized_rel_pos(self.rel_pos_h, rows))
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, resized_rel_pos(self.rel_pos_w, cols))
        out = rel_pos_attention(q, k, v, rel_h.flatten(2, 3), rel_w.flatten(2, 3), self.attn, self.fused)
        return self.proj(out.reshape(batch, self.heads, rows, cols, -1).permute(0, 2, 3, 1, 4).reshape(x.shape))


class SamMlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(width, hidden)
        self.lin2 = nn.Linear(hidden, width)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class SamBlock(nn.Module):
    def __init__(self, sam, window: int, attn: str):
        super().__init__()
        width, side = sam.hidden_size, window or sam.image_size // sam.patch_size
        self.window = window
        self.norm1 = nn.LayerNorm(width, eps=SAM_LN_EPS)
        self.attn = RelPosAttention(width, sam.num_attention_heads, side, attn, fused=window == 0)
        self.norm2 = nn.LayerNorm(width, eps=SAM_LN_EPS)
        self.mlp = SamMlp(width, int(width * sam.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, x = x, self.norm1(x)
        if self.window:
            batch, rows, cols, width = x.shape
            n = self.window
            padded = F.pad(x, (0, 0, 0, -cols % n, 0, -rows % n))
            tall, wide = padded.shape[1] // n, padded.shape[2] // n
            windows = padded.view(batch, tall, n, wide, n, width).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, n, width)
            out = self.attn(windows).view(batch, tall, wide, n, n, width).permute(0, 1, 3, 2, 4, 5)
            x = out.reshape(batch, tall * n, wide * n, width)[:, :rows, :cols]
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt((x - mean).pow(2).mean(1, keepdim=True) + SAM_LN_EPS)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SamPatchEmbed(nn.Module):
    def __init__(self, sam):
        super().__init__()
        self.proj = nn.Conv2d(sam.num_channels, sam.hidden_size, kernel_size=sam.patch_size, stride=sam.patch_size)


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

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(pixels).permute(0, 2, 3, 1)
        table = self.pos_embed
        if table.shape[1] != x.shape[1]:
            resized = F.interpolate(
                table.permute(0, 3, 1, 2).float(), size=x.shape[1:3], mode="bicubic", antialias=True
            )
            table = resized.to(table.dtype).permute(0, 2, 3, 1)
        x = x + table
        for block in self.blocks:
            x = block(x)
        return self.net_3(self.net_2(self.neck(x.permute(0, 3, 1, 2))))


class ClipEmbeddings(nn.Module):
    def __init__(self, clip):
        super().__init__()
        width, side = clip.hidden_size, clip.image_size // clip.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.patch_embedding = nn.Conv2d(clip.num_channels, width, clip.patch_size, clip.patch_size, bias=False)
        self.position_embedding = nn.Embedding(side * side + 1, width)
        self.register_buffer("position_ids", torch.arange(side * side + 1)[None], persistent=False)

    def forward(self, patch_embeds: torch.Tensor) -> torch.Tensor:
        """SAM's (batch, width, h, w) output as the patch embeddings, the class token first, and the
        position table (its class row kept, its grid resized bicubically in float32 where h differs)."""
        patches = patch_embeds.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_embedding.expand(patches.shape[0], 1, -1), patches], dim=1)
        table = self.position_embedding(self.position_ids)
        side, grid = int((table.shape[1] - 1) ** 0.5), patch_embeds.shape[-1]
        if side != grid:
            old = table[0, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
            new = F.interpolate(old, size=(grid, grid), mode="bicubic", antialias=True).to(table.dtype)
            table = torch.cat([table[0, :1], new.permute(0, 2, 3, 1).reshape(grid * grid, -1)])[None]
        return tokens + table


class ClipAttention(nn.Module):
    def __init__(self, width: int, heads: int, attn: str):
        super().__init__()
        self.heads, self.attn = heads, attn
        self.qkv_proj = nn.Linear(width, width * 3)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = (
            part.reshape(batch, tokens, self.heads, -1).transpose(1, 2) for part in self.qkv_proj(x).chunk(3, dim=-1)
        )
        return self.out_proj(attention(q, k, v, self.attn).transpose(1, 2).reshape(batch, tokens, width))


class ClipMlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        return self.fc2(x * torch.sigmoid(1.702 * x))  # quick GELU, CLIP's activation


class ClipLayer(nn.Module):
    def __init__(self, clip, attn: str):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(clip.hidden_size, eps=clip.layer_norm_eps)
        self.self_attn = ClipAttention(clip.hidden_size, clip.num_attention_heads, attn)
        self.layer_norm2 = nn.LayerNorm(clip.hidden_size, eps=clip.layer_norm_eps)
        self.mlp = ClipMlp(clip.hidden_size, clip.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipTransformer(nn.Module):
    def __init__(self, clip, attn: str):
        super().__init__()
        self.layers = nn.ModuleList(ClipLayer(clip, attn) for _ in range(clip.num_hidden_layers))


class ClipVision(nn.Module):
    def __init__(self, clip, attn: str):
        super().__init__()
        self.embeddings = ClipEmbeddings(clip)
        self.pre_layrnorm = nn.LayerNorm(clip.hidden_size, eps=clip.layer_norm_eps)
        self.transformer = ClipTransformer(clip, attn)

    def forward(self, sam_features: torch.Tensor) -> torch.Tensor:
        x = self.pre_layrnorm(self.embeddings(sam_features))
        for layer in self.transformer.layers:
            x = layer(x)
        return x


class DeepseekOcrTower(nn.Module):
    """The captured module. Global views (1024 px): (views * 16 * 17, n_embed), newlines in place;
    local crops: (crops * 10 * 10, n_embed), newlines left to after the graph."""

    def __init__(self, config, dtype: torch.dtype, attn: str):
        super().__init__()
        vision = config.vision_config
        self.sam_model = SamEncoder(vision.sam_config, attn).to(dtype)
        self.vision_model = ClipVision(vision.clip_config, attn).to(dtype)
        self.projector = MlpProjector(config.projector_config).to(dtype)
        self.image_newline = nn.Parameter(torch.zeros(config.projector_config.n_embed, dtype=dtype))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        sam = self.sam_model(pixel_values)
        clip = self.vision_model(sam)
        features = self.projector(torch.cat([clip[:, 1:], sam.flatten(2).permute(0, 2, 1)], dim=-1))
        batch, _, width = features.shape
        if pixel_values.shape[-1] != GLOBAL_VIEW:
            return features.reshape(-1, width)
        side = sam.shape[-1]
        grid = features.view(batch, side, side, width)
        newlines = self.image_newline.view(1, 1, 1, width).expand(batch, side, 1, width)
        return torch.cat([grid, newlines], dim=2).view(-1, width)
