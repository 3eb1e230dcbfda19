"""DeepSeek-V4.1's vision tower (a ViT with 2-D rotary attention, then the aligner: an r x r spatial
merge and a two-layer projector into the language model), written in plain torch because
transformers has no class for it. It follows vLLM 0.33.0's DeepseekV4ViT and DeepseekV4Aligner
(models/deepseek_v4/common/vision.py, which models/deepseek_v41/nvidia/vl_model.py and
amd/vl_model.py build), operation for operation where that decides what is allocated: float32 RMS
norms and rotary embedding, one gate-and-up projection whose activation is applied in place (vLLM's
fused SiluAndMul allocates one output), the aligner's merge as a gather with a mask.

Parameter names and shapes are the published checkpoint's (``vision.*`` and ``aligner.*``, which vLLM
loads without renaming): fused ``wqkv`` with bias, the gate and up projections fused in ``mlp.w1``,
the patch embedding a linear layer over flattened 3 x p x p patches. The three learned delimiter
vectors (``image_start``, ``image_newline``, ``image_end``) are placed outside the graph and are
not part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..grids import per_grid

EPS = 1e-6  # DeepseekV4RMSNorm's


@dataclass(frozen=True)
class Segments:
    """The images packed in one sequence, as an attention kernel takes them: their lengths on the
    host (sdpa and eager split the batch), or cu_seqlens on the device with the longest sequence
    the kernel is told of (varlen)."""

    lengths: tuple[int, ...] = ()
    cu_seqlens: torch.Tensor | None = None
    max_seqlen: int = 0


def _varlen(q, k, v, segments: Segments):
    from torch.nn.attention import varlen  # looked up per call: the CPU tests stand a reference in for it

    cu = segments.cu_seqlens
    return varlen.varlen_attn(q, k, v, cu, cu, segments.max_seqlen, segments.max_seqlen)


def _sdpa(q, k, v, segments: Segments):
    parts = zip(*(t.split(list(segments.lengths)) for t in (q, k, v)), strict=True)
    return torch.cat(
        [F.scaled_dot_product_attention(*(t.transpose(0, 1) for t in part)).transpose(0, 1) for part in parts]
    )


def _eager(q, k, v, segments: Segments):
    outputs = []
    for qi, ki, vi in zip(*(t.split(list(segments.lengths)) for t in (q, k, v)), strict=True):
        scores = qi.transpose(0, 1) @ ki.permute(1, 2, 0) * qi.shape[-1] ** -0.5
        outputs.append((scores.softmax(-1, dtype=torch.float32).to(qi.dtype) @ vi.transpose(0, 1)).transpose(0, 1))
    return torch.cat(outputs)


KERNELS = {"varlen": _varlen, "sdpa": _sdpa, "eager": _eager}


def rope_tables(grids, head_dim: int, theta: float, where="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's 2-D rotary cos and sin, (patches, 1, head_dim // 2) float32 on ``where`` (the host,
    or the meta device: ``staging``), images one after another: the first half of a head rotates by the
    row, the second by the column (_compute_vision_cos_sin, vision.py)."""
    dim = head_dim // 2
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))

    def freqs_of(grid):
        rows, cols = grid
        positions = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), dim=-1)
        return (positions.reshape(-1, 2, 1).float() * inv_freq).flatten(1)

    freqs = per_grid(grids, freqs_of, where)
    return freqs.cos().unsqueeze(1), freqs.sin().unsqueeze(1)


