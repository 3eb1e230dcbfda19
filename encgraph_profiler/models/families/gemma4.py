"""Gemma 4: a ViT over patches with 2-D positions given per patch (-1 for padding), average-pooled
k x k into soft tokens (k the pooling kernel), then the multimodal embedder to the language model's
width. The captured graph covers all of it, as vLLM's does.

vLLM 0.33.0 (gemma4_mm.py, Gemma4ForConditionalGeneration) captures one graph per budget and row
width: get_encoder_cudagraph_config's capture axis is the row widths of 70, 140, 280, 560 and 1120
soft tokens up to the configured maximum (the vision config's default_output_length; here the image
processor's max_soft_tokens, 280 by default, where a config has none), for images and video frames;
get_encoder_cudagraph_budget_range starts at 70. For budget B and width t,
prepare_encoder_cudagraph_capture_inputs makes min(max(k_items, F), max(1, B // t)) rows of t x k^2
patches (k_items the items per batch, F the frames per batch: 0 here unless --as vllm
--max-frames-per-batch) and B gather indices; encoder_cudagraph_forward pools each row to t soft
tokens, gathers B of them and embeds those. The encoder graph manager captures budget after budget,
largest first, each budget's widths in order. Each graph is named by its width, as ``rows of t``.

vLLM captures on padding alone; here each row holds a near-square grid of soft tokens less its last
row, with real patch positions, and padding after it, as the image processor pads a smaller image:
the same shapes, and the masked path, with values that replay and eager agree on.
"""

from __future__ import annotations

from ...units import counted
from ..base import Adapter, Layout, VllmSource, random_input
from ..grids import staging

DEFAULT_MAX_SOFT_TOKENS = 280  # transformers' Gemma4ImageProcessor


def _tower_module():
    """Gemma 4's vision model and multimodal embedder as one module (defined lazily: it needs torch)."""
    import torch
    from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder, Gemma4VisionModel

    class Gemma4Tower(torch.nn.Module):
        def __init__(self, config, dtype, attn):
            super().__init__()
            self.vision_tower = Gemma4VisionModel._from_config(
                config.vision_config, dtype=dtype, attn_implementation=attn
            )
            self.embed_vision = Gemma4MultimodalEmbedder(config.vision_config, config.text_config).to(dtype)

        def forward(self, pixel_values, pixel_position_ids, gather_indices):
            """vLLM's encoder_cudagraph_forward over transformers' modules: the ViT, each row pooled to
            its soft tokens, standardized as vLLM does it (float32 features less the buffers, which stay
            in the model's dtype), then the budget's tokens gathered and embedded."""
            vision = self.vision_tower
            config = vision.config
            padding = (pixel_position_ids == -1).all(dim=-1)
            embeds = vision.patch_embedder(pixel_values, pixel_position_ids, padding)
            hidden = vision.encoder(
                inputs_embeds=embeds, attention_mask=~padding, pixel_position_ids=pixel_position_ids
            ).last_hidden_state
            pooled, _ = vision.pooler(
                hidden_states=hidden,
                pixel_position_ids=pixel_position_ids,
                padding_positions=padding,
                output_length=pixel_values.shape[-2] // config.pooling_kernel_size**2,
            )
            if config.standardize:  # float32 pooled less the model-dtype buffers, as vLLM: no float copies
                pooled = (pooled - vision.std_bias) * vision.std_scale
            # the float32 gathered tokens go once cast, as vLLM rebinds them, before the embedder runs
            return self.embed_vision(pooled.reshape(-1, pooled.shape[-1])[gather_indices].to(embeds.dtype))

    return Gemma4Tower


def _soft_grid(tokens: int) -> tuple[int, int]:
    """Rows and columns of soft tokens, as near square as ``tokens`` allows."""
    rows = max(r for r in range(1, int(tokens**0.5) + 1) if tokens % r == 0)
    return rows, tokens // rows


ROW_WIDTHS = (70, 140, 280, 560, 1120)  # vLLM's _SUPPORTED_SOFT_TOKENS: its capture axis


