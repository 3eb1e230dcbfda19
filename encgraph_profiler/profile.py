"""``encgraph profile``: capture one encoder graph per budget and account for every byte.

Flow: resolve and validate everything that needs no GPU (model, budgets, layouts, decoder
settings) -> build the tower on the GPU -> make each budget's static inputs and warm it up on the
capture stream -> for each budget, largest first, settle, sample, capture into the one shared pool,
settle, sample, replay and compare -> final per-pool accounting. ``capture`` and ``nvml`` are the
only modules that touch the hardware.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import __version__
from .errors import CaptureFailure, UsageError
from .graphcounts import DecoderSettings, GraphCounts, graph_counts
from .ladder import resolve_max_items
from .models.base import Layout, canonical_dtype
from .models.facts import model_facts
from .models.registry import ModelSpec, resolve
from .report import (
    SCHEMA_VERSION,
    BudgetResult,
    GraphCountsReport,
    GraphGroupReport,
    PoolUsage,
    Provenance,
    Report,
    Settings,
)

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")

# (what is happening, steps done, steps in all)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProfileRequest:
    model: str
    budgets: tuple[int, ...]
    max_items: int | None = None
    dtype: str = "bfloat16"
    attn: str = "sdpa"
    seed: int = 0
    warmup_iterations: int = 2
    decoder: DecoderSettings = field(default_factory=DecoderSettings)


@dataclass(frozen=True)
class Prepared:
    """Everything about a profile that can be known and checked without a GPU."""

    spec: ModelSpec
    vision_config: object
    dtype: str
    items: int | None  # images per batch; None for fixed-resolution towers
    layouts: tuple[Layout, ...]  # largest budget first: the capture order
    graph_counts: GraphCounts


def prepare(request: ProfileRequest) -> Prepared:
    """Validate a request and lay out every budget. Raises UsageError on bad input."""
    if request.attn not in ATTN_IMPLEMENTATIONS:
        raise UsageError(f"unknown --attn {request.attn!r}; choose one of {', '.join(ATTN_IMPLEMENTATIONS)}")
    if request.warmup_iterations < 1:
        raise UsageError("--warmup must be at least 1: capture needs one eager run on the capture stream first")
    dtype = canonical_dtype(request.dtype)
    spec = resolve(request.model)
    adapter = spec.adapter
    vision_config = adapter.vision_config(adapter.full_config(spec.config))
    items = resolve_max_items(request.budgets, request.max_items) if adapter.dynamic_resolution else None
    layouts = tuple(adapter.layout(vision_config, b, items or 0) for b in sorted(request.budgets, reverse=True))
    counts = graph_counts(request.decoder, request.budgets)
    return Prepared(spec, vision_config, dtype, items, layouts, counts)


def _graph_counts_report(counts: GraphCounts, decoder: DecoderSettings) -> GraphCountsReport:
    groups = tuple(GraphGroupReport(g.kind, g.count, g.largest, g.sizes) for g in counts.groups)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in decoder.__dict__.items()}
    return GraphCountsReport(counts.line, groups, settings)


def _provenance(torch, device, nvml) -> Provenance:
    import transformers

    props = torch.cuda.get_device_properties(device)
    return Provenance(
        gpu_name=props.name,
        gpu_total_bytes=int(props.total_memory),
        driver=nvml.driver_version(),
        cuda=torch.version.cuda,
        torch=torch.__version__,
        transformers=transformers.__version__,
        encgraph=__version__,
        allocator_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF", os.environ.get("PYTORCH_ALLOC_CONF", "")),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _diff(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def profile(request: ProfileRequest, progress: Progress | None = None) -> Report:
    """Profile the encoder graphs of ``request.model``; see the module docstring for the protocol.

    On a capture failure the CaptureFailure raised carries ``partial``: the report of the budgets
    measured before it, so that nothing measured is lost.
    """
    started = time.perf_counter()
    setup = prepare(request)
    from . import capture
    from .nvml import Nvml

    torch = capture.torch
    device = capture.require_cuda()
    report_progress = progress or (lambda *_: None)
    steps = 1 + 2 * len(setup.layouts)
    report_progress(f"building {setup.spec.name} tower", 0, steps)

    warnings: list[str] = []
    nvml = Nvml(capture.pci_bus_id(device))
    if nvml.problem:
        warnings.append(nvml.problem)
    capture.settle()
    context_bytes = nvml.process_used_bytes()
    if nvml.available and context_bytes is None:
        warnings.append("NVML does not report this process's memory here; outside-allocator figures show n/a")
    context_bytes = _diff(context_bytes, capture.reserved_bytes())

    facts = model_facts(setup.spec, setup.dtype)
    adapter = setup.spec.adapter
    torch.manual_seed(request.seed)
    generator = torch.Generator().manual_seed(request.seed)  # inputs drawn on the host: see MEASUREMENT 13
    before = capture.allocated_bytes()
    with torch.device(device):
        tower = adapter.build_tower(setup.vision_config, setup.dtype, request.attn)
    capture.settle()
    weights_bytes = capture.allocated_bytes() - before

    stream, pool = capture.new_stream(), capture.new_pool()
    prepared = []
    for done, layout in enumerate(setup.layouts, start=1):
        report_progress(f"warming up budget {layout.budget}", done, steps)
        before = capture.allocated_bytes()
        inputs = adapter.make_inputs(tower, setup.vision_config, layout, setup.dtype, device, generator)
        io_bytes = capture.allocated_bytes() - before
        try:
            reference, eager_ms, peak = capture.warm_up(
                lambda inputs=inputs: adapter.forward(tower, inputs), stream, request.warmup_iterations
            )
        except torch.OutOfMemoryError as err:
            raise CaptureFailure(f"out of memory in the eager warm-up of budget {layout.budget}: lower the largest budget") from err
        prepared.append((layout, inputs, io_bytes, reference, eager_ms, peak))

    provenance = _provenance(torch, device, nvml)
    settings = Settings(
        model=setup.spec.name,
        family=adapter.family,
        dtype=setup.dtype,
        attn=request.attn,
        budgets=tuple(sorted(request.budgets)),
        max_items=setup.items if setup.items is not None else max(l.items for l in setup.layouts),
        seed=request.seed,
    )
    results: list[BudgetResult] = []
    graphs = []  # every graph must stay referenced until the final sample: each one holds the pool

    def build_report(extra_warnings: tuple[str, ...] = ()) -> Report:
        capture.settle()
        encoder = capture.pool_bytes(pool)
        reserved = capture.reserved_bytes()
        process_used = nvml.process_used_bytes()
        static_io = sum(p[2] for p in prepared)
        default_reserved = reserved - encoder.reserved_bytes
        outside = _diff(process_used, reserved)
        graph_exec = None if any(r.non_allocator_bytes is None for r in results) else sum(r.non_allocator_bytes for r in results)
        pools = (
            PoolUsage(
                "encoder_graphs", encoder.reserved_bytes, encoder.live_bytes, encoder.segments, len(results),
                {"live_outputs": encoder.live_bytes, "scratch": encoder.reserved_bytes - encoder.live_bytes},
            ),
            PoolUsage(
                "default", default_reserved, capture.allocated_bytes(), None, None,
                {"weights": weights_bytes, "static_inputs": static_io,
                 "workspaces_and_cache": default_reserved - weights_bytes - static_io},
            ),
            PoolUsage(
                "outside_allocator", outside, None, None, None,
                {"cuda_context": context_bytes, "graph_executables": graph_exec,
                 "other": None if None in (outside, context_bytes, graph_exec) else outside - context_bytes - graph_exec},
            ),
        )
        mismatched = [r.budget for r in results if not r.replay_matches_eager]
        notes = [f"replay differs from eager for budget {b}" for b in mismatched]
        return Report(
            schema_version=SCHEMA_VERSION,
            provenance=provenance,
            settings=settings,
            model=facts,
            budgets=tuple(sorted(results, key=lambda r: r.budget)),
            pools=pools,
            graph_counts=_graph_counts_report(setup.graph_counts, request.decoder),
            process_used_bytes=process_used,
            wall_ms=(time.perf_counter() - started) * 1000.0,
            warnings=tuple(warnings + notes) + extra_warnings,
        )

    for done, (layout, inputs, io_bytes, reference, eager_ms, peak) in enumerate(prepared, start=1 + len(prepared)):
        report_progress(f"capturing budget {layout.budget}", done, steps)
        capture.settle()
        reserved0, pool0, used0 = capture.reserved_bytes(), capture.pool_bytes(pool), nvml.process_used_bytes()
        try:
            graph, outputs, capture_ms = capture.capture(
                lambda inputs=inputs: adapter.forward(tower, inputs), pool, stream, f"budget {layout.budget}"
            )
        except CaptureFailure as err:
            if results:
                try:
                    err.partial = build_report((f"incomplete: {err}",))
                except Exception:  # noqa: BLE001 - a broken CUDA context cannot be sampled again
                    err.partial = None
            raise
        capture.settle()
        reserved1, pool1, used1 = capture.reserved_bytes(), capture.pool_bytes(pool), nvml.process_used_bytes()
        nvml_delta = _diff(used1, used0)
        replay_ms, matches, max_diff = capture.replay(graph, outputs, reference)
        graphs.append((graph, outputs))
        results.append(
            BudgetResult(
                budget=layout.budget,
                items=layout.items,
                tokens=layout.tokens,
                input_patches=layout.input_patches,
                pool_growth_bytes=pool1.reserved_bytes - pool0.reserved_bytes,
                pool_reserved_bytes=pool1.reserved_bytes,
                static_io_bytes=io_bytes,
                output_bytes=sum(int(t.untyped_storage().nbytes()) for t in outputs),
                non_allocator_bytes=None if nvml_delta is None else nvml_delta - (reserved1 - reserved0),
                eager_peak_bytes=peak,
                capture_ms=capture_ms,
                eager_ms=eager_ms,
                replay_ms=replay_ms,
                replay_matches_eager=matches,
                replay_max_abs_diff=max_diff,
            )
        )
    report_progress("done", steps, steps)
    return build_report()
