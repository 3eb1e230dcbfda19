"""DeepSeek-VL2's vision tower and projector as vLLM 0.33.0 captures them
(DeepseekVLV2ForCausalLM.encoder_cudagraph_forward, model_executor/models/deepseek_vl2.py):
``self.projector(self.vision.forward_features(pixel_values))`` over a batch of 384 x 384 tiles.

- ``vision`` is the SigLIP so400m ViT that vLLM builds with timm
  (``vit_so400m_patch14_siglip_384.webli``, ``dynamic_img_size`` and ``dynamic_img_pad`` on), under
  the checkpoint's own names: patch_embed.proj, pos_embed (27 x 27 positions), blocks.N.{norm1,
  attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, and the attention-pooling head attn_pool.*,
  which the checkpoint holds and forward_features never runs. With dynamic padding a 384 px tile is
  padded to 392 px (28 x 28 patches of 14 px) and the position table is resampled from 27 x 27 to
  28 x 28 (bicubic, antialiased, in float32) inside the graph, as timm does.
- ``projector`` is vLLM's MlpProjector (downsample_mlp_gelu): each 2 x 2 block of patches is unfolded
  into one token (28 x 28 -> 14 x 14 per tile), then Linear, GELU, ..., Linear (projector.layers.N).

The image newlines and the view separator are added after the graph
(DeepseekVLV2ForCausalLM.postprocess_encoder_output), so they are not part of this module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # timm's ViT layer norms


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn: str) -> torch.Tensor:
    """Softmax attention over (batch, heads, tokens, head_dim): torch's fused kernel (``sdpa``, as
    timm and vLLM run it) or the plain product (``eager``)."""
    if attn == "sdpa":
        return F.scaled_dot_product_attention(query, key, value)
    scores = (query * query.shape[-1] ** -0.5) @ key.transpose(-2, -1)
    return scores.softmax(dim=-1) @ value


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, attn: str):
        super().__init__()
        self.heads, self.attn = heads, attn
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """timm's Attention.forward, statement for statement: the attention's output goes when the
        projection is made, the packed q, k and v only when this returns."""
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = attention(q, k, v, self.attn)
        x = x.transpose(1, 2).reshape(batch, tokens, width)
        x = self.proj(x)
        return x


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, attn: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = Attention(width, heads, attn)
        self.norm2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = Mlp(width, hidden)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.attn(self.norm1(hidden))
        return hidden + self.mlp(self.norm2(hidden))


class AttentionPoolLatent(nn.Module):
    """timm's attention-pooling head (``global_pool='map'``): held by the checkpoint and by vLLM's
    model, never run by forward_features, so its parameters count and its forward does not exist."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.latent = nn.Parameter(torch.zeros(1, 1, width))
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, width * 2)
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = Mlp(width, hidden)


class PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int, channels: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(channels, width, kernel_size=patch, stride=patch)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(batch, channels, H, W) -> (batch, rows, cols, width), padding H and W up to whole patches
        on the bottom and right (timm's dynamic_img_pad)."""
        height, width = pixels.shape[-2:]
        pixels = F.pad(pixels, (0, -width % self.patch, 0, -height % self.patch))
        return self.proj(pixels).permute(0, 2, 3, 1)


class SiglipVit(nn.Module):
    """timm's VisionTransformer as vLLM builds it for DeepSeek-VL2 (no class token, no pre-norm)."""

    def __init__(self, vision, attn: str):
        super().__init__()
        width, hidden = vision.hidden_size, vision.intermediate_size
        self.grid = vision.image_size // vision.patch_size  # the position table's side (timm's grid_size)
        self.patch_embed = PatchEmbed(width, vision.patch_size, vision.num_channels)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, width))
        self.blocks = nn.Sequential(
            *(Block(width, vision.num_attention_heads, hidden, attn) for _ in range(vision.num_hidden_layers))
        )
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.attn_pool = AttentionPoolLatent(width, hidden)

    def position_table(self, rows: int, cols: int) -> torch.Tensor:
        """timm's resample_abs_pos_embed: the table resized to the patch grid when it differs."""
        if (rows, cols) == (self.grid, self.grid):
            return self.pos_embed
        table = self.pos_embed.float().reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(rows, cols), mode="bicubic", antialias=True)
        return table.permute(0, 2, 3, 1).reshape(1, rows * cols, -1).to(self.pos_embed.dtype)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """timm's _pos_embed (dynamic_img_size, no class token): the resampled table goes when this
        returns, the patch embedding when the caller drops it."""
        batch, rows, cols, width = x.shape
        pos_embed = self.position_table(rows, cols)
        x = x.view(batch, -1, width)
        x = x + pos_embed
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's forward_features, statement for statement. The blocks run as one nn.Sequential, so
        their input (the embedded patches) stays referenced, here and by the call, until the last
        block returns, and each block's input until the next returns; the blocks' output goes once
        the final norm is made."""
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.blocks(x)
        x = self.norm(x)
        return x


class MlpProjector(nn.Module):
    """vLLM's MlpProjector: ``downsample_mlp_gelu`` (unfold 2 x 2 patches, then an MLP) or ``linear``."""

    def __init__(self, projector):
        super().__init__()
        self.kind, self.ratio = projector.projector_type, projector.downsample_ratio
        if self.kind == "linear":
            self.layers: nn.Module = nn.Linear(projector.input_dim, projector.n_embed)
            return
        inner = projector.n_embed * projector.mlp_ratio
        modules: list[nn.Module] = [nn.Linear(projector.input_dim * self.ratio**2, inner)]
        for _ in range(1, projector.depth - 1):
            modules += [nn.GELU(), nn.Linear(inner, inner)]
        modules += [nn.GELU(), nn.Linear(inner, projector.n_embed)]
        self.layers = nn.Sequential(*modules)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "downsample_mlp_gelu":
            batch, tokens, width = features.shape
            side = math.isqrt(tokens)
            grid = features.reshape(batch, side, side, width)
            if side % self.ratio:  # as vLLM: F.pad copies the grid even when it adds nothing
                grid = F.pad(grid, (0, 0, 0, -side % self.ratio, 0, -side % self.ratio))
            unfolded = F.unfold(grid.permute(0, 3, 1, 2), kernel_size=self.ratio, stride=self.ratio)
            features = unfolded.permute(0, 2, 1)
        return self.layers(features)


class DeepseekVl2Tower(nn.Module):
    """The captured module: SigLIP's forward_features, then the projector; (tiles, 14 x 14, n_embed)."""

    def __init__(self, config, dtype: torch.dtype, attn: str):
        super().__init__()
        self.vision = SiglipVit(config.vision_config, attn).to(dtype)
        self.projector = MlpProjector(config.projector_config).to(dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projector(self.vision.forward_features(pixel_values))


class DeepseekWholeModel(nn.Module):
    """The whole model, for parameter counts only: the captured tower, the image newline and view
    separator, and the language model transformers builds from ``text_config`` (DeepSeek-V2 with
    multi-head latent attention, or with plain multi-head attention as DeepSeek-OCR 2's text model)."""

    def __init__(self, tower: nn.Module, config):
        super().__init__()
        from transformers import DeepseekV2ForCausalLM
        from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextModel

        text, width = config.text_config, config.projector_config.n_embed
        self.tower = tower
        if not hasattr(tower, "image_newline"):  # DeepSeek-OCR's tower inserts the newlines itself
            self.image_newline = nn.Parameter(torch.zeros(width))
        self.view_seperator = nn.Parameter(torch.zeros(width))
        if text.model_type == "deepseek_v2":
            self.language = DeepseekV2ForCausalLM._from_config(text)
        else:
            self.language = DeepseekOcr2TextModel._from_config(text)
            self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
