"""MiniMax M3 (``minimax_m3_vl``): a CLIP-style ViT with a Conv3d patch embedding and partial 3-D
rotary positions, whose patches the multimodal projector lifts to the language model's width and the
patch-merge MLP folds m x m at a time. The captured graph covers the ViT, the projector and the patch
merge, as vLLM's does (MiniMaxVLVisionModel, models/minimax_m3/common/vision_tower.py).

vLLM 0.33.0 lays its budgets out in MiniMaxM3EncoderCudaGraphMixin (models/minimax_m3/common/
encoder_cudagraph.py), which both the NVIDIA and the ROCm MiniMaxM3SparseForConditionalGeneration
(nvidia/model.py, amd/model.py) inherit without overriding:

- Budgets and items (get_encoder_cudagraph_budget_range; EncoderCudaGraphManager, v1/worker/
  encoder_cudagraph.py): the smallest budget is 64 tokens, the ladder doubles from it with the
  largest always included, and k items per batch is min(max_budget // 64, smallest budget) by default.
- The grid (prepare_encoder_cudagraph_capture_inputs): k images of grid [1, m, ceil(B / k) * m],
  k * m^2 * ceil(B / k) patches of C * T * p^2 values each.
- The segments (prepare_encoder_metadata, called with max_batch_size k + 1): cu_seqlens holds the k
  images and one spare zero-length sequence after them (k + 2 offsets), which replay fills with the
  padding rows of a smaller batch; the longest sequence given to attention is every patch of the
  batch (max_seqlen_override=total_patches), not one image.
- The rotary planes (cos and sin) are computed outside the graph and fed to it as static buffers, as
  are pixels and segments, so here they are inputs of the graph, not work inside it.
- Images only (get_encoder_cudagraph_config's modalities): videos run eagerly, so
  ``--max-frames-per-batch`` is refused.
- Attention: vLLM captures these graphs only with its FLASH_ATTN (ROCm: ROCM_AITER_FA) ViT backend, one
  varlen kernel over the packed images; with TORCH_SDPA or FlashInfer it refuses to capture. ``--attn
  varlen`` is that kernel; ``--attn sdpa`` measures transformers' split into one kernel per image, which
  vLLM does not capture.

The tower is built from transformers' MiniMaxM3VLVisionModel and MiniMaxM3VLMultiModalProjector (the
checkpoint's parameters, names mapped by transformers' conversion mapping), but runs its own forward
over them: transformers 5.17's MiniMaxM3VLVisionModel attends across all the images of a batch and
rotates other head dimensions than vLLM's, while later releases (5.24) compute what vLLM computes, the
forward written here (per-image attention, the first 3 * 2 * (head_dim // 3 // 2) dimensions rotated
by t, h and w bands). Its tensors live as long as in vLLM's MiniMaxVLEncoderLayer.forward, which decides
the pool: holding each layer's attention output through its MLP, as this forward once did, cost a
335,544,320-byte segment more at 8,192 tokens. vLLM's fused qkv projection and in-place float32 rotation
(triton_mrope, planes of (3, patches, band / 2) float32) are not reproduced: here q, k and v are three
matrix products and the rotation makes bf16 temporaries, freed before attention.

MiniMax publishes its config in its own form (the vision config a ``clip_vision_model`` with the merge
and temporal patch sizes in ``img_token_compression_config``, as vLLM reads it); ``_minimax_form`` reads
it onto transformers' fields.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...errors import UsageError
from ...ladder import tokens_per_item
from ...units import counted
from .. import varlen
from ..base import Adapter, Layout, VllmSource, random_input
from ..grids import per_grid, staging

MODELING = "transformers.models.minimax_m3_vl.modeling_minimax_m3_vl"
# The vision fields transformers' MiniMaxM3VLVisionConfig shares with MiniMax's clip_vision_model form.
VISION_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_channels",
    "image_size",
    "patch_size",
    "hidden_act",
    "layer_norm_eps",
    "attention_dropout",
    "initializer_range",
)

# The projector settings vLLM reads from the vision config, as transformers' projector builds them.
PROJECTOR_AS_BUILT = {"multimodal_projector_bias": True, "patch_merge_bias": True, "projector_hidden_act": "gelu"}


def _minimax_form(data: dict[str, Any], source: str) -> dict[str, Any]:
    """MiniMax's own form onto transformers' ``minimax_m3_vl``: the merge and temporal patch sizes out
    of ``img_token_compression_config`` (2 each where absent, as vLLM reads them), the rotary base into
    ``rope_parameters``, and the projector's middle width the language model's where none is given
    (vLLM's MiniMaxVLMultiModalProjector). A config already in transformers' form is kept."""
    vision = data.get("vision_config")
    if not isinstance(vision, dict) or "img_token_compression_config" not in vision:
        return data
    compression = vision["img_token_compression_config"]
    if not isinstance(compression, dict):
        raise UsageError(f"{source}: vision_config.img_token_compression_config must be an object")
    for key, built in PROJECTOR_AS_BUILT.items():
        if vision.get(key, built) != built:
            raise UsageError(
                f"{source}: vision_config {key} {vision[key]!r} is built only by vLLM's own code (transformers' "
                f"MiniMax M3 projector has {built!r}), which encgraph does not run"
            )
    native_vision = {key: vision[key] for key in VISION_FIELDS if key in vision}
    native_vision.update(
        model_type="minimax_m3_vl_vision",
        spatial_merge_size=compression.get("spatial_merge_size", 2),
        temporal_patch_size=compression.get("temporal_patch_size", 2),
        rope_parameters={"rope_type": "axial", "rope_theta": vision.get("rope_theta", 10000.0)},
    )
    text = data.get("text_config")
    native = {**data, "vision_config": native_vision}
    if "projector_hidden_size" not in data and isinstance(text, dict) and "hidden_size" in text:
        native["projector_hidden_size"] = text["hidden_size"]
    return native


def rotary_planes(vision_config, grids, dtype, where="cpu"):
    """The cos and sin of every patch's rotation, (patches, 3 * band), as vLLM's prepare_encoder_metadata
    computes them outside the graph: the first 3 * band dimensions of each head turn by the patch's t, h
    and w positions (band = 2 * (head_dim // 3 // 2)), the rest pass through. Made on ``where``
    (``staging``), each distinct grid's positions once."""
    import torch
    from transformers.vision_utils import get_vision_position_ids

    head_dim = vision_config.hidden_size // vision_config.num_attention_heads
    band = 2 * ((head_dim // 3) // 2)
    base = vision_config.rope_parameters["rope_theta"]
    inv_freq = 1.0 / (base ** (torch.arange(0, band, 2, dtype=torch.float) / band))
    m = vision_config.spatial_merge_size
    positions = per_grid(
        grids, lambda grid: get_vision_position_ids(torch.tensor([grid]), m, include_temporal=True), where
    )
    angles = positions[..., None].float() * inv_freq.to(where)  # (patches, t/h/w, band / 2)
    cos, sin = (plane.flatten(1) for plane in (angles.cos(), angles.sin()))
    return torch.cat([cos, cos], dim=-1).to(dtype), torch.cat([sin, sin], dim=-1).to(dtype)


def _rotate_pair(query, key, cos, sin):
    """Rotate the first cos.shape[-1] dimensions of each head of query and key; (patches, heads, dim)."""
    import torch
    from transformers.models.minimax_m3_vl.modeling_minimax_m3_vl import rotate_half

    turned = cos.shape[-1]
    cos, sin = cos[:, None, :], sin[:, None, :]
    q_rot, q_pass = query[..., :turned], query[..., turned:]
    k_rot, k_pass = key[..., :turned], key[..., turned:]
    q_rot = q_rot * cos + rotate_half(q_rot) * sin
    k_rot = k_rot * cos + rotate_half(k_rot) * sin
    return torch.cat([q_rot, q_pass], dim=-1), torch.cat([k_rot, k_pass], dim=-1)


def _attention(module, hidden, cos, sin, cu_seqlens, max_seqlen):
    """One layer's self-attention over the packed images: one varlen kernel (a "flash" implementation)
    or, for sdpa and eager, one kernel per image with the split done on the host."""
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.minimax_m3_vl.modeling_minimax_m3_vl import eager_attention_forward
    from transformers.utils.generic import is_flash_attention_requested

    patches = hidden.shape[0]
    shape = (patches, module.num_heads, module.head_dim)
    query, key, value = (proj(hidden).view(shape) for proj in (module.q_proj, module.k_proj, module.v_proj))
    query, key = _rotate_pair(query, key, cos, sin)  # after all three, as vLLM rotates its fused qkv
    query, key, value = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation, eager_attention_forward)
    scaling = module.head_dim**-0.5
    if is_flash_attention_requested(module.config):
        out, _ = interface(
            module,
            query,
            key,
            value,
            None,
            scaling=scaling,
            cu_seq_lens_q=cu_seqlens,
            cu_seq_lens_k=cu_seqlens,
            max_length_q=max_seqlen,
            max_length_k=max_seqlen,
            is_causal=False,
        )
    else:
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        parts = zip(*(t.split(lengths, dim=2) for t in (query, key, value)), strict=True)
        out = torch.cat([interface(module, q, k, v, None, scaling=scaling, is_causal=False)[0] for q, k, v in parts], 1)
    return module.out_proj(out.reshape(patches, -1).contiguous())


def _tower_module():
    """The ViT, the projector and the patch merge as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.minimax_m3_vl.modeling_minimax_m3_vl import (
        MiniMaxM3VLMultiModalProjector,
        MiniMaxM3VLVisionModel,
    )
    from transformers.vision_utils import get_vision_cu_seqlens

    class MiniMaxM3Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_tower = MiniMaxM3VLVisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation="sdpa" if attn == "varlen" else attn
            )
            if attn == "varlen":
                varlen.use(self.vision_tower)
            self.multi_modal_projector = MiniMaxM3VLMultiModalProjector(config).to(dtype)

        def forward(self, pixel_values, grid_thw, rotary_cos=None, rotary_sin=None, cu_seqlens=None, max_seqlen=None):
            """Image tokens at the language model's width from pixels; the rotary planes and segments
            are derived from ``grid_thw`` where they are not given."""
            vision = self.vision_tower
            if rotary_cos is None or rotary_sin is None:
                grids = [tuple(grid) for grid in grid_thw.tolist()]
                rotary_cos, rotary_sin = rotary_planes(vision.config, grids, vision.pre_layrnorm.weight.dtype)
                rotary_cos, rotary_sin = rotary_cos.to(pixel_values.device), rotary_sin.to(pixel_values.device)
            if cu_seqlens is None:
                found = get_vision_cu_seqlens(grid_thw.cpu(), merge_temporal=True).to(torch.int32)
                sequences = varlen.sequences(vision.config, found, 0, pixel_values.device)
                cu_seqlens, max_seqlen = sequences["cu_seqlens"], sequences.get("max_seqlen")
            hidden = vision.pre_layrnorm(vision.embeddings(pixel_values).to(vision.pre_layrnorm.weight.dtype))
            for layer in vision.layers:
                # Each tensor freed where vLLM's MiniMaxVLEncoderLayer.forward frees it: the attention's
                # output at the residual add, the second norm's output once fc1 has read it.
                hidden = hidden + _attention(
                    layer.self_attn, layer.layer_norm1(hidden), rotary_cos, rotary_sin, cu_seqlens, max_seqlen
                )
                mlp = layer.mlp
                hidden = hidden + mlp.fc2(mlp.activation_fn(mlp.fc1(layer.layer_norm2(hidden))))
            return self.multi_modal_projector(hidden)

    return MiniMaxM3Tower


class MiniMaxM3Adapter(Adapter):
    family = "minimax-m3"
    model_types = ("minimax_m3_vl",)
    vllm = VllmSource("models/minimax_m3/common/encoder_cudagraph.py", "MiniMaxM3EncoderCudaGraphMixin")
    own_forms = {"minimax_m3_vl": _minimax_form}  # MiniMax's own form shares transformers' model_type
    config_class_name = "transformers:MiniMaxM3VLConfig"
    model_class_name = f"{MODELING}:MiniMaxM3SparseForConditionalGeneration"
    size_fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size")
    packs_sequences = True
    captures_video = False  # encoder_cudagraph.py: modalities=["image"]; videos run eagerly
    vllm_attention = "varlen"  # get_encoder_cudagraph_config: FLASH_ATTN or ROCM_AITER_FA, else it refuses

    def min_budget(self, config) -> int:
        return 64  # encoder_cudagraph.py, get_encoder_cudagraph_budget_range

    def tower_config(self, data):
        return self.full_config(data)  # the projector needs the language model's width

    def tower_module(self):
        return _tower_module()

    def layout(self, config, budget: int, items: int) -> Layout:
        """prepare_encoder_cudagraph_capture_inputs: k images of grid [1, m, ceil(B / k) * m]."""
        vision = config.vision_config
        m, p = vision.spatial_merge_size, vision.patch_size
        if items > budget:
            raise UsageError(f"budget {budget} cannot hold {counted(items, 'images')} of at least one token each")
        per_item = tokens_per_item(budget, items)
        patches = items * m * per_item * m
        return Layout(
            budget=budget,
            items=items,
            tokens=items * per_item,
            input_patches=patches,
            grids=((1, m, per_item * m),) * items,
            meaning=f"{budget:,} tokens = {counted(items, 'images')} of {m * p}x{per_item * m * p} px, {patches:,} "
            f"ViT patches merged {m}x{m}",
        )

    def vllm_layout(self, layout: Layout, config, frames_per_batch: int) -> Layout:
        """vLLM's capture inputs: the longest sequence every patch of the batch (max_seqlen_override=
        total_patches), and cu_seqlens padded to k + 1 sequences, one spare of length 0."""
        return replace(layout, max_seqlen=layout.input_patches, spare_sequences=1)

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch
        from transformers.vision_utils import get_vision_cu_seqlens

        vision = config.vision_config
        grid = torch.tensor(layout.grids, dtype=torch.long)
        features = vision.num_channels * vision.temporal_patch_size * vision.patch_size**2
        cos, sin = rotary_planes(vision, layout.grids, getattr(torch, dtype), staging(device))
        cu_seqlens = get_vision_cu_seqlens(grid, merge_temporal=True).to(torch.int32)
        return {
            "pixel_values": random_input((layout.input_patches, features), dtype, device, generator),
            "grid_thw": grid.to(device),
            "rotary_cos": cos.to(device),
            "rotary_sin": sin.to(device),
            **varlen.sequences(
                tower.vision_tower.config, cu_seqlens, layout.max_seqlen, device, layout.spare_sequences
            ),
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)

    def reference_forward(self, tower, inputs: dict):
        return (tower(inputs["pixel_values"], inputs["grid_thw"]),)


ADAPTERS = (MiniMaxM3Adapter(),)
