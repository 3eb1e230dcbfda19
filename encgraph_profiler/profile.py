"""``encgraph profile``: capture one encoder graph per budget and account for every byte.

Flow: resolve and validate everything that needs no GPU (model, config, budgets, layouts, decoder
settings) -> build the tower on the device -> make each budget's static inputs and warm it up on
the capture stream, smallest first, skipping a budget that the smaller ones show cannot fit ->
for each budget, largest first, settle, sample, capture into the one shared pool, settle, sample,
replay and compare -> final per-pool accounting. Only the ``Device`` touches the hardware.

``--as vllm`` captures as vLLM's encoder graph manager does instead: its capture inputs (the
adapter's ``vllm_layout``), then budget after budget its inputs, one warm-up and its capture, the
outputs copied to buffers outside the pool, the cache never emptied; and vLLM's own estimate (the
drop in free memory across it all) beside the pool, split into its parts.

Nothing measured is lost: a budget that runs out of memory is recorded and the ladder goes on; a
capture failure or a signal (SIGINT, SIGTERM) stops the ladder, and the report still holds every
budget measured before it, marked incomplete.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .device import Device, Sample
from .errors import CaptureFailure, DeviceOutOfMemory, EnvironmentProblem, Terminated, UsageError
from .graphcounts import DecoderSettings, GraphCounts, graph_counts
from .ladder import resolve_max_items
from .memory_snapshot import Phase, label
from .memory_snapshot import save as save_snapshot
from .models.base import Layout, canonical_dtype
from .models.facts import model_facts
from .models.registry import ModelSpec, resolve
from .report import (
    SCHEMA_VERSION,
    BudgetResult,
    BudgetStatus,
    GraphCountsReport,
    GraphGroupReport,
    ModelFacts,
    PoolName,
    PoolUsage,
    Provenance,
    ReleaseCheck,
    Report,
    Settings,
    UnmeasuredBudget,
    VllmEstimate,
)
from .units import gib

ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "varlen", "eager", "flash_attention_2")

# (what is happening, steps done, steps in all)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProfileRequest:
    model: str
    budgets: tuple[int, ...]
    revision: str | None = None  # for a Hugging Face id
    max_items: int | None = None
    dtype: str = "bfloat16"
    attn: str = "auto"  # see resolve_attention
    seed: int = 0
    warmup_iterations: int = 2
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    memory_snapshot: Path | None = None  # write the allocator history here, for pytorch.org/memory_viz
    check_release: bool = False  # at the end, drop every graph and say what came back to the driver
    pool: str = "shared"  # "shared" (vLLM): one private pool for every graph; "per-graph": one each
    order: str = "largest-first"  # or "smallest-first" (TensorRT-LLM)
    capture: str = "plain"  # or "vllm": vLLM's capture inputs and steps
    max_frames_per_batch: int = 0  # with capture "vllm": its video layout for this many frames per batch


POOLS = ("shared", "per-graph")
ORDERS = ("largest-first", "smallest-first")
CAPTURES = ("plain", "vllm")
# How each engine pools, orders and captures its encoder graphs, for --as. "plain" captures the
# tower on its own inputs, as encgraph lays out each budget; "vllm" as vLLM's graph manager does
# (its capture inputs, each budget's inputs, warm-up and capture in turn, outputs copied to
# buffers outside the pool, the cache never emptied).
ENGINES = {
    "vllm": ("shared", "largest-first", "vllm"),
    "vllm-legacy": ("per-graph", "largest-first", "vllm"),  # vLLM before its graphs shared one pool
    "sglang": ("per-graph", "largest-first", "plain"),  # one pool per captured size
    "tensorrt-llm": ("shared", "smallest-first", "plain"),
}


def strategy(engine: str | None, pool: str | None, order: str | None, capture: str | None) -> tuple[str, str, str]:
    """--as, --pool, --order and --capture together: the engine's choices, each overridable only by
    the same value; without --as, one shared pool, largest first, plain capture."""
    if engine is not None and engine.lower() not in ENGINES:
        raise UsageError(f"--as {engine!r}: choose one of {', '.join(ENGINES)}")
    chosen = ENGINES[engine.lower()] if engine else ("shared", "largest-first", "plain")
    for option, given, engines in zip(("--pool", "--order", "--capture"), (pool, order, capture), chosen):
        if engine is not None and given is not None and given != engines:
            raise UsageError(f"--as {engine} means {option} {engines}; drop {option} {given} or --as")
    return tuple(given or engines for given, engines in zip((pool, order, capture), chosen))


def parse_engines(text: str) -> list[str]:
    """"vllm,sglang" -> ["vllm", "sglang"]: known engines, each once, case-insensitive."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names or any(name not in ENGINES for name in names):
        raise UsageError(f"--as {text!r}: choose from {', '.join(ENGINES)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--as {text!r} names a strategy twice")
    return names


