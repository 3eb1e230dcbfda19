"""What a run will do, decided without a GPU: the request, its validation, every graph's layout, the
capture order and the report's settings. ``profile`` (capture.py) executes a ``Prepared`` on the
device; ``predict`` traces it on meta tensors; ``plan`` and ``sweep`` prepare with it. Nothing here
touches ``torch.cuda``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EnvironmentProblem, UsageError
from .graphcounts import DecoderSettings, graph_counts
from .ladder import AutoLadder, resolve_max_items
from .models.base import Adapter, Layout, PixelNorm, canonical_dtype
from .models.registry import ModelSpec, resolve
from .schema import Capture, GraphCountsReport, GraphGroupReport, ModelFacts, Order, Pool, Settings
from .units import counted

ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "varlen", "eager", "flash_attention_2")
# The GPU `predict` and `plan` assume when none is named: an H100, whose kernels the trace rules were read from.
DEFAULT_CAPABILITY = (9, 0)
# Where vLLM's ViT attention runs its flash-attention backend: compute capability 8.0 and newer.
VARLEN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Strategy:
    """How an engine pools, orders and captures its encoder graphs."""

    pool: Pool = Pool.SHARED
    order: Order = Order.LARGEST_FIRST
    capture: Capture = Capture.PLAIN


# The strategies `--as` names. Without --as: the tower on its own inputs, one shared pool, largest first.
STRATEGIES = {
    "vllm": Strategy(Pool.SHARED, Order.LARGEST_FIRST, Capture.VLLM),
    "vllm-legacy": Strategy(
        Pool.PER_GRAPH, Order.LARGEST_FIRST, Capture.VLLM
    ),  # vLLM before its graphs shared one pool
    "sglang": Strategy(Pool.PER_GRAPH, Order.LARGEST_FIRST, Capture.PLAIN),  # one pool per captured size
    "tensorrt-llm": Strategy(Pool.SHARED, Order.SMALLEST_FIRST, Capture.PLAIN),
}


def _choice(kind: type, option: str, given: str | None) -> Any:
    if given is None:
        return None
    try:
        return kind(given.strip().lower())
    except ValueError:
        raise UsageError(f"{option} {given!r}: choose {' or '.join(c.value for c in kind)}") from None


def parse_strategy(
    name: str | None, pool: str | None = None, order: str | None = None, capture: str | None = None
) -> Strategy:
    """--as, --pool, --order and --capture together: the named strategy's choices, each overridable
    only by the same value; without --as, the default strategy with the choices given."""
    if name is not None and name.strip().lower() not in STRATEGIES:
        raise UsageError(f"--as {name!r}: choose one of {', '.join(STRATEGIES)}")
    named = STRATEGIES[name.strip().lower()] if name else Strategy()
    given = {
        "pool": _choice(Pool, "--pool", pool),
        "order": _choice(Order, "--order", order),
        "capture": _choice(Capture, "--capture", capture),
    }
    for key, value in given.items():
        if name is not None and value is not None and value != getattr(named, key):
            raise UsageError(f"--as {name} means --{key} {getattr(named, key)}; drop --{key} {value} or --as")
    return Strategy(**{key: value or getattr(named, key) for key, value in given.items()})


def parse_strategy_names(text: str) -> list[str]:
    """ "vllm,sglang" -> ["vllm", "sglang"]: named strategies, each once, case-insensitive."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names or any(name not in STRATEGIES for name in names):
        raise UsageError(f"--as {text!r}: choose from {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--as {text!r} names a strategy twice")
    return names


@dataclass(frozen=True)
class ProfileRequest:
    model: str
    budgets: tuple[int, ...] | AutoLadder  # an AutoLadder starts at the model's own smallest budget
    revision: str | None = None  # for a Hugging Face id
    max_items: int | None = None
    dtype: str = "bfloat16"
    attn: str = "auto"  # see resolve_attention
    seed: int = 0
    warmup_iterations: int = 2
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    memory_snapshot: Path | None = None  # write the allocator history here, for pytorch.org/memory_viz
    check_release: bool = False  # at the end, drop every graph and say what came back to the driver
    strategy: Strategy = field(default_factory=Strategy)
    max_frames_per_batch: int = 0  # with Capture.VLLM: its video layout for this many frames per batch