def _row_width(config, layout: Layout) -> int:
    """The soft tokens of each of a graph's rows, from its patches."""
    return layout.input_patches // (layout.items * config.vision_config.pooling_kernel_size**2)


def _rows(budget: int, width: int, items: int, frames: int) -> int:
    return min(max(items, frames), max(1, budget // width))


class Gemma4Adapter(Adapter):
    family = "gemma4"
    model_types = ("gemma4",)
    vllm = VllmSource("model_executor/models/gemma4_mm.py", "Gemma4ForConditionalGeneration")
    aliases = {"gemma4": "gemma-4-31b", "gemma-4": "gemma-4-31b"}
    config_class_name = "transformers:Gemma4Config"
    model_class_name = "transformers:Gemma4ForConditionalGeneration"
    dynamic_resolution = False
    captures_video = True
    budget_major = True
    preprocessor_fields = ("max_soft_tokens",)
    size_fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size")

    def tower_config(self, data):
        config = self.full_config(data)  # the embedder needs the language model's width
        configured = getattr(config.vision_config, "default_output_length", None)
        config.max_soft_tokens = configured or self.preprocessor_int(data, "max_soft_tokens", DEFAULT_MAX_SOFT_TOKENS)
        return config

    def min_budget(self, config) -> int:
        return ROW_WIDTHS[0]  # vLLM's smallest Gemma 4 budget

    def tower_module(self):
        return _tower_module()

    @staticmethod
    def widths(config) -> tuple[int, ...]:
        return tuple(t for t in ROW_WIDTHS if t <= config.max_soft_tokens)

    def graph_layouts(self, config, budgets: tuple[int, ...], items: int) -> list[Layout]:
        """One graph per budget and row width."""
        return [self._layout(config, budget, width, items, 0) for width in self.widths(config) for budget in budgets]

    def _layout(self, config, budget: int, width: int, items: int, frames: int) -> Layout:
        k, p = config.vision_config.pooling_kernel_size, config.vision_config.patch_size
        rows = _rows(budget, width, items, frames)
        grid_rows, grid_cols = _soft_grid(width)
        patches = rows * width * k * k
        return Layout(
            budget=budget,
            items=rows,
            tokens=budget,
            input_patches=patches,
            path=f"rows of {width}",
            meaning=f"{budget:,} tokens = {counted(rows, 'rows')} of {width} soft tokens (up to "
            f"{grid_rows * k * p}x{grid_cols * k * p} px), {patches:,} ViT patches pooled {k}x{k}, {budget:,} gathered",
        )

    def vllm_layout(self, layout: Layout, config, frames_per_batch: int) -> Layout:
        """With F frames per batch, a width's rows are min(max(k_items, F), max(1, B // t)): the rows
        the images alone give (min(k_items, B // t)) raised to F where B // t allows."""
        if not frames_per_batch:
            return layout
        return self._layout(config, layout.budget, _row_width(config, layout), layout.items, frames_per_batch)

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:
        import torch

        k, p = config.vision_config.pooling_kernel_size, config.vision_config.patch_size
        width = _row_width(config, layout)
        rows, cols = _soft_grid(width)
        rows = max(rows - 1, 1)  # a near-square image less its last row of soft tokens, then padding
        y, x = torch.meshgrid(torch.arange(rows * k), torch.arange(cols * k), indexing="ij")
        positions = torch.full((1, width * k * k, 2), -1, dtype=torch.long)  # one image's, each alike; -1: padding
        positions[:, : rows * cols * k * k] = torch.stack([x.flatten(), y.flatten()], dim=-1)
        where = staging(device)
        shape = (layout.items, width * k * k, 3 * p * p)
        return {
            "pixel_values": random_input(shape, dtype, device, generator, uniform=True),
            "pixel_position_ids": positions.to(where).repeat(layout.items, 1, 1).to(device),
            "gather_indices": torch.zeros(layout.budget, dtype=torch.long, device=where).to(device),
        }

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)


ADAPTERS = (Gemma4Adapter(),)