@dataclass(frozen=True)
class Prepared:
    """Everything about a profile that can be known and checked without a GPU."""

    spec: ModelSpec
    tower_config: object  # what the adapter builds the captured part from
    settings: Settings
    facts: ModelFacts
    layouts: tuple[Layout, ...]  # path by path, largest budget first: the capture order
    graph_counts: GraphCounts
    notes: tuple[str, ...] = ()  # what the report should say about how the budgets were laid out


def resolve_attention(attn: str, adapter, capability: tuple[int, int] | None = None) -> str:
    """``auto`` is the kernel vLLM's ViT attention picks: one varlen flash kernel over the packed
    sequences on GPUs of compute capability 8.0 and newer, where its flash-attention backend runs,
    for towers that pack sequences; sdpa otherwise (other towers, older GPUs, no GPU found). The
    capability is this host's first GPU's unless given."""
    if attn != "auto":
        return attn
    if capability is None:
        from .nvml import compute_capability

        capability = compute_capability()
    return "varlen" if adapter.packs_sequences and capability is not None and capability >= (8, 0) else "sdpa"


def _check_attention(attn: str, adapter) -> None:
    if attn == "varlen":
        if not adapter.packs_sequences:
            raise UsageError(f"--attn varlen runs one kernel over a batch's packed sequences, and the {adapter.family} tower "
                             "does not pack them (the Qwen-style, GLM, ERNIE-4.5-VL and Kimi towers do); use --attn sdpa")
        import importlib.util

        if importlib.util.find_spec("torch.nn.attention.varlen") is None:
            import torch

            raise EnvironmentProblem(f"--attn varlen needs torch 2.9 or newer (torch.nn.attention.varlen); this is {torch.__version__}")
    if attn == "flash_attention_2":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is None:
            raise EnvironmentProblem("--attn flash_attention_2 needs the flash-attn package, which is not installed here; use --attn sdpa")