@dataclass(frozen=True)
class Prepared:
    """Everything about a run that can be known and checked without a GPU."""

    request: ProfileRequest
    spec: ModelSpec
    tower_config: Any  # what the adapter builds the captured part from
    settings: Settings
    facts: ModelFacts
    layouts: tuple[Layout, ...]  # path by path, largest budget first
    graph_counts: GraphCountsReport
    notes: tuple[str, ...] = ()  # what the report should say about how the budgets were laid out

    @property
    def adapter(self) -> Adapter:
        return self.spec.adapter

    @property
    def pixel_norm(self) -> PixelNorm | None:
        """The normalization the graphs run on uint8 pixels (vLLM's capture of some families), if any."""
        return next((layout.pixel_norm for layout in self.layouts if layout.pixel_norm is not None), None)

    def capture_order(self) -> list[Layout]:
        """The layouts in the order the strategy captures them."""
        largest_first = self.settings.order is Order.LARGEST_FIRST
        return capture_order(self.layouts, self.adapter.paths, largest_first, self.adapter.budget_major)


def capture_order(
    layouts: Iterable[Layout], paths: tuple[str, ...], largest_first: bool, budget_major: bool = False
) -> list[Layout]:
    """Path by path (as the adapter lists them, then as the layouts first name them), each path's
    budgets largest or smallest first; or, for capture axes (``budget_major``), budget by budget,
    each budget's axis keys in their order."""
    layouts = list(layouts)
    rank = {path: i for i, path in enumerate(dict.fromkeys([*paths, *(layout.path for layout in layouts)]))}

    def key(layout: Layout) -> tuple[int, int]:
        budget = -layout.budget if largest_first else layout.budget
        return (budget, rank[layout.path]) if budget_major else (rank[layout.path], budget)

    return sorted(layouts, key=key)


def resolve_attention(attn: str, adapter: Adapter, capability: tuple[int, int] | None = None) -> str:
    """``auto`` is the kernel vLLM's ViT attention picks: one varlen flash kernel over the packed
    sequences on GPUs of compute capability 8.0 and newer, where its flash-attention backend runs,
    for towers that pack sequences; sdpa otherwise (other towers, older GPUs, no GPU found). The
    capability is this host's first GPU's unless given."""
    if attn != "auto":
        return attn
    if capability is None:
        from .nvml import compute_capability

        capability = compute_capability()
    packs = adapter.packs_sequences and capability is not None and capability >= VARLEN_CAPABILITY
    return "varlen" if packs else "sdpa"


def _check_attention(attn: str, adapter: Adapter) -> None:
    if attn == "varlen":
        if not adapter.packs_sequences:
            raise UsageError(
                f"--attn varlen runs one kernel over a batch's packed sequences, and the {adapter.family} tower "
                "does not pack them (the Qwen-style, GLM, ERNIE-4.5-VL and Kimi towers do); use --attn sdpa"
            )
        if importlib.util.find_spec("torch.nn.attention.varlen") is None:
            import torch

            raise EnvironmentProblem(
                f"--attn varlen needs torch 2.9 or newer (torch.nn.attention.varlen); this is {torch.__version__}"
            )
    if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise EnvironmentProblem(
            "--attn flash_attention_2 needs the flash-attn package, which is not installed here; use --attn sdpa"
        )


def _check_request(request: ProfileRequest) -> None:
    if request.max_frames_per_batch < 0:
        raise UsageError(f"--max-frames-per-batch {request.max_frames_per_batch} must be 0 (images only) or more")
    if request.max_frames_per_batch and request.strategy.capture is not Capture.VLLM:
        raise UsageError("--max-frames-per-batch lays budgets out as vLLM's video capture does: give it with --as vllm")
    if request.warmup_iterations < 1:
        raise UsageError("--warmup must be at least 1: capture needs one eager run on the capture stream first")
    if request.attn not in ATTN_IMPLEMENTATIONS:
        raise UsageError(f"unknown --attn {request.attn!r}; choose one of {', '.join(ATTN_IMPLEMENTATIONS)}")


# Patches one image may hold: 2048 x 2048, 64 times Qwen2-VL's largest image (16,384 tokens of 4
# patches). Beyond it no processor makes an image, and its position tables alone take gigabytes.
MAX_PATCHES_PER_ITEM = 2**22