def merge_gather(grids, ratio: int, where="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """For each aligner row (reading order, image after image), the ratio x ratio patch rows of the
    packed ViT output it merges, and a mask that zeroes positions past the image's edge, where the
    eager merge pads (build_packed_merge_metadata, vision.py): int64 (rows, r^2), bool (rows, r^2, 1),
    the mask to be given in the tower's dtype; on ``where``, as ``rope_tables``."""
    window = torch.arange(ratio)

    def rows_and_cols(grid):
        rows, cols = grid
        top = torch.arange(-(-rows // ratio)).repeat_interleave(-(-cols // ratio))[:, None] * ratio
        left = torch.arange(-(-cols // ratio)).repeat(-(-rows // ratio))[:, None] * ratio
        return top + window.repeat_interleave(ratio)[None], left + window.repeat(ratio)[None]

    def index_of(grid):
        rows, cols = grid
        row, col = rows_and_cols(grid)
        return row.clamp(max=rows - 1) * cols + col.clamp(max=cols - 1)

    def mask_of(grid):
        row, col = rows_and_cols(grid)
        return ((row < grid[0]) & (col < grid[1]))[..., None]

    indices = per_grid(grids, index_of, where, step=lambda grid: grid[0] * grid[1])
    return indices, per_grid(grids, mask_of, where)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype))

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + EPS)
        return (self.weight * x).to(dtype)


def _rotate(x, cos, sin):
    dtype = x.dtype
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(dtype)


class Attention(nn.Module):
    def __init__(self, config, dtype, kernel):
        super().__init__()
        self.heads, self.kernel = config.heads, kernel
        self.wqkv = nn.Linear(config.width, 3 * config.width, dtype=dtype)
        self.wo = nn.Linear(config.width, config.width, dtype=dtype)

    def forward(self, x, cos, sin, segments: Segments):
        # Each intermediate lives as long as in vLLM's DeepseekV4VisionAttention.forward: the fused
        # projection, the rotated queries and keys and the attention output until wo has run.
        n = x.shape[0]
        qkv = self.wqkv(x)
        q, k, v = (t.view(n, self.heads, -1) for t in qkv.chunk(3, dim=-1))
        q = _rotate(q, cos, sin)
        k = _rotate(k, cos, sin)
        out = self.kernel(q, k, v, segments)
        return self.wo(out.reshape(n, -1))


class MLP(nn.Module):
    def __init__(self, config, dtype):
        super().__init__()
        self.w1 = nn.Linear(config.width, 2 * config.mlp_width, bias=False, dtype=dtype)
        self.w2 = nn.Linear(config.mlp_width, config.width, bias=False, dtype=dtype)

    def forward(self, x):
        gate_up = self.w1(x)
        gate, up = gate_up.chunk(2, dim=-1)
        return self.w2(F.silu(gate).mul_(up))  # one (tokens, mlp_width) allocation, as SiluAndMul's


class Block(nn.Module):
    def __init__(self, config, dtype, kernel):
        super().__init__()
        self.norm1 = RMSNorm(config.width, dtype)
        self.attn = Attention(config, dtype, kernel)
        self.norm2 = RMSNorm(config.width, dtype)
        self.mlp = MLP(config, dtype)

    def forward(self, x, cos, sin, segments: Segments):
        x = x + self.attn(self.norm1(x), cos, sin, segments)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, config, dtype):
        super().__init__()
        self.proj = nn.Linear(3 * config.patch_size**2, config.width, dtype=dtype)

    def forward(self, patches):
        return self.proj(patches.flatten(1))


class ViT(nn.Module):
    def __init__(self, config, dtype, kernel):
        super().__init__()
        self.patch_embed = PatchEmbed(config, dtype)
        self.blocks = nn.ModuleList(Block(config, dtype, kernel) for _ in range(config.depth))
        self.norm = RMSNorm(config.width, dtype)

    def forward(self, patches, cos, sin, segments: Segments):
        x = self.patch_embed(patches)
        for block in self.blocks:
            x = block(x, cos, sin, segments)
        return self.norm(x)


class Aligner(nn.Module):
    def __init__(self, config, dtype):
        super().__init__()
        self.ratio = config.downsample_ratio
        self.w1 = nn.Linear(config.width * self.ratio**2, config.out_width, dtype=dtype)
        self.w2 = nn.Linear(config.out_width, config.out_width, dtype=dtype)

    def forward(self, x, merge_index, merge_mask):
        """The packed merge (forward_packed): gather each row's r x r patches, zero those past the
        edge, lay them out channel-major as unfold does, project."""
        rows = merge_index.shape[0]
        gathered = (x[merge_index] * merge_mask).view(rows, self.ratio**2, -1)
        gathered = gathered.permute(0, 2, 1).reshape(rows, -1)
        hidden = self.w1(gathered)  # held, with the merged rows, until w2 has run, as in vLLM
        return self.w2(F.gelu(hidden))

    def forward_image(self, x, rows: int, cols: int):
        """One image's merge as vLLM's eager path runs it: pad to whole windows, unfold, project."""
        r = self.ratio
        grid = F.pad(x.view(rows, cols, -1).permute(2, 0, 1), (0, -cols % r, 0, -rows % r))
        merged = F.unfold(grid.unsqueeze(0), r, stride=r).squeeze(0).transpose(0, 1)
        return self.w2(F.gelu(self.w1(merged)))


class DeepseekV41Tower(nn.Module):
    """The captured module: ``vision`` (the ViT) and ``aligner``, as the checkpoint names them."""

    def __init__(self, config, dtype, attn: str):
        super().__init__()
        self.config, self.attn = config, attn
        self.vision = ViT(config, dtype, KERNELS[attn])
        self.aligner = Aligner(config, dtype)

    def forward(self, patches, cos, sin, merge_index, merge_mask, lengths=(), cu_seqlens=None, max_seqlen=0):
        """encoder_cudagraph_forward (vl_cudagraph.py): the batch packed into one sequence, every
        grid-dependent tensor given."""
        hidden = self.vision(patches, cos, sin, Segments(tuple(lengths), cu_seqlens, max_seqlen))
        return self.aligner(hidden, merge_index, merge_mask)

    def encode_image(self, patches, rows: int, cols: int):
        """One image alone, its rotary tables and merge computed here (vLLM's eager _encode_image)."""
        cos, sin = (t.to(patches.device) for t in rope_tables([(rows, cols)], self.head_dim, self.config.rope_theta))
        n = rows * cols
        cu_seqlens = torch.tensor([0, n], dtype=torch.int32, device=patches.device) if self.attn == "varlen" else None
        hidden = self.vision(patches, cos, sin, Segments((n,), cu_seqlens, n))
        return self.aligner.forward_image(hidden, rows, cols)

    @property
    def head_dim(self) -> int:
        return self.config.width // self.config.heads
