"""Families that feed their vision model whole fixed-size images or tiles (S x S pixels) and pool
or shuffle each one into a fixed number of tokens: Gemma 3, InternVL, Llama 4, Idefics3 / SmolVLM.
A subclass gives the captured module (vision model and projector), how many tokens one tile makes
and how many tiles vLLM captures for a budget."""

from __future__ import annotations

from ...units import captured, counted
from ..base import Adapter, Layout, random_input


def side(value) -> int:
    """Image and patch sizes are an int or [height, width] of square tiles."""
    return value[0] if isinstance(value, (list, tuple)) else value


class TiledAdapter(Adapter):
    dynamic_resolution = False
    tile_noun = "tiles"  # what the layout's caption calls one captured item
    merge_verb = "shuffled"  # what becomes of a tile's patches: "shuffled" or "pooled" into tokens

    def tokens_per_tile(self, config) -> int:
        raise NotImplementedError

    def tiles(self, config, budget: int, items: int) -> int:
        """Tiles vLLM captures for ``budget`` (``items``: its maximum items per batch)."""
        raise NotImplementedError

    def tower_config(self, data):
        return self.full_config(data)  # the projector needs the language model's width

    def layout(self, config, budget: int, items: int) -> Layout:
        per_tile, tiles = self.tokens_per_tile(config), self.tiles(config, budget, items)
        size = side(config.vision_config.image_size)
        patches = tiles * (size // side(config.vision_config.patch_size)) ** 2
        return Layout(
            budget=budget,
            items=tiles,
            tokens=tiles * per_tile,
            input_patches=patches,
            meaning=f"{captured(budget, tiles * per_tile)} = {counted(tiles, self.tile_noun)} of {size}x{size} px, "
            f"{patches:,} ViT patches {self.merge_verb} to {per_tile} tokens each",
        )

    def make_inputs(self, tower, config, layout: Layout, dtype: str, device, generator) -> dict:

        size = side(config.vision_config.image_size)
        shape = (layout.items, config.vision_config.num_channels, size, size)
        return {"pixel_values": random_input(shape, dtype, device, generator)}

    def forward(self, tower, inputs: dict):
        return (tower(**inputs),)