def prepare(request: ProfileRequest, capability: tuple[int, int] | None = None) -> Prepared:
    """Validate a request and lay out every budget. Raises UsageError on bad input. ``capability``
    is the target GPU's compute capability where it is not this host's (``predict``)."""
    if request.capture not in CAPTURES:
        raise UsageError(f"--capture {request.capture!r}: choose {' or '.join(CAPTURES)}")
    if request.max_frames_per_batch < 0:
        raise UsageError(f"--max-frames-per-batch {request.max_frames_per_batch} must be 0 (images only) or more")
    if request.max_frames_per_batch and request.capture != "vllm":
        raise UsageError("--max-frames-per-batch lays budgets out as vLLM's video capture does: give it with --as vllm")
    if request.pool not in POOLS:
        raise UsageError(f"--pool {request.pool!r}: choose {' or '.join(POOLS)}")
    if request.order not in ORDERS:
        raise UsageError(f"--order {request.order!r}: choose {' or '.join(ORDERS)}")
    if request.warmup_iterations < 1:
        raise UsageError("--warmup must be at least 1: capture needs one eager run on the capture stream first")
    dtype = canonical_dtype(request.dtype)
    if request.attn not in ATTN_IMPLEMENTATIONS:
        raise UsageError(f"unknown --attn {request.attn!r}; choose one of {', '.join(ATTN_IMPLEMENTATIONS)}")
    spec = resolve(request.model, request.revision)
    adapter = spec.adapter
    attn = resolve_attention(request.attn, adapter, capability)
    _check_attention(attn, adapter)
    tower_config = adapter.tower_config(spec.config)
    if request.max_frames_per_batch and not adapter.captures_video:
        raise UsageError(f"--max-frames-per-batch: vLLM captures no video layout for {adapter.family}, only images; drop it")
    items = (resolve_max_items(request.budgets, request.max_items, adapter.min_budget(tower_config))
             if adapter.takes_max_items else None)
    layouts = tuple(capture_order(adapter.graph_layouts(tower_config, request.budgets, items or 0), adapter.paths,
                                  largest_first=True))
    if request.capture == "vllm":
        layouts = tuple(adapter.vllm_layout(layout, tower_config, request.max_frames_per_batch) for layout in layouts)
    counts = graph_counts(request.decoder, tuple(l.budget for l in layouts))
    settings = Settings(
        model=spec.name,
        family=adapter.family,
        dtype=dtype,
        attn=attn,
        budgets=tuple(sorted(request.budgets)),
        max_items=items if items is not None else max(l.items for l in layouts),
        seed=request.seed,
        revision=spec.revision,
        commit=spec.commit,
        layout="; ".join(l.meaning for l in layouts if l.budget == layouts[0].budget),  # the largest budget, on each path
        pool=request.pool,
        order=request.order,
        capture=request.capture,
        max_frames_per_batch=request.max_frames_per_batch,
    )
    return Prepared(spec, tower_config, settings, model_facts(spec, dtype), layouts, counts,
                    _path_ladder_notes(adapter, layouts, request.budgets))


def _path_ladder_notes(adapter, layouts, budgets) -> tuple[str, ...]:
    """For a family whose encoder paths run their own ladders, the ladders, where a budget given is
    on none of them (a family with one path captures every budget given: no note)."""
    unused = sorted(set(budgets) - {l.budget for l in layouts})
    if not unused:
        return ()
    ladders = "; ".join(f"{path} {min(b)}-{max(b)} ({len(b)} graphs)"
                        for path in adapter.paths if (b := [l.budget for l in layouts if l.path == path]))
    return (f"{adapter.family} captures each encoder path on vLLM's own ladder, from one item of that path doubling up to "
            f"the largest budget: {ladders}; the smaller budgets given ({', '.join(map(str, unused))}) do not apply to these paths",)


def _graph_counts_report(counts: GraphCounts, decoder: DecoderSettings) -> GraphCountsReport:
    groups = tuple(GraphGroupReport(g.kind, g.count, g.largest, g.sizes) for g in counts.groups)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in decoder.__dict__.items()}
    return GraphCountsReport(counts.line, groups, settings)


