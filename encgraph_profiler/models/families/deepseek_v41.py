"""DeepSeek-V4.1 with vision (``deepseek_v41``, DeepSeek-V4.1-Flash): a 2-D rotary ViT on 14 px
patches, then the aligner, which merges r x r patches (r = downsample_ratio, 3) and projects them
into the language model. transformers has no class for this tower nor for the ``deepseek_v41``
config, which vLLM reads with its own (transformers_utils/configs/deepseek_v41.py: the vision_config
fields flattened onto the model as ``vision_*``); encgraph builds the tower itself
(towers/deepseek_v41.py), its parameters named and shaped as the checkpoint's.

vLLM 0.33.0 captures its encoder graphs through DeepseekV41ForCausalLM, defined once for NVIDIA
(models/deepseek_v41/nvidia/vl_model.py) and once for ROCm (amd/vl_model.py); both take the capture
rules of DeepseekV4VLEncoderCudaGraphMixin (models/deepseek_v41/common/vl_cudagraph.py):

- Budgets and items (get_encoder_cudagraph_budget_range; EncoderCudaGraphManager, v1/worker/
  encoder_cudagraph.py): the smallest budget is 64 tokens, the ladder doubles from it with the
  largest (min(max_num_batched_tokens, max_model_len)) always included, and k items per batch is
  min(max_budget // 64, smallest budget) by default.
- The capture inputs (prepare_encoder_cudagraph_capture_inputs): images only, k dummy images, each
  one aligner row of per = ceil(B / k) merged windows, a patch grid of r x (r * per); k * per
  aligner rows >= B. Rotary tables, cu_seqlens and the merge's gather indices and mask are made
  outside the graph (build_packed_vit_metadata, build_packed_merge_metadata,
  models/deepseek_v4/common/vision.py); cu_seqlens holds k + 2 offsets, one spare zero-length
  sequence after the images, and the longest sequence varlen attention is told of is the whole
  batch, k * r^2 * per patches (``vllm_layout``).
- The graph (encoder_cudagraph_forward): the ViT over the whole batch as one varlen sequence
  (vLLM refuses its FlashInfer and torch sdpa ViT backends for this capture), then the aligner's
  merge as a gather with the mask and its projector. The delimiter vectors of each image's span are
  placed after the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ...errors import UsageError
from ...units import counted, is_whole_number
from ..base import Adapter, Layout, VllmSource, random_input
from ..grids import staging

# vLLM's DeepseekV41Config: the vision_config fields it reads, their flattened names' defaults.
VISION_DEFAULTS = {
    "num_hidden_layers": 0,
    "hidden_size": 1024,
    "num_attention_heads": 16,
    "intermediate_size": 2816,
    "patch_size": 14,
    "rope_theta": 10000.0,
    "downsample_ratio": 3,
}
ATTENTIONS = ("varlen", "sdpa", "eager")


@dataclass(frozen=True)
class DeepseekV41VisionConfig:
    """The tower's sizes, read from a deepseek_v41 config.json as vLLM's DeepseekV41Config reads them."""

    depth: int  # vision_n_layers
    width: int  # vision_dim
    heads: int  # vision_n_heads
    mlp_width: int  # vision_inter_dim
    patch_size: int  # vision_patch_size
    rope_theta: float  # vision_rope_theta
    downsample_ratio: int  # vision_downsample_ratio: the aligner merges r x r patches
    out_width: int  # the language model's hidden_size, the aligner's output


def _language_width(data: dict[str, Any]) -> Any:
    """The aligner's output width: vLLM sets the text_config fields onto its config, then the
    top-level ones over them."""
    text = data.get("text_config")
    return data.get("hidden_size", text.get("hidden_size") if isinstance(text, dict) else None)


def _vision_config(data: dict[str, Any]) -> DeepseekV41VisionConfig:
    vision = {**VISION_DEFAULTS, **{k: v for k, v in data["vision_config"].items() if k in VISION_DEFAULTS}}
    return DeepseekV41VisionConfig(
        depth=vision["num_hidden_layers"],
        width=vision["hidden_size"],
        heads=vision["num_attention_heads"],
        mlp_width=vision["intermediate_size"],
        patch_size=vision["patch_size"],
        rope_theta=float(vision["rope_theta"]),
        downsample_ratio=vision["downsample_ratio"],
        out_width=_language_width(data),
    )


class DeepseekV41Adapter(Adapter):
    family = "deepseek-v4.1"
    model_types = ("deepseek_v41",)
    vllm = VllmSource("models/deepseek_v41/nvidia/vl_model.py", "DeepseekV41ForCausalLM")
    vllm_also = (VllmSource("models/deepseek_v41/amd/vl_model.py", "DeepseekV41ForCausalLM"),)
    aliases = {"deepseek-v4.1": "deepseek-v4.1-flash"}
    # Its language model (sparse attention, Engram memory) has no class encgraph can build: no
    # whole-model size or KV cache is counted, only the tower.
    has_language_model = False
    packs_sequences = True
    captures_video = False  # get_encoder_cudagraph_config: modalities ["image"]
    # Without them vLLM would build its defaults (no ViT blocks at all where num_hidden_layers is absent).
    size_fields = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")

    def check_config(self, data: dict[str, Any], source: str) -> None:
        super().check_config(data, source)
        width = _language_width(data)
        if not is_whole_number(width, least=1):
            raise UsageError(
                f"{source}: text_config.hidden_size is {width!r}; the aligner projects into the language model's "
                "width, a whole number above 0"
            )
        given = data["vision_config"]
        if not is_whole_number(given.get("downsample_ratio", 1), least=1):
            raise UsageError(f"{source}: vision_config.downsample_ratio must be a whole number above 0")
        theta = given.get("rope_theta", 1)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or theta <= 0:
            raise UsageError(f"{source}: vision_config.rope_theta is {theta!r}; it must be a number above 0")
        vision = _vision_config(data)
        head = vision.width // vision.heads
        if head % 4:
            raise UsageError(
                f"{source}: the vision head size, {head}, is not a multiple of 4; its 2-D rotary embedding splits each "
                "head into row and column halves of rotated pairs, and vLLM's tower cannot run it"
            )

    def full_config(self, data: dict[str, Any]) -> DeepseekV41VisionConfig:
        """No transformers config reads deepseek_v41, and no language model is built: the tower's sizes."""
        return _vision_config(data)

    def tower_config(self, data: dict[str, Any]) -> DeepseekV41VisionConfig:
        return _vision_config(data)

    def build_tower(self, tower_config, dtype: str, attn: str):
        """The ViT and the aligner at random weights, attention by ``attn``: varlen (vLLM's flash
        kernel over the packed batch), sdpa or eager (one kernel per image)."""
        import torch

        from ..towers.deepseek_v41 import DeepseekV41Tower

        if attn not in ATTENTIONS:
            raise UsageError(
                f"--attn {attn} does not apply to the {self.family} tower, which encgraph builds itself: use varlen "
                "(vLLM's kernel), sdpa or eager"
            )
        return DeepseekV41Tower(tower_config, getattr(torch, dtype), attn).eval()

    def min_budget(self, tower_config) -> int:
        return 64  # vl_cudagraph.py, get_encoder_cudagraph_budget_range

    def layout(self, config: DeepseekV41VisionConfig, budget: int, items: int) -> Layout:
        """prepare_encoder_cudagraph_capture_inputs: k images, each one aligner row of ceil(B / k)
        r x r windows, grid [1, r, r * ceil(B / k)]."""
        r, p = config.downsample_ratio, config.patch_size
        per_item = -(-budget // items)
        patches = items * r * r * per_item
        return Layout(
            budget=budget,
            items=items,
            tokens=items * per_item,
            input_patches=patches,
            grids=((1, r, r * per_item),) * items,
            meaning=f"{budget:,} tokens = {counted(items, 'images')} of {r * p}x{r * per_item * p} px, "
            f"{patches:,} ViT patches merged {r}x{r}",
        )

    def vllm_layout(self, layout: Layout, config, frames_per_batch: int) -> Layout:
        """vLLM's capture inputs: the longest sequence the whole batch (max_seqlen_override), and
        cu_seqlens of k + 2 offsets, one spare zero-length sequence after the k images."""
        return replace(layout, max_seqlen=layout.input_patches, spare_sequences=1)

    def make_inputs(
        self, tower, config: DeepseekV41VisionConfig, layout: Layout, dtype: str, device, generator
    ) -> dict:
        import torch

        from ..towers.deepseek_v41 import merge_gather, rope_tables

        grids = tuple((rows, cols) for _, rows, cols in layout.grids)
        p = config.patch_size
        where = staging(device)
        cos, sin = rope_tables(grids, config.width // config.heads, config.rope_theta, where)
        merge_index, merge_mask = merge_gather(grids, config.downsample_ratio, where)
        lengths = [rows * cols for rows, cols in grids]
        if tower.attn == "varlen":
            offsets = [0, *torch.tensor(lengths).cumsum(0).tolist()]
            offsets += offsets[-1:] * layout.spare_sequences
            segments = {
                "cu_seqlens": torch.tensor(offsets, dtype=torch.int32, device=device),
                "max_seqlen": layout.max_seqlen or max(lengths),
            }
        else:
            segments = {"lengths": tuple(lengths)}
        return {
            "patches": random_input((layout.input_patches, 3, p, p), dtype, device, generator),
            "cos": cos.to(device),
            "sin": sin.to(device),
            "merge_index": merge_index.to(device),
            "merge_mask": merge_mask.to(device=device, dtype=getattr(torch, dtype)),
            **segments,
            "grids": grids,  # for reference_forward; not an input of the graph
        }

    def forward(self, tower, inputs: dict):
        return (tower(**{name: value for name, value in inputs.items() if name != "grids"}),)

    def reference_forward(self, tower, inputs: dict):
        """vLLM's eager path (encoder_eager_forward): each image alone through the ViT, with its own
        rotary tables, and the aligner's pad-and-unfold merge."""
        import torch

        patches = inputs["patches"].split([rows * cols for rows, cols in inputs["grids"]])
        return (
            torch.cat(
                [
                    tower.encode_image(part, rows, cols)
                    for part, (rows, cols) in zip(patches, inputs["grids"], strict=True)
                ]
            ),
        )


ADAPTERS = (DeepseekV41Adapter(),)
