"""MiniMax M3's ViT, projector and patch merge, laid out as vLLM 0.33.0's MiniMaxM3EncoderCudaGraphMixin
(models/minimax_m3/common/encoder_cudagraph.py) captures them.

transformers supplies the parameters (MiniMaxM3VLVisionModel, MiniMaxM3VLMultiModalProjector); the
forward is written out here, because transformers 5.17's vision forward attends across the images of a
batch, which vLLM's does not: attention runs image by image (sdpa) or as one packed flash kernel (varlen).
"""

import math

import torch
import torch.nn.functional as F
from transformers import MiniMaxM3VLConfig
from transformers.models.minimax_m3_vl.modeling_minimax_m3_vl import (
    MiniMaxM3VLMultiModalProjector,
    MiniMaxM3VLVisionModel,
)

from bare_families import common
from bare_families.common import packed_flash

MODEL_TYPES = ("minimax_m3_vl",)


def _config(data):
    """transformers' config from MiniMax's published form (clip_vision_model, merge and temporal patch
    sizes in img_token_compression_config) or from transformers' own."""
    vision = dict(data["vision_config"])
    text_width = data["text_config"]["hidden_size"]
    compression = vision.pop("img_token_compression_config", None)
    if compression is not None:
        keep = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels")
        keep += ("image_size", "patch_size", "hidden_act", "layer_norm_eps")
        vision = {key: vision[key] for key in keep if key in vision} | {
            "spatial_merge_size": compression.get("spatial_merge_size", 2),
            "temporal_patch_size": compression.get("temporal_patch_size", 2),
            "rope_parameters": {"rope_type": "axial", "rope_theta": vision.get("rope_theta", 10000.0)},
        }
    vision.pop("model_type", None)
    return MiniMaxM3VLConfig(
        vision_config=vision,
        text_config={"hidden_size": text_width},
        projector_hidden_size=data.get("projector_hidden_size", text_width),
    )


def _planes(vision, grid):
    """cos and sin of each patch's t, h and w rotation over the first 3 * band dims of a head, bf16."""
    head = vision.hidden_size // vision.num_attention_heads
    band = 2 * (head // 3 // 2)
    m = vision.spatial_merge_size
    _, rows, cols = grid
    h = torch.arange(rows).view(rows // m, m, 1, 1).expand(rows // m, m, cols // m, m).transpose(1, 2).reshape(-1)
    w = torch.arange(cols).view(1, 1, cols // m, m).expand(rows // m, m, cols // m, m).transpose(1, 2).reshape(-1)
    thw = torch.stack([torch.zeros_like(h), h, w], dim=-1)
    inv = 1.0 / vision.rope_parameters["rope_theta"] ** (torch.arange(0, band, 2, dtype=torch.float) / band)
    angle = thw[..., None].float() * inv
    cos, sin = angle.cos().flatten(1), angle.sin().flatten(1)
    return torch.cat([cos, cos], -1).to(torch.bfloat16), torch.cat([sin, sin], -1).to(torch.bfloat16)


def _turn(q, k, cos, sin):
    """q and k with the first cos.shape[-1] dims of each head rotated (neox halves), the rest as they were:
    both rotated parts, then both joined, the parts gone on return (vLLM's triton_mrope rotates in place
    and keeps nothing; the parts' order is transformers' apply_rotary_pos_emb_vision's)."""
    n, cos, sin = cos.shape[-1], cos[:, None], sin[:, None]
    parts = [t[..., :n] * cos + torch.cat((-t[..., n // 2 : n], t[..., : n // 2]), dim=-1) * sin for t in (q, k)]
    return [torch.cat([part, t[..., n:]], -1) for part, t in zip(parts, (q, k), strict=True)]


def build(data, budgets, items, gen, attn="sdpa"):
    """k images of grid [1, m, ceil(B / k) * m] per budget; cu_seqlens with one spare zero-length sequence
    after the k images and, for varlen, the longest sequence every patch of the batch (vLLM's
    max_seqlen_override=total_patches)."""
    config = _config(data)
    vision = config.vision_config
    with torch.device(common.DEVICE):
        tower = MiniMaxM3VLVisionModel._from_config(vision, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
        projector = MiniMaxM3VLMultiModalProjector(config).to(torch.bfloat16).eval()
    heads, head = vision.num_attention_heads, vision.hidden_size // vision.num_attention_heads

    def attend(block, x, cos, sin, cu_seqlens, max_seqlen):
        """vLLM's MiniMaxVLAttention.forward: q, k and v projected (its fused qkv), then q and k rotated;
        v and the rotated q and k kept until the output projection returns."""
        n = x.shape[0]
        q, k, v = (proj(x).view(n, heads, head) for proj in (block.q_proj, block.k_proj, block.v_proj))
        q, k = _turn(q, k, cos, sin)
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
        if attn == "varlen":
            out = packed_flash(block, q, k, v, None, head**-0.5, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)[0]
        else:
            sizes = torch.diff(cu_seqlens).tolist()
            chunks = zip(q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2), strict=True)
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(a, b, c, scale=head**-0.5).transpose(1, 2).contiguous()
                    for a, b, c in chunks
                ],
                dim=1,
            )
        return block.out_proj(out.reshape(n, -1).contiguous())

    def forward(pixel_values, rotary_cos, rotary_sin, cu_seqlens, max_seqlen=None):
        """vLLM's MiniMaxVLEncoderLayer.forward per layer: the attention's output gone at the residual add,
        the second norm's once fc1 has read it."""
        x = tower.pre_layrnorm(tower.embeddings(pixel_values))
        for layer in tower.layers:
            x = x + attend(layer.self_attn, layer.layer_norm1(x), rotary_cos, rotary_sin, cu_seqlens, max_seqlen)
            x = x + layer.mlp.fc2(layer.mlp.activation_fn(layer.mlp.fc1(layer.layer_norm2(x))))
        return projector(x)

    m, p, t = vision.spatial_merge_size, vision.patch_size, vision.temporal_patch_size
    runs = []
    for budget in budgets:
        grid = (1, m, math.ceil(budget / items) * m)
        per_image = math.prod(grid)
        cos, sin = _planes(vision, grid)
        offsets = [i * per_image for i in range(items + 1)]
        run = {
            "pixel_values": torch.randn(items * per_image, vision.num_channels * t * p * p, generator=gen).to(
                common.DEVICE, torch.bfloat16
            ),
            "rotary_cos": cos.repeat(items, 1).to(common.DEVICE),
            "rotary_sin": sin.repeat(items, 1).to(common.DEVICE),
            "cu_seqlens": torch.tensor(offsets, dtype=torch.int32),  # the host splits the images for sdpa
        }
        if attn == "varlen":
            run["cu_seqlens"] = torch.tensor(offsets + offsets[-1:], dtype=torch.int32, device=common.DEVICE)
            run["max_seqlen"] = items * per_image
        runs.append(run)
    return forward, runs, items
