"""MiniCPM-V 2.5, 2.6 and 4.0's vision encoder (MiniCPM-o 2.6's too) as vLLM 0.33.0 captures it:
_MiniCPMVEncoderCudaGraphMixin.encoder_cudagraph_forward (model_executor/models/minicpmv.py) runs the
ViT over a padded batch of slices, then the resampler, and returns query_num tokens per slice.

- The ViT (``vpm``) is SigLIP with NaViT-style patch positions: transformers' Idefics2VisionTransformer
  has its modules under the checkpoint's names (embeddings.patch_embedding / position_embedding,
  encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2},
  post_layernorm). Around its blocks the forward is vLLM's own (idefics2_vision_model.py): the
  position of each patch is bucketed from its fraction of the slice's patch grid (get_position_ids,
  inside the graph) and added in place, and padding is masked in attention by an additive mask
  (apply_encoder_attention_mask). MiniCPM-V 2.5 passes no grid (tgt_sizes=None), so the grid is
  read from the mask as one row of patches. The blocks are transformers' (q, k and v projected
  apart, as the checkpoint stores them, residuals added out of place; vLLM fuses the three
  projections and adds in place), as in encgraph's other transformers towers.
- The resampler is vLLM's Resampler2_5 (transformers has no class for it): learned queries attend
  once to the projected ViT features plus a 2-D sin-cos table of their patch positions, with
  padding as the key padding mask; then a layer norm and a projection. Its parameters are the
  checkpoint's ``resampler.*``: query, kv_proj, attn (torch's MultiheadAttention, as vLLM's),
  ln_q, ln_kv, ln_post, proj. The position table is a buffer, as in the checkpoint's code.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

# Resampler2_5's first position table: 70 x 70 patch positions (minicpmv.py, max_size).
TABLE_SIDE = 70
LN_EPS = 1e-6  # the resampler's layer norms (DEFAULT_LN)


def _sincos(width: int, positions: torch.Tensor) -> torch.Tensor:
    """One axis of the table: sines then cosines of positions x 10000^(-i / (width / 2)), float32."""
    frequencies = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32) / (width / 2))
    angles = positions[..., None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def position_table(width: int, side: int) -> torch.Tensor:
    """get_2d_sincos_pos_embed (resampler.py) as MiniCPM-V 2.5 and later build it: (side, side, width),
    entry [row, col] the column's half of the width, then the row's."""
    axis = torch.arange(side, dtype=torch.float32)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    return torch.cat([_sincos(width // 2, cols), _sincos(width // 2, rows)], dim=-1)


def table_for(grid_side: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """The resampler's table as it stands at capture: 70 x 70 in the model's type, or, where the
    largest patch grid is wider, rebuilt in float32 by vLLM's warm-up (_adjust_pos_cache)."""
    if grid_side <= TABLE_SIDE:
        return position_table(width, TABLE_SIDE).to(dtype)
    return position_table(width, grid_side)


def patch_positions(mask: torch.Tensor, grids: torch.Tensor | None, side: int) -> torch.Tensor:
    """Idefics2VisionEmbeddings.get_position_ids (vLLM) for a (slices, 1, patches) mask: patch i of a
    slice whose grid is h x w sits at row i // w, column i % w; each is bucketed by its fraction of
    h or w into ``side`` buckets. Without grids (MiniCPM-V 2.5) h is the mask's first column and w
    its count of patches. Masked patches take position 0. The steps are vLLM's, in its order, and
    each intermediate is held until the end as there: which of them are alive at once decides the
    segments they take in the graph's pool."""
    flat = mask.view(mask.shape[0], -1)
    boundaries = torch.arange(1 / side, 1.0, 1 / side, device=mask.device)
    if grids is not None:
        rows, cols = grids[:, 0], grids[:, 1]
    else:
        rows, cols = mask[:, :, 0].sum(dim=1), mask[:, 0, :].sum(dim=1)
    rows_at_least_1, cols_at_least_1 = rows.clamp(min=1).unsqueeze(1), cols.clamp(min=1).unsqueeze(1)
    index = torch.arange(flat.shape[-1], device=mask.device)
    row = index.unsqueeze(0) // cols_at_least_1  # the mask has one row: a slice's own width is the stride
    col = index.unsqueeze(0) % cols_at_least_1
    row_fraction, col_fraction = row / rows_at_least_1, col / cols_at_least_1
    bucket_h = torch.bucketize(row_fraction, boundaries, right=True)
    bucket_w = torch.bucketize(col_fraction, boundaries, right=True)
    positions = bucket_h * side + bucket_w
    return torch.where(flat, positions.to(torch.long), 0)


