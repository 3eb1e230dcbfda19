"""``encgraph predict``: the encoder graph pools without a GPU. Each budget's captured forward runs
on meta tensors (``trace``), and its allocations and frees go through the model of PyTorch's
caching allocator (``allocator_model``) in the pools and order the strategy captures them: what
the private pools would reserve.
"""

from __future__ import annotations

from dataclasses import dataclass

from .allocator_model import CachingAllocator
from .profile import Prepared


@dataclass(frozen=True)
class PredictedBudget:
    budget: int
    pool_growth_bytes: int  # what this budget's capture adds to the encoder pools
    pool_reserved_bytes: int  # the encoder pools after it
    output_bytes: int  # its outputs (left in the pool, or with vLLM's capture copied out of it)
    live_bytes: int  # the encoder pools' blocks still in use after it: the outputs kept so far
    allocations: int  # requests its capture makes


def predict(setup: Prepared) -> list[PredictedBudget]:
    """The encoder pools, budget by budget in capture order, as ``profile`` would measure them
    with the same settings. Capturing as vLLM does, each graph's outputs are copied out and freed
    in its pool when the capture ends."""
    import torch

    from .trace import trace

    settings, adapter = setup.settings, setup.spec.adapter
    with torch.device("meta"):
        tower = adapter.build_tower(setup.tower_config, settings.dtype, settings.attn)
    model = CachingAllocator()
    layouts = sorted(setup.layouts, key=lambda l: l.budget, reverse=settings.order == "largest-first")
    results, live = [], 0
    for layout in layouts:
        pool = "graph" if settings.pool == "shared" else layout.budget
        inputs = adapter.make_inputs(tower, setup.tower_config, layout, settings.dtype, torch.device("meta"),
                                     torch.Generator().manual_seed(settings.seed))
        with torch.inference_mode():
            events, outputs = trace(lambda: adapter.forward(tower, inputs))
        if settings.capture == "vllm":
            events += [("free", key, 0) for key in outputs]
        before = sum(p.reserved_bytes for p in model.pools.values())
        blocks = {}
        for kind, key, size in events:
            if kind == "alloc":
                blocks[key] = model.malloc(size, pool)
            else:
                model.free(blocks.pop(key), pool)
        after = sum(p.reserved_bytes for p in model.pools.values())
        live += sum(block.size for block in blocks.values())
        results.append(PredictedBudget(layout.budget, after - before, after, sum(outputs.values()), live,
                                       sum(k == "alloc" for k, _, _ in events)))
    return results
