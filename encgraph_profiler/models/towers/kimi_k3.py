"""Kimi-K3's vision tower (MoonViT3d) and projector (``patchmergerv2``), written in plain torch because
transformers has none (its Kimi-K2.5 tower has LayerNorms, biases and heads of width / heads). They
follow vLLM 0.33.0's MoonViT3dPretrainedModel and KimiK25MultiModalProjector (model_executor/models/
kimi_k25_vit.py, built on KimiK3VisionConfig by models/kimi_k3/nvidia/model.py) on its captured path,
operation for operation where that decides what is allocated: the patch projection as one matrix
product (Conv2dLayer.forward_native), torch's RMSNorm, a bias-free fused qkv whose queries and keys are
rotated in place (vLLM's packed_qk_rope_ Triton kernel), the kh x kw windows gathered by a precomputed
index after the last norm, then Linear, GELU, Linear, RMSNorm.

Parameter names and shapes are the published checkpoint's (``vision_tower.*``, and ``mm_projector.proj.0``,
``proj.2`` and ``post_norm``, which vLLM renames on loading). ``KimiK3Model`` adds the KimiLinear language
model with Kimi-K3's own parts for parameter counts only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.kimi_k25.modeling_kimi_k25 import eager_attention_forward
from transformers.utils.generic import is_flash_attention_requested

from .. import varlen
from ..grids import per_grid, staging


def rope_angles(grids, head_dim: int, where="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The cosines and sines, (patches, head_dim // 2) float32, of vLLM's 2-D RoPE (Rope2DPosEmbRepeated):
    head_dim // 4 frequencies 10000^(-4i / head_dim), column and row angles interleaved, each frame of
    an item at its patch's column and row. Made on ``where`` (``staging``), each distinct grid's once."""
    freqs = 1.0 / (10000 ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim))

    def angles_of(grid):
        t, h, w = grid
        rows, cols = (a.flatten().float() for a in torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"))
        return torch.stack((torch.outer(cols, freqs), torch.outer(rows, freqs)), dim=-1).flatten(1).repeat(t, 1)

    angles = per_grid(grids, angles_of, where)
    return angles.cos(), angles.sin()


def precomputed(vision, grids, device, longest: int = 0) -> dict:
    """The segments as the tower's attention takes them (``varlen.sequences``: the longest given, or the
    longest there is) and each output token's kh * kw patches, images packed one after another
    (build_image_merge_gather_idx), on ``device``."""
    kh, kw = vision.merge_kernel_size

    def windows_of(grid):
        _, h, w = grid
        return torch.arange(h * w).view(h // kh, kh, w // kw, kw).transpose(1, 2).reshape(-1, kh * kw)

    windows = per_grid(grids, windows_of, staging(device), step=lambda grid: grid[1] * grid[2])
    cu_seqlens = torch.tensor([0] + [t * h * w for t, h, w in grids]).cumsum(0).to(torch.int32)
    return {**varlen.sequences(vision, cu_seqlens, longest, device), "window_index": windows.to(device)}


def rotate_(qkv, cos, sin) -> None:
    """The queries and keys of the fused (tokens, 3, heads, head_dim) buffer rotated in place, pairs
    interleaved, each step computed in float32; a copy of the pairs' first halves is the one temporary."""
    real, imag = qkv[:, :2].unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin, first = cos[:, None, None], sin[:, None, None], real.clone()
    real.mul_(cos).addcmul_(imag, sin, value=-1)
    imag.mul_(cos).addcmul_(first, sin)


class PositionTable(nn.Module):
    """``patch_embed.pos_emb``: the learned (height, width, width) table."""

    def __init__(self, vision):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vision.pos_emb_height, vision.pos_emb_width, vision.hidden_size))
        nn.init.normal_(self.weight)
        self.mode = vision.pos_emb_interpolation_mode

    def forward(self, grids):
        """Each image's table resampled to its grid, the table itself where it fits (get_pos_embeds),
        resampled once for each run of equal grids."""

        def table_of(grid):
            _, h, w = grid
            table = self.weight
            if (h, w) != tuple(table.shape[:2]):
                table = F.interpolate(table.permute(2, 0, 1)[None], size=(h, w), mode=self.mode)[0].permute(1, 2, 0)
            return table.flatten(0, 1)

        return per_grid(grids, table_of, self.weight.device)