def _provenance(device: Device) -> Provenance:
    import torch
    import transformers

    info = device.info()
    return Provenance(
        gpu_name=info.name,
        gpu_total_bytes=info.total_bytes,
        driver=info.driver,
        cuda=info.cuda,
        torch=torch.__version__,
        transformers=transformers.__version__,
        encgraph=__version__,
        allocator_conf=info.allocator_conf,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


def _diff(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


@dataclass
class _Ready:
    """A budget whose inputs exist and whose warm-up ran: ready to capture."""

    layout: Layout
    run: Callable[[], tuple]  # the forward to capture, over the budget's static inputs
    io_bytes: int  # static inputs, and with --as vllm the buffers the outputs are copied to
    reference: tuple
    eager_ms: float
    peak_bytes: int
    buffer_bytes: int = 0  # of io_bytes, the output buffers


def _copied_to(run: Callable[[], tuple], buffers: tuple) -> Callable[[], tuple]:
    """``run``, its outputs copied into ``buffers``, which it returns: the graph's own outputs are
    freed inside its pool, as vLLM's are."""
    return lambda: tuple(b.copy_(o) for b, o in zip(buffers, run(), strict=True))


def capture_order(layouts, paths: tuple[str, ...], largest_first: bool) -> list[Layout]:
    """The order the graphs are captured in: path by path (as the adapter lists them), each path's
    budgets largest or smallest first."""
    return sorted(layouts, key=lambda l: (paths.index(l.path), -l.budget if largest_first else l.budget))


def _fit_estimate(ready: list[_Ready], layout: Layout) -> int | None:
    """Bytes the budget's inputs and eager forward need, scaled from the largest budget warmed up
    so far. Activation memory grows at least in proportion to the tokens, so this undercounts
    rather than overcounts: a budget it says cannot fit would not have fitted."""
    ready = [r for r in ready if r.layout.path == layout.path]  # each path has its own tower work
    if not ready:
        return None
    largest = max(ready, key=lambda r: r.layout.tokens)
    return (largest.io_bytes + largest.peak_bytes) * layout.tokens // largest.layout.tokens


def profile(request: ProfileRequest, progress: Progress | None = None, device: Device | None = None,
            setup: Prepared | None = None) -> Report:
    """Profile the encoder graphs of ``request.model`` on ``device`` (the current CUDA device by
    default); see the module docstring for the protocol. ``setup`` is ``prepare(request)`` when the
    caller already made it. Always returns a report once the tower is built: ``report.complete``
    says whether every budget was measured."""
    started = time.perf_counter()
    setup = setup or prepare(request)
    if device is None:
        from .cuda_device import CudaDevice

        device = CudaDevice()
    import torch

    report_progress = progress or (lambda *_: None)
    steps = 1 + 2 * len(setup.layouts)
    report_progress(f"building the {setup.spec.name} tower", 0, steps)

    warnings: list[str] = list(setup.notes) + list(device.problems)
    stream = device.new_stream()
    pools = [device.new_pool()] if request.pool == "shared" else []  # per-graph: one more before each capture
    device.settle()
    start = device.sample(pools)
    context_bytes = _diff(start.process_used_bytes, start.reserved_bytes)

    adapter = setup.spec.adapter
    dtype = setup.settings.dtype
    torch.manual_seed(request.seed)
    generator = torch.Generator().manual_seed(request.seed)  # inputs drawn on the host: a failed capture cannot spoil them
    with torch.device(device.torch_device):
        tower, weights_bytes = device.measure_allocated(lambda: adapter.build_tower(setup.tower_config, dtype, setup.settings.attn))
    device.settle()  # what building left cached goes back: every strategy starts from the weights alone
    provenance = _provenance(device)

    ready: list[_Ready] = []
    results: list[BudgetResult] = []
    unmeasured: dict[str, UnmeasuredBudget] = {}  # by graph label
    graphs: list[Any] = []  # every graph must stay referenced until the final sample: each one holds the pool
    stopped_by: str | None = None
    captures_started: list[str] = []  # graphs (labels) in the order their captures started
    failed_captures: list[str] = []  # graphs whose capture ran out of memory, leaving blocks in the pool
    done = 0
    as_vllm = request.capture == "vllm"
    # vLLM's capture loop never empties the cache; encgraph's own settles before each step so that
    # every warm-up starts from what is held, not what is cached.
    between_steps = device.synchronize if as_vllm else device.settle

    def forward(inputs):
        return lambda: adapter.forward(tower, inputs)

    def warm(layout: Layout) -> _Ready | None:
        """Make the budget's inputs and warm it up; None (recorded) where it cannot fit."""
        nonlocal done
        done += 1
        report_progress(f"warming up budget {layout.label}", done, steps)
        between_steps()
        needed = _fit_estimate(ready, layout)
        free = device.free_bytes()
        if needed is not None and needed > free:
            unmeasured[layout.label] = UnmeasuredBudget(
                layout.budget, BudgetStatus.OUT_OF_MEMORY,
                f"not run: the smaller budgets scale to at least {gib(needed)} GiB for its inputs and eager "
                f"forward, and {gib(free)} GiB is free",
            )
            return None
        began = device.clock_us()
        try:
            inputs, io_bytes = device.measure_allocated(
                lambda: adapter.make_inputs(tower, setup.tower_config, layout, dtype, device.torch_device, generator)
            )
            eager = device.warm_up(forward(inputs), stream, request.warmup_iterations)
            run, buffer_bytes = forward(inputs), 0
            if as_vllm:  # vLLM copies each graph's outputs to buffers made beside its inputs
                buffers, buffer_bytes = device.measure_allocated(
                    lambda: tuple(torch.empty_like(r, device=device.torch_device) for r in eager.reference))
                io_bytes += buffer_bytes
                run = _copied_to(run, buffers)
        except DeviceOutOfMemory as oom:
            inputs = None  # its memory goes back at the next settle
            unmeasured[layout.label] = UnmeasuredBudget(layout.budget, BudgetStatus.OUT_OF_MEMORY, str(oom), oom.requested_bytes,
                                                        layout.path)
            return None
        finally:
            phases.append(Phase(f"warm-up budget={layout.label}", began, device.clock_us()))
        item = _Ready(layout, run, io_bytes, eager.reference, eager.eager_ms, eager.peak_bytes, buffer_bytes)
        ready.append(item)
        return item

    def capture(item: _Ready) -> bool:
        """Capture one budget and measure it; False where the ladder must stop."""
        nonlocal done
        layout = item.layout
        done += 1
        report_progress(f"capturing budget {layout.label}", done, steps)
        if request.pool == "per-graph":
            pools.append(device.new_pool())
        between_steps()
        before = device.sample(pools)
        began = device.clock_us()
        captures_started.append(layout.label)
        try:
            captured = device.capture(item.run, pools[-1], stream, f"budget {layout.label}")
        except DeviceOutOfMemory as oom:
            unmeasured[layout.label] = UnmeasuredBudget(layout.budget, BudgetStatus.OUT_OF_MEMORY, str(oom), oom.requested_bytes,
                                                        layout.path)
            failed_captures.append(layout.label)
            return True
        except CaptureFailure as failure:
            unmeasured[layout.label] = UnmeasuredBudget(layout.budget, BudgetStatus.CAPTURE_FAILED, str(failure), path=layout.path)
            return False
        finally:
            phases.append(Phase(f"budget={layout.label}", began, device.clock_us()))
        between_steps()
        after = device.sample(pools)
        replayed = device.replay(captured, item.reference)
        graphs.append(captured)
        results.append(_budget_result(item, before, after, captured, replayed))
        report_progress(f"captured budget {layout.label}", done, steps)
        return True

    largest_first = request.order == "largest-first"
    phases: list[Phase] = []  # what each stretch of the allocator history belongs to
    if request.memory_snapshot is not None:
        device.record_history()
    estimate_start = (device.sample(pools), device.driver_free_bytes()) if as_vllm else None
    try:
        if as_vllm:  # vLLM's loop: each budget's inputs, one warm-up, its capture, budget after budget
            for layout in capture_order(setup.layouts, adapter.paths, largest_first):
                item = warm(layout)
                if item is not None and not capture(item):
                    stopped_by = "capture failure"
                    break
        else:  # every warm-up first, smallest first so that each can judge the next; then the captures
            for layout in reversed(setup.layouts):
                warm(layout)
            captures = {layout.label: i for i, layout in enumerate(capture_order(setup.layouts, adapter.paths, largest_first))}
            for item in sorted(ready, key=lambda r: captures[r.layout.label]):
                if not capture(item):
                    stopped_by = "capture failure"
                    break
    except KeyboardInterrupt as signal:
        stopped_by = "SIGTERM" if isinstance(signal, Terminated) else "SIGINT"
    estimate = _vllm_estimate(device, pools, estimate_start, ready) if as_vllm and not stopped_by else None

    measured = {r.label for r in results}
    for layout in setup.layouts:
        if layout.label not in measured and layout.label not in unmeasured:
            reason = f"not run: the ladder stopped ({stopped_by}) before this budget" if stopped_by else "not run"
            unmeasured[layout.label] = UnmeasuredBudget(layout.budget, BudgetStatus.NOT_RUN, reason, path=layout.path)
    if failed_captures:
        first_failed = min(failed_captures, key=captures_started.index)
        later = captures_started[captures_started.index(first_failed) + 1:]
        after_failure = [b for b in later if b in measured]
        if after_failure:
            warnings.append(
                f"the capture of budget {first_failed} ran out of memory; the pool figures of budgets "
                f"{', '.join(after_failure)}, captured after it, include what it left in the encoder pools"
            )

    if request.memory_snapshot is not None:
        warnings += _save_snapshot(device, phases, request.memory_snapshot)
    report_progress("accounting", steps, steps)
    pool_rows, process_used, pool_warnings = _pools(device, pools, weights_bytes, sum(r.io_bytes for r in ready), context_bytes, results)
    release = None
    if request.check_release:
        held = device.sample(pools)
        # Drop every reference this function holds to a graph, its outputs or its inputs.
        graphs.clear()
        ready.clear()
        item = None
        gc.collect()
        device.settle()
        release = _release_check(held, device.sample(pools))
    mismatched = [f"replay differs from eager for budget {b.label}" for b in results if not b.replay_matches_eager]
    return Report(
        schema_version=SCHEMA_VERSION,
        provenance=provenance,
        settings=setup.settings,
        model=setup.facts,
        budgets=tuple(sorted(results, key=lambda r: (r.path, r.budget))),
        pools=pool_rows,
        graph_counts=_graph_counts_report(setup.graph_counts, request.decoder),
        process_used_bytes=process_used,
        wall_ms=(time.perf_counter() - started) * 1000.0,
        warnings=tuple(warnings + pool_warnings + mismatched),
        unmeasured=tuple(sorted(unmeasured.values(), key=lambda u: (u.path, u.budget))),
        stopped_by=stopped_by,
        release=release,
        vllm_estimate=estimate,
    )


def _vllm_estimate(device: Device, pools: list, start: tuple[Sample, int], ready: list[_Ready]) -> VllmEstimate:
    """vLLM's estimate, read as vLLM reads it (the drop in free memory across the captures, the
    cache never emptied), and what it is made of."""
    before, free_before = start
    after, free_after = device.sample(pools), device.driver_free_bytes()
    drop = free_before - free_after
    pool = after.encoder.reserved_bytes - before.encoder.reserved_bytes
    held = sum(r.io_bytes for r in ready)  # inputs and output buffers, both in the default pool
    buffers = sum(r.buffer_bytes for r in ready)
    default_reserved = (after.reserved_bytes - after.encoder.reserved_bytes) - (before.reserved_bytes - before.encoder.reserved_bytes)
    return VllmEstimate(
        free_drop_bytes=drop,
        pool_bytes=pool,
        static_input_bytes=held - buffers,
        output_buffer_bytes=buffers,
        cached_bytes=default_reserved - held,
        outside_allocator_bytes=drop - pool - default_reserved,
    )


def _release_check(held: Sample, after: Sample) -> ReleaseCheck:
    """What came back once the graphs were dropped, and what still holds what did not."""
    left = after.encoder
    if left.reserved_bytes == 0:
        holder = ""
    elif left.live_bytes:
        holder = f"{left.live_bytes:,} bytes of graph outputs are still referenced, and with them their graphs' pool"
    else:
        holder = "a graph is still referenced somewhere: a live graph keeps its whole pool"
    nvml = _diff(held.process_used_bytes, after.process_used_bytes)
    return ReleaseCheck(held.encoder.reserved_bytes, left.reserved_bytes, held.reserved_bytes - after.reserved_bytes, nvml, holder)


def _save_snapshot(device: Device, phases: list[Phase], path: Path) -> list[str]:
    """Write the labelled allocator history; a failure to write is a warning: the measurements stand."""
    snapshot = label(device.history(), phases)
    try:
        save_snapshot(snapshot, path)
    except OSError as error:
        return [f"the memory snapshot could not be written to {path} ({error.strerror or error})"]
    return []


def _budget_result(item: _Ready, before: Sample, after: Sample, captured, replayed) -> BudgetResult:
    layout = item.layout
    nvml_delta = _diff(after.process_used_bytes, before.process_used_bytes)
    return BudgetResult(
        budget=layout.budget,
        items=layout.items,
        tokens=layout.tokens,
        input_patches=layout.input_patches,
        pool_growth_bytes=after.encoder.reserved_bytes - before.encoder.reserved_bytes,
        pool_reserved_bytes=after.encoder.reserved_bytes,
        static_io_bytes=item.io_bytes,
        output_bytes=captured.output_bytes,
        non_allocator_bytes=None if nvml_delta is None else nvml_delta - (after.reserved_bytes - before.reserved_bytes),
        eager_peak_bytes=item.peak_bytes,
        capture_ms=captured.capture_ms,
        eager_ms=item.eager_ms,
        replay_ms=replayed.replay_ms,
        replay_matches_eager=replayed.matches,
        replay_max_abs_diff=replayed.max_abs_diff,
        path=layout.path,
    )


def _pools(device: Device, pools: list, weights_bytes: int, static_io_bytes: int, context_bytes: int | None,
           results: list[BudgetResult]) -> tuple[tuple[PoolUsage, ...], int | None, list[str]]:
    """The per-pool rows at the end of the run, NVML's figure for the process, and warnings.

    Each pool's reserved and live bytes are summed from its own segments, and what lies outside
    the allocator is NVML's figure minus the allocator's own reserved counter. So the rows add up
    to NVML's figure only if the segments add up to the counter: a real check, not a remainder."""
    device.settle()
    final, default = device.sample(pools), device.default_pool()
    warnings = []
    segments_reserved = final.encoder.reserved_bytes + default.reserved_bytes
    if segments_reserved != final.reserved_bytes:
        warnings.append(
            f"the pools' segments add up to {segments_reserved:,} bytes but the allocator reserves "
            f"{final.reserved_bytes:,}: another private pool holds {final.reserved_bytes - segments_reserved:,} bytes"
        )
    segments_live = final.encoder.live_bytes + default.live_bytes
    if segments_live != final.allocated_bytes:
        warnings.append(
            f"the pools' live blocks add up to {segments_live:,} bytes but the allocator counts "
            f"{final.allocated_bytes:,} allocated"
        )
    outside = _diff(final.process_used_bytes, final.reserved_bytes)
    graph_exec = None if any(r.non_allocator_bytes is None for r in results) else sum(r.non_allocator_bytes for r in results)
    encoder = final.encoder
    pools = (
        PoolUsage(
            PoolName.ENCODER_GRAPHS, encoder.reserved_bytes, encoder.live_bytes, encoder.segments, len(results),
            {"live_outputs": encoder.live_bytes, "scratch": encoder.reserved_bytes - encoder.live_bytes},
        ),
        PoolUsage(
            PoolName.DEFAULT, default.reserved_bytes, default.live_bytes, default.segments, None,
            {"weights": weights_bytes, "static_inputs": static_io_bytes,
             "workspaces_and_cache": default.reserved_bytes - weights_bytes - static_io_bytes},
        ),
        PoolUsage(
            PoolName.OUTSIDE_ALLOCATOR, outside, None, None, None,
            {"cuda_context": context_bytes, "graph_executables": graph_exec,
             "other": None if None in (outside, context_bytes, graph_exec) else outside - context_bytes - graph_exec},
        ),
    )
    return pools, final.process_used_bytes, warnings