def embed(embeddings: nn.Module, pixel_values, mask: torch.Tensor, grids: torch.Tensor | None, side: int):
    """Idefics2VisionEmbeddings.forward (vLLM): the patch embedding, then the bucketed positions'
    embedding added in place; the position ids are let go once the embeddings are made."""
    patches = embeddings.patch_embedding(pixel_values.to(embeddings.patch_embedding.weight.dtype))
    hidden = patches.flatten(2).transpose(1, 2)
    positions = patch_positions(mask, grids, side)
    hidden += embeddings.position_embedding(positions)
    return hidden


class Resampler(nn.Module):
    """Resampler2_5: ``queries`` learned queries, one cross-attention over the slice's patches."""

    def __init__(self, queries: int, width: int, kv_width: int, grid_side: int, dtype: torch.dtype):
        super().__init__()
        self.query = nn.Parameter(nn.init.trunc_normal_(torch.empty(queries, width, dtype=dtype), std=0.02))
        # BaseResampler: no projection where the ViT is as wide as the language model.
        self.kv_proj = nn.Linear(kv_width, width, bias=False, dtype=dtype) if kv_width != width else nn.Identity()
        self.attn = nn.MultiheadAttention(width, width // 128, dtype=dtype)
        self.ln_q, self.ln_kv, self.ln_post = (nn.LayerNorm(width, eps=LN_EPS, dtype=dtype) for _ in range(3))
        self.proj = nn.Parameter(width**-0.5 * torch.randn(width, width, dtype=dtype))
        self.register_buffer("pos_embed", table_for(grid_side, width, dtype), persistent=False)

    def forward(self, x: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        """Resampler2_5.forward: (slices, patches, kv_width) -> (slices, queries, width), step by step
        as vLLM's, each intermediate held as long as there."""
        slices, patches = x.shape[:2]
        patch_counts = grids[:, 0] * grids[:, 1]
        index = torch.arange(patches, device=x.device).unsqueeze(0)
        cols = grids[:, 1].unsqueeze(1).clamp(min=1)
        row, col = index // cols, index % cols
        row = row.clamp(max=self.pos_embed.shape[0] - 1)
        col = col.clamp(max=self.pos_embed.shape[1] - 1)
        padding = index >= patch_counts.unsqueeze(1)
        positions = self.pos_embed[row, col].to(x.dtype)
        positions = torch.where(padding.unsqueeze(-1), torch.zeros_like(positions), positions).permute(1, 0, 2)
        x = self.kv_proj(x)
        x = self.ln_kv(x).permute(1, 0, 2)
        query = self.ln_q(self.query)
        out = self.attn(query.unsqueeze(1).repeat(1, slices, 1), x + positions, x, key_padding_mask=padding)[0]
        x = out.permute(1, 0, 2)
        x = self.ln_post(x)
        return x @ self.proj


class MiniCPMVEncoder(nn.Module):
    """The ViT and the resampler, as one graph: ``config`` is the family's MiniCPMVConfig."""

    def __init__(self, config, dtype: torch.dtype, attn: str):
        super().__init__()
        self.vpm = Idefics2VisionTransformer._from_config(config.vision_config, dtype=dtype, attn_implementation=attn)
        if config.drop_vision_last_layer:
            self.vpm.encoder.layers = self.vpm.encoder.layers[:-1]
        vision = config.vision_config
        self.grid_side = vision.image_size // vision.patch_size
        self.resampler = Resampler(config.query_num, config.hidden_size, vision.hidden_size, self.grid_side, dtype)
        self.grid_from_mask = config.version == (2, 5)  # MiniCPMV2_5 passes no tgt_sizes to the ViT

    def vision_features(self, pixel_values, mask: torch.Tensor, grids: torch.Tensor | None) -> torch.Tensor:
        """vLLM's Idefics2VisionTransformer.forward with a (slices, 1, patches) mask: the patch
        embedding plus the bucketed positions, added in place; the encoder with padding masked by an
        additive mask; the last layer norm."""
        hidden = embed(self.vpm.embeddings, pixel_values, mask, grids, self.grid_side)
        flat = mask.view(mask.shape[0], -1)
        additive = ((~flat).to(hidden.dtype) * torch.finfo(hidden.dtype).min)[:, None, None, :]
        encoded = self.vpm.encoder(inputs_embeds=hidden, attention_mask=additive).last_hidden_state
        return self.vpm.post_layernorm(encoded)  # the embeddings and the mask are let go after it, as in vLLM

    def forward(self, pixel_values, patch_attention_mask, tgt_sizes):
        """encoder_cudagraph_forward: pixel_values (slices, 3, h * p, w * p), patch_attention_mask
        (slices, h * w), tgt_sizes (slices, 2) each slice's patch rows and columns; returns
        (slices * query_num, hidden_size)."""
        mask = patch_attention_mask.unsqueeze(1)
        features = self.vision_features(pixel_values, mask, None if self.grid_from_mask else tgt_sizes)
        out = self.resampler(features, tgt_sizes)
        return out.reshape(-1, out.shape[-1])