class PatchProjection(nn.Conv2d):
    """``patch_embed.proj``: a bias-free patch convolution run as one matrix product over the patches
    (vLLM's Conv2dLayer.forward_native), returning (patches, width)."""

    def forward(self, pixel_values):
        return F.linear(pixel_values.flatten(1), self.weight.flatten(1))


class PatchEmbed(nn.Module):
    def __init__(self, vision):
        super().__init__()
        self.proj = PatchProjection(3, vision.hidden_size, vision.patch_size, vision.patch_size, bias=False)
        self.pos_emb = PositionTable(vision)

    def forward(self, pixel_values, pos_embeds):
        return self.proj(pixel_values) + pos_embeds


class Block(nn.Module):
    def __init__(self, vision):
        super().__init__()
        self.config, self.heads, self.head_dim = vision, vision.num_attention_heads, vision.head_dim
        self.scaling, self.is_causal, self.num_key_value_groups = self.head_dim**-0.5, False, 1
        width, inner = vision.hidden_size, vision.num_attention_heads * vision.head_dim
        self.norm0, self.norm1 = nn.RMSNorm(width), nn.RMSNorm(width)
        self.wqkv = nn.Linear(width, 3 * inner, bias=False)
        self.wo = nn.Linear(inner, width, bias=False)
        self.mlp = nn.Module()
        self.mlp.fc0 = nn.Linear(width, vision.intermediate_size, bias=False)
        self.mlp.fc1 = nn.Linear(vision.intermediate_size, width, bias=False)
        self.act = ACT2FN[vision.hidden_act]

    def attend(self, q, k, v, cu_seqlens, max_seqlen=None):
        """transformers' attention functions: one call over the packed images for a "flash"
        implementation (``--attn varlen``), else one per image."""
        q, k, v = (t[None].transpose(1, 2) for t in (q, k, v))  # (1, heads, tokens, head_dim)
        function = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        options = {"scaling": self.scaling, "is_causal": False}
        if is_flash_attention_requested(self.config):
            bounds = {"cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens}
            longest = {"max_length_q": max_seqlen, "max_length_k": max_seqlen}
            return function(self, q, k, v, None, **options, **bounds, **longest)[0]
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        pieces = zip(*(t.split(lengths, dim=2) for t in (q, k, v)), strict=True)
        return torch.cat([function(self, *piece, None, **options)[0] for piece in pieces], dim=1)

    def attention(self, x, cos, sin, segments):
        """vLLM's attention_qkvpacked: the fused qkv and its input (the first norm's output) live until
        the output projection has run, and go when it returns, before the residual add."""
        qkv = self.wqkv(x).view(len(x), 3, self.heads, self.head_dim)
        rotate_(qkv, cos, sin)
        return self.wo(self.attend(*qkv.unbind(1), **segments).reshape(len(x), -1))

    def feed_forward(self, x):
        """vLLM's MLP2: its input (the second norm's output) lives until fc1 has run."""
        return self.mlp.fc1(self.act(self.mlp.fc0(x)))

    def forward(self, x, cos, sin, segments):
        """vLLM's MoonViTEncoderLayer.forward, each tensor freed where it frees it: the fused qkv (301,989,888
        bytes at 8,192 tokens) kept through the MLP made Kimi-K3's 1,024-8,192 pool 448,790,528 bytes larger."""
        x = x + self.attention(self.norm0(x), cos, sin, segments)
        return x + self.feed_forward(self.norm1(x))


class VisionTower(nn.Module):
    def __init__(self, vision):
        super().__init__()
        self.config, self.merge_kernel_size = vision, tuple(vision.merge_kernel_size)
        self.patch_embed = PatchEmbed(vision)
        self.encoder = nn.Module()
        self.encoder.blocks = nn.ModuleList(Block(vision) for _ in range(vision.num_hidden_layers))
        self.encoder.final_layernorm = nn.RMSNorm(vision.hidden_size)

    def forward(self, pixel_values, grid_thw, pos_embeds=None, rope_cos=None, rope_sin=None, **segments):
        """(tokens, kh * kw, width); what is not given is derived from ``grid_thw``, as vLLM's eager path does."""
        if pos_embeds is None:
            grids = [tuple(int(n) for n in grid) for grid in grid_thw.tolist()]
            pos_embeds = self.patch_embed.pos_emb(grids)
            rope_cos, rope_sin = (t.to(pixel_values.device) for t in rope_angles(grids, self.config.head_dim))
            segments = precomputed(self.config, grids, pixel_values.device)
        windows = segments.pop("window_index")
        hidden = self.patch_embed(pixel_values, pos_embeds)
        for block in self.encoder.blocks:
            hidden = block(hidden, rope_cos, rope_sin, segments)
        return self.encoder.final_layernorm(hidden)[windows]


class Projector(nn.Module):
    def __init__(self, config):
        super().__init__()
        vision, out = config.vision_config, config.text_config.hidden_size
        width = vision.hidden_size * math.prod(vision.merge_kernel_size)
        self.proj = nn.Sequential(nn.Linear(width, width, bias=False), nn.GELU(), nn.Linear(width, out, bias=False))
        self.post_norm = nn.RMSNorm(out, eps=config.projection_layer_norm_eps)

    def forward(self, windows):
        return self.post_norm(self.proj(windows.flatten(1)))


class KimiK3Tower(nn.Module):
    """What vLLM's encoder_cudagraph_forward runs: the vision tower, then the projector."""

    def __init__(self, config, dtype, attn):
        super().__init__()
        vision = config.vision_config.__class__.from_dict(config.vision_config.to_dict())
        vision._attn_implementation = "sdpa" if attn == "varlen" else attn
        self.vision_tower = VisionTower(vision).to(dtype)
        if attn == "varlen":
            varlen.use(self.vision_tower)
        self.mm_projector = Projector(config).to(dtype)

    def forward(self, pixel_values, grid_thw, **precomputed):
        return self.mm_projector(self.vision_tower(pixel_values, grid_thw, **precomputed))


# The language model, for parameter counts only (built on the meta device, never run): KimiLinear with
# Kimi-K3's own parts (latent-space experts, attention-residual projections, output gates), which
# transformers' KimiLinear lacks, named and shaped as the published checkpoint's, its experts stacked.


def _linear(n_in: int, n_out: int) -> nn.Linear:
    return nn.Linear(n_in, n_out, bias=False)


def _parts(**named) -> nn.Module:
    """A module of the submodules given and, given as shapes, parameters."""
    module = nn.Module()
    for name, part in named.items():
        setattr(module, name, part if isinstance(part, nn.Module) else nn.Parameter(torch.empty(part)))
    return module


def _delta_attention(c, h: int) -> nn.Module:
    """Kimi Delta Attention, A_log one per head as vLLM's kda.py keeps it."""
    heads, dim = c.linear_num_heads, c.linear_head_dim
    width, conv = heads * dim, (heads * dim, 1, c.linear_conv_kernel_dim)
    projections = {f"{x}_proj": _linear(h, width) for x in "qkvg"}
    convolutions = {f"{x}_conv1d": conv for x in "qkv"}
    gates = {"b_proj": _linear(h, heads), "f_a_proj": _linear(h, dim), "f_b_proj": _linear(dim, width)}
    return _parts(
        **projections,
        **convolutions,
        **gates,
        o_proj=_linear(width, h),
        dt_bias=(width,),
        A_log=(heads,),
        o_norm=(dim,),
    )


def _latent_attention(c, h: int) -> nn.Module:
    """Multi-head latent attention, with its output gate where the config has one."""
    heads, rope, nope, v, q, kv = (
        c.num_attention_heads, c.qk_rope_head_dim, c.qk_nope_head_dim, c.v_head_dim, c.q_lora_rank, c.kv_lora_rank
    )  # fmt: skip
    gate = {"g_proj": _linear(h, heads * v)} if getattr(c, "mla_use_output_gate", False) else {}
    queries = {"q_a_proj": _linear(h, q), "q_a_layernorm": (q,), "q_b_proj": _linear(q, heads * (nope + rope))}
    keys = {
        "kv_a_proj_with_mqa": _linear(h, kv + rope),
        "kv_a_layernorm": (kv,),
        "kv_b_proj": _linear(kv, heads * (nope + v)),
    }
    return _parts(**queries, **keys, o_proj=_linear(heads * v, h), **gate)


def _feed_forward(c, h: int, kind: str) -> dict[str, nn.Module]:
    if kind == "dense":
        inner = c.intermediate_size
        return {"mlp": _parts(gate_proj=_linear(h, inner), up_proj=_linear(h, inner), down_proj=_linear(inner, h))}
    experts, inner, shared = c.num_experts, c.moe_intermediate_size, c.moe_intermediate_size * c.n_shared_experts
    latent = getattr(c, "routed_expert_hidden_size", None) or h
    moe = {
        "gate": _parts(weight=(experts, h), e_score_correction_bias=(experts,)),
        "experts": _parts(w1=(experts, inner, latent), w2=(experts, latent, inner), w3=(experts, inner, latent)),
        "shared_experts": _parts(
            gate_proj=_linear(h, shared), up_proj=_linear(h, shared), down_proj=_linear(shared, h)
        ),
    }
    if latent != h:
        moe |= {"routed_expert_down_proj": _linear(h, latent), "routed_expert_up_proj": _linear(latent, h)}
        moe |= {"routed_expert_norm": (latent,)} if getattr(c, "latent_moe_use_norm", False) else {}
    return {"block_sparse_moe": _parts(**moe)}


def _residuals(c, h: int, *names: str) -> dict[str, tuple[int, ...]]:
    """Attention residuals (``attn_res_block_size``): a norm and a one-row projection each."""
    if not getattr(c, "attn_res_block_size", None):
        return {}
    return {f"{name}_{part}": (h,) if part == "norm" else (1, h) for name in names for part in ("norm", "proj")}


class KimiK3Model(nn.Module):
    """The whole model, for parameter counts: the tower and projector, then the language model."""

    def __init__(self, config):
        super().__init__()
        tower = KimiK3Tower(config, torch.bfloat16, "sdpa")
        self.vision_tower, self.mm_projector = tower.vision_tower, tower.mm_projector
        c = config.text_config
        h = c.hidden_size
        layers = nn.ModuleList(
            _parts(
                self_attn=_delta_attention(c, h) if kind == "linear_attention" else _latent_attention(c, h),
                **_feed_forward(c, h, mlp),
                input_layernorm=(h,),
                post_attention_layernorm=(h,),
                **_residuals(c, h, "self_attention_res", "mlp_res"),
            )
            for kind, mlp in zip(c.layer_types, c.mlp_layer_types, strict=True)
        )
        model = _parts(embed_tokens=(c.vocab_size, h), layers=layers, norm=(h,), **_residuals(c, h, "output_attn_res"))
        head = {} if c.tie_word_embeddings else {"lm_head": _linear(h, c.vocab_size)}
        self.language_model = _parts(model=model, **head)

    @classmethod
    def _from_config(cls, config):
        return cls(config)
