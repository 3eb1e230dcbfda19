"""``encgraph predict``: the encoder graph pools without a GPU. Each budget's captured forward runs
on meta tensors (``trace``), and its allocations and frees go through the model of PyTorch's
caching allocator (``allocator_model``) in the pools and order the strategy captures them: what
the private pools would reserve.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass

from .allocator_model import AllocatorSettings, CachingAllocator, allocator_conf, parse_allocator_conf, round_size
from .errors import EnvironmentProblem
from .models.base import DTYPES, Layout
from .reporting import assemble, provenance
from .request import DEFAULT_CAPABILITY, Prepared
from .schema import BudgetResult, Capture, GraphKey, Pool, PoolName, PoolUsage, Report


@dataclass(frozen=True)
class PredictedBudget:
    budget: int
    pool_growth_bytes: int  # what this budget's capture adds to the encoder pools
    pool_reserved_bytes: int  # the encoder pools after it
    pool_segments: int  # their segments after it (an expandable segment counts once)
    output_bytes: int  # its outputs (left in the pool, or with vLLM's capture copied out of it)
    live_bytes: int  # the encoder pools' blocks still in use after it: the outputs kept so far
    allocations: int  # requests its capture makes
    input_bytes: int  # its static inputs, as the allocator would round them
    eager_peak_bytes: int  # the most its forward has allocated at once
    path: str = ""  # the encoder path of its graph, for families with more than one


def predict(setup: Prepared, allocator: AllocatorSettings | None = None) -> list[PredictedBudget]:
    """The encoder pools, graph by graph in capture order, as ``profile`` would measure them with
    the same settings, the allocator's included. Capturing as vLLM does, each graph's outputs are
    copied out and freed in its pool when the capture ends."""
    import torch

    from .trace import trace

    settings, adapter = setup.settings, setup.spec.adapter
    with torch.device("meta"):
        tower = adapter.build_tower(setup.tower_config, settings.dtype, settings.attn)
    model = CachingAllocator(settings=allocator or AllocatorSettings())
    results, live = [], 0
    with _frozen_heap():
        for layout in setup.capture_order():
            pool = "graph" if settings.pool is Pool.SHARED else layout.label
            inputs = adapter.make_inputs(
                tower,
                setup.tower_config,
                layout,
                settings.dtype,
                torch.device("meta"),
                torch.Generator().manual_seed(settings.seed),
            )
            events, outputs = trace(lambda inputs=inputs: adapter.forward(tower, inputs))
            if settings.capture is Capture.VLLM:
                events += [("free", key, 0) for key in outputs]
            before = sum(p.reserved_bytes for p in model.pools.values())
            blocks, allocations, peak = replay_events(model, events, pool)
            after = sum(p.reserved_bytes for p in model.pools.values())
            live += sum(block.size for block in blocks.values())
            inputs_bytes = sum(
                round_size(t.untyped_storage().nbytes())
                for t in inputs.values()
                if isinstance(t, torch.Tensor) and t.is_meta
            )
            segments = sum(len(p.segments) for p in model.pools.values())
            results.append(
                PredictedBudget(
                    layout.budget,
                    after - before,
                    after,
                    segments,
                    sum(outputs.values()),
                    live,
                    allocations,
                    inputs_bytes,
                    peak,
                    layout.path,
                )
            )
    return results


@contextmanager
def _frozen_heap():
    """What exists before the traces (modules, the tower) set aside from the garbage collector while
    they run: the traces' many short-lived objects set off full collections, which then scan only
    what the traces made (scanning everything took a quarter of Qwen2.5-VL's sdpa prediction). Only
    when a collection finds a cycle changes, and no bundled tower's storage dies in one: each dies
    as its last tensor goes, in the order the forward lets go of them."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def replay_events(model: CachingAllocator, events, pool) -> tuple[dict, int, int]:
    """``events`` through the allocator model in ``pool``: the blocks still allocated after them (by
    key), the requests made, and the most bytes requested at once (the forward's eager peak)."""
    blocks, requested = {}, {}
    allocations = held = peak = 0
    for kind, key, size in events:
        if kind == "alloc":
            blocks[key] = model.malloc(size, pool)
            requested[key] = round_size(size)
            allocations += 1
            held += requested[key]
            peak = max(peak, held)
        else:
            model.free(blocks.pop(key), pool)
            held -= requested.pop(key)
    return blocks, allocations, peak


def allocator_settings(conf: str) -> AllocatorSettings:
    """``conf`` as the allocator model takes it; a setting it does not cover is refused (exit 3)
    rather than guessed."""
    try:
        return parse_allocator_conf(conf)
    except ValueError as error:
        raise EnvironmentProblem(
            f"PYTORCH_CUDA_ALLOC_CONF={conf}: {error}; predict models PyTorch's native allocator with "
            "expandable_segments, max_split_size_mb and max_non_split_rounding_mb; unset the others to predict, or "
            "profile on a GPU with them"
        ) from None


def predicted_report(setup: Prepared, capability: tuple[int, int]) -> Report:
    """Predict ``setup`` (prepared for a GPU of ``capability``) into a report in profile's schema,
    marked predicted: pool figures from the model, no times, no replay, nothing outside the allocator."""
    conf = allocator_conf()
    allocator = allocator_settings(conf)
    started = time.perf_counter()
    predicted = predict(setup, allocator)
    layouts = {layout.key: layout for layout in setup.layouts}
    budgets = tuple(
        sorted((_budget_row(p, layouts[GraphKey(p.path, p.budget)]) for p in predicted), key=lambda b: b.key)
    )
    total, live = predicted[-1].pool_reserved_bytes, predicted[-1].live_bytes
    weights = setup.facts.tower_parameters * DTYPES[setup.settings.dtype]
    inputs = sum(p.input_bytes for p in predicted)
    pools = (
        PoolUsage(
            PoolName.ENCODER_GRAPHS,
            total,
            live,
            predicted[-1].pool_segments,
            len(predicted),
            {"live_outputs": live, "scratch": total - live},
        ),
        PoolUsage(PoolName.DEFAULT, None, weights + inputs, None, None, {"weights": weights, "static_inputs": inputs}),
        PoolUsage(PoolName.OUTSIDE_ALLOCATOR, None),
    )
    target = f"{capability[0]}.{capability[1]}"
    origin = provenance(f"predicted for compute capability {target}", 0, "", "", conf)
    warnings = (
        ()
        if capability == DEFAULT_CAPABILITY
        else (
            f"predicted for compute capability {target} with kernel rules found on an H100 "
            f"({DEFAULT_CAPABILITY[0]}.{DEFAULT_CAPABILITY[1]}): sdpa's buffers and cuDNN's convolution workspace may "
            "differ on that GPU; profile there to confirm",
        )
    )
    return assemble(
        setup,
        origin,
        budgets=budgets,
        pools=pools,
        process_used_bytes=None,
        wall_ms=(time.perf_counter() - started) * 1000,
        warnings=warnings,
        predicted=True,
    )


def _budget_row(p: PredictedBudget, layout: Layout) -> BudgetResult:
    return BudgetResult(
        budget=p.budget,
        items=layout.items,
        tokens=layout.tokens,
        input_patches=layout.input_patches,
        pool_growth_bytes=p.pool_growth_bytes,
        pool_reserved_bytes=p.pool_reserved_bytes,
        static_io_bytes=p.input_bytes,
        output_bytes=p.output_bytes,
        non_allocator_bytes=None,
        eager_peak_bytes=p.eager_peak_bytes,
        capture_ms=None,
        eager_ms=None,
        replay_ms=None,
        replay_matches_eager=None,
        replay_max_abs_diff=None,
        path=p.path,
    )