def _check_item_size(layouts: list[Layout]) -> None:
    """Refuse, before any work, a budget whose images would each be larger than any real one."""
    for layout in layouts:
        per_item = -(-layout.input_patches // layout.items)
        if per_item > MAX_PATCHES_PER_ITEM:
            raise UsageError(
                f"budget {layout.budget:,} over {counted(layout.items, 'items')} puts {per_item:,} patches in each, "
                f"more than any image holds ({MAX_PATCHES_PER_ITEM:,} at most here): give --max-items "
                f"{-(-layout.input_patches // MAX_PATCHES_PER_ITEM):,} or more, or a smaller budget"
            )


def prepare(request: ProfileRequest, capability: tuple[int, int] | None = None) -> Prepared:
    """Validate a request and lay out every graph. Raises UsageError on bad input. ``capability``
    is the target GPU's compute capability where it is not this host's (``predict``)."""
    from .models.facts import model_facts

    _check_request(request)
    dtype = canonical_dtype(request.dtype)
    spec = resolve(request.model, request.revision)
    adapter = spec.adapter
    attn = resolve_attention(request.attn, adapter, capability)
    _check_attention(attn, adapter)
    if request.strategy.capture is Capture.VLLM and adapter.vllm_attention not in (None, attn):
        raise UsageError(
            f"--as vllm --attn {attn}: vLLM captures {adapter.family}'s encoder graphs only with its flash-attention "
            f"ViT backend and refuses to capture with any other; give --attn {adapter.vllm_attention} (or auto on a "
            "GPU of compute capability 8.0 or newer)"
        )
    tower_config = adapter.tower_config(spec.config)
    if request.max_frames_per_batch and not adapter.captures_video:
        raise UsageError(
            f"--max-frames-per-batch: vLLM captures no video layout for {adapter.family}, only images; drop it"
        )
    smallest = adapter.min_budget(tower_config)
    budgets = request.budgets
    if isinstance(budgets, AutoLadder):
        budgets = budgets.budgets(smallest, spec.name)
    items = resolve_max_items(budgets, request.max_items, smallest) if adapter.takes_max_items else None
    layouts = capture_order(adapter.graph_layouts(tower_config, budgets, items or 0), adapter.paths, largest_first=True)
    if request.strategy.capture is Capture.VLLM:
        layouts = [adapter.vllm_capture_layout(x, tower_config, request.max_frames_per_batch) for x in layouts]
    _check_item_size(layouts)
    settings = Settings(
        model=spec.name,
        family=adapter.family,
        dtype=dtype,
        attn=attn,
        budgets=tuple(sorted(budgets)),
        max_items=items if items is not None else max(layout.items for layout in layouts),
        seed=request.seed,
        revision=spec.revision,
        commit=spec.commit,
        layout="; ".join(
            layout.meaning for layout in layouts if layout.budget == layouts[0].budget
        ),  # the largest budget, on each path
        pool=request.strategy.pool,
        order=request.strategy.order,
        capture=request.strategy.capture,
        max_frames_per_batch=request.max_frames_per_batch,
    )
    return Prepared(
        request,
        spec,
        tower_config,
        settings,
        model_facts(spec, dtype),
        tuple(layouts),
        graph_counts_report(request.decoder, tuple(layout.budget for layout in layouts)),
        _path_ladder_notes(adapter, layouts, budgets) + _uncaptured_note(adapter, request.strategy),
    )


def _uncaptured_note(adapter: Adapter, strategy: Strategy) -> tuple[str, ...]:
    """With --as vllm, for a family vLLM captures no encoder graphs for: what the figures then are."""
    from .models.census import load

    if strategy.capture is not Capture.VLLM or adapter.vllm is not None:
        return ()
    return (
        f"vLLM {load().vllm_version} captures no encoder graphs for {adapter.family} (it runs its encoder eagerly); "
        "these are the graphs it would hold, captured with vLLM's steps on the tower's own inputs",
    )


def _path_ladder_notes(adapter: Adapter, layouts: list[Layout], budgets: tuple[int, ...]) -> tuple[str, ...]:
    """For a family whose encoder paths run their own ladders, the ladders, where a budget given is
    on none of them (a family with one path captures every budget given: no note)."""
    unused = sorted(set(budgets) - {layout.budget for layout in layouts})
    if not unused:
        return ()
    ladders = "; ".join(
        f"{path} {min(b)}-{max(b)} ({len(b)} graphs)"
        for path in adapter.paths
        if (b := [layout.budget for layout in layouts if layout.path == path])
    )
    return (
        f"{adapter.family} captures each encoder path on vLLM's own ladder, from one item of that path doubling up to "
        f"the largest budget: {ladders}; the smaller budgets ({', '.join(map(str, unused))}) do not apply to "
        "these paths",
    )


def graph_counts_report(decoder: DecoderSettings, encoder_budgets: tuple[int, ...] | None) -> GraphCountsReport:
    """vLLM's graph counts for ``decoder`` and the encoder graphs, in the report's form."""
    counts = graph_counts(decoder, encoder_budgets)
    groups = tuple(GraphGroupReport(g.kind, g.count, g.largest, g.sizes) for g in counts.groups)
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in decoder.__dict__.items()}
    return GraphCountsReport(counts.line, groups, settings)
