"""The independent builders of tools/bare_ladder.py, one module per family: each declares MODEL_TYPES and
build(data, budgets, items, gen, attn="sdpa") -> (forward, runs, items), written against torch and
transformers only."""

import importlib
import pkgutil


def builders():
    """Each model type's builder, from the modules of this package."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for model_type in getattr(module, "MODEL_TYPES", ()):
            found[model_type] = module.build
    return found


def build_ladder(data, budgets, attn="sdpa"):
    """The config's tower and every graph's inputs, budgets largest first, by its model type's builder:
    (forward, runs, items per batch)."""
    import torch

    data = dict(data)
    build = builders()[data.pop("model_type")]
    budgets = sorted(budgets, reverse=True)
    items = max(1, min(budgets[0] // 64, budgets[-1]))
    extra = {"attn": attn} if attn != "sdpa" else {}
    return build(data, budgets, items, torch.Generator().manual_seed(0), **extra)
