"""Families vLLM captures on two encoder paths (its Step3-VL and DeepSeek-OCR captures): ``global``,
whole images of a fixed size, at most k of them per batch, and ``local``, the fixed-size crops of
large images, k not applying. Each path runs its own ladder of budgets (``Adapter.graph_layouts``),
from the tokens one of its items makes. A subclass gives each path's view size, the patch size, the
tokens one view makes and the words of the layout's caption."""

from __future__ import annotations

from ...units import counted
from ..base import Adapter, Layout


class TwoPathAdapter(Adapter):
    dynamic_resolution = False
    paths = ("global", "local")
    global_noun = "images"  # what the caption calls one global item; a local one is a crop
    patches_caption = "ViT patches downsampled to {per} tokens each"  # what becomes of the patches

    def view_size(self, config, path: str) -> int:
        """The side, in pixels, of one item of ``path``."""
        raise NotImplementedError

    def patch_size(self, config) -> int:
        raise NotImplementedError

    def tokens(self, config, size: int) -> int:
        """The tokens one view of ``size`` pixels makes."""
        raise NotImplementedError

    def tower_config(self, data):
        return self.full_config(data)  # the projector needs the language model's width

    def min_budget(self, config) -> int:
        return self.path_minimums(config)["global"]  # one global item: vLLM's smallest budget

    def path_minimums(self, config) -> dict[str, int]:
        return {path: self.tokens(config, self.view_size(config, path)) for path in self.paths}

    def path_layout(self, config, path: str, budget: int, items: int) -> Layout:
        size, per = self.view_size(config, path), self.path_minimums(config)[path]
        count = min(budget // per, items) if path == "global" else budget // per  # k caps the global items only
        patches = count * (size // self.patch_size(config)) ** 2
        noun = f"global {self.global_noun}" if path == "global" else "local crops"
        return Layout(
            budget=budget,
            items=count,
            tokens=count * per,
            input_patches=patches,
            path=path,
            meaning=f"{budget:,} tokens = {counted(count, noun)} of {size}x{size} px, "
            f"{patches:,} {self.patches_caption.format(per=per)}",
        )
