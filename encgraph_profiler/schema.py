"""The report's types: frozen dataclasses and the enums of its closed sets. No torch.

The JSON report is a contract that ``check`` and ``plan`` (and users' dashboards) read; ``report_io``
writes and reads it. A change that breaks readers bumps ``SCHEMA_VERSION``.

Schema history: 1 (encgraph 0.1); 2 adds ``unmeasured`` and ``stopped_by``, and the default
pool's ``live_bytes`` no longer counts the encoder pool's live outputs a second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


class Choice(str, Enum):
    """A closed set of words a user gives and a report records: printed as the word itself."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class BudgetStatus(Choice):
    """Why a requested budget has no measured row."""

    OUT_OF_MEMORY = "out_of_memory"  # its warm-up or capture did not fit, or it could not fit
    CAPTURE_FAILED = "capture_failed"  # capture failed for another reason; the ladder stopped there
    NOT_RUN = "not_run"  # the run stopped (signal, failure) before this budget's turn

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")


class PoolName(Choice):
    ENCODER_GRAPHS = "encoder_graphs"
    DEFAULT = "default"
    OUTSIDE_ALLOCATOR = "outside_allocator"


class Pool(Choice):
    """How the encoder graphs share memory."""

    SHARED = "shared"  # one private pool for every graph (vLLM)
    PER_GRAPH = "per-graph"  # one private pool each (vLLM before its shared pool, SGLang)


class Order(Choice):
    """The order the graphs are captured in, each encoder path on its own."""

    LARGEST_FIRST = "largest-first"  # vLLM
    SMALLEST_FIRST = "smallest-first"  # TensorRT-LLM


class Capture(Choice):
    """What each graph is captured over."""

    PLAIN = "plain"  # the tower on its own inputs, as encgraph lays out each budget
    VLLM = "vllm"  # vLLM's capture inputs and steps: outputs copied out of the pool, the cache never emptied


class StopReason(Choice):
    """Why a ladder stopped before its last budget."""

    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"
    CAPTURE_FAILURE = "capture failure"


class GraphKey(NamedTuple):
    """One captured graph: its encoder path ("" for families with one) and its budget."""

    path: str
    budget: int

    @property
    def label(self) -> str:
        """Its name in messages, check scopes and allocator histories: "8192", or "local:8192"."""
        return f"{self.path}:{self.budget}" if self.path else str(self.budget)

    @property
    def name(self) -> str:
        """Its name in tables and charts: "8,192", or "local 8,192"."""
        return f"{self.path} {self.budget:,}" if self.path else f"{self.budget:,}"

    @property
    def order(self) -> tuple:
        """Where it sits in tables: by path, numbers in a path by value ("rows of 70" before "rows of 140"),
        then by budget."""
        parts = re.split(r"(\d+)", self.path)  # text and numbers alternate, so like compares with like
        return (tuple(int(part) if part.isdigit() else part for part in parts), self.budget)


@dataclass(frozen=True)
class Provenance:
    gpu_name: str
    gpu_total_bytes: int
    driver: str | None
    cuda: str | None
    torch: str
    transformers: str
    encgraph: str
    allocator_conf: str
    created_at: str
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES of the run: which GPU of the host it used
    vllm_rules: str | None = None  # the vLLM release whose encoder-graph rules laid the budgets out
    node: str | None = None  # the host it ran on, where a sweep placed it on a Ray cluster


@dataclass(frozen=True)
class Settings:
    model: str  # bundled name, path given, or Hugging Face id
    family: str
    dtype: str
    attn: str
    budgets: tuple[int, ...]  # every budget requested, measured or not
    max_items: int
    seed: int
    revision: str | None = None  # for a Hugging Face id: the revision asked for (None: the default branch)
    commit: str | None = None  # for a Hugging Face id: the snapshot commit its config came from
    layout: str = ""  # what the largest budget is, in images and patches
    pool: Pool = Pool.SHARED
    order: Order = Order.LARGEST_FIRST
    capture: Capture = Capture.PLAIN
    max_frames_per_batch: int = 0  # vLLM's video layout for this many frames per batch; 0: images

    @property
    def model_label(self) -> str:
        """The model as the report names it: a Hugging Face id with its revision and snapshot commit."""
        if self.commit is None:
            return self.model
        return f"{self.model} at {self.revision or 'the default branch'}, snapshot {self.commit[:12]}"


@dataclass(frozen=True)
class ModelFacts:
    """Counted on the meta device from the full config, so no weights are needed."""

    tower_parameters: int
    total_parameters: int | None  # vision + language model; None for encoder-only checkpoints
    weight_bytes: int | None  # total_parameters x dtype size
    kv_bytes_per_token: int | None  # 2 x layers x KV heads x head dim x dtype size
    max_position_embeddings: int | None


class OnGraph:
    """A row about one graph, named by its encoder path and budget."""

    path: str
    budget: int

    @property
    def key(self) -> GraphKey:
        return GraphKey(self.path, self.budget)

    @property
    def label(self) -> str:
        return self.key.label


@dataclass(frozen=True)
class BudgetResult(OnGraph):
    """One captured budget. Bytes are exact allocator or NVML figures; times are milliseconds."""

    budget: int
    items: int
    tokens: int  # tokens laid out, >= budget (items x ceil(budget / items))
    input_patches: int
    pool_growth_bytes: int  # encoder pool reserved after minus before this capture
    pool_reserved_bytes: int  # encoder pool reserved after this capture
    static_io_bytes: int  # this budget's static inputs, held in the default pool
    output_bytes: (
        int  # the graph's outputs, live inside the encoder pool (--as vllm: the buffers outside it they go to)
    )
    non_allocator_bytes: int | None  # process NVML delta minus reserved delta around the capture
    eager_peak_bytes: int  # peak allocated above the baseline during one eager forward
    capture_ms: float | None  # None in a prediction: nothing ran
    eager_ms: float | None
    replay_ms: float | None
    replay_matches_eager: bool | None  # None in a prediction
    replay_max_abs_diff: float | None  # None where the difference is not finite (NaN or inf in an output)
    path: str = ""  # the encoder path of this budget's graph, for families with more than one


@dataclass(frozen=True)
class UnmeasuredBudget(OnGraph):
    """A requested budget with no measurement, and why."""

    budget: int
    status: BudgetStatus
    reason: str  # one line
    requested_bytes: int | None = None  # the allocation that did not fit, when the allocator said
    path: str = ""  # as in BudgetResult


@dataclass(frozen=True)
class PoolUsage:
    """One row of the per-pool table. ``parts`` break ``reserved_bytes`` down and add up to it."""

    pool: PoolName
    reserved_bytes: int | None
    live_bytes: int | None = None
    segments: int | None = None
    graphs: int | None = None
    parts: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphGroupReport:
    kind: str
    count: int
    largest: int
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class GraphCountsReport:
    line: str
    groups: tuple[GraphGroupReport, ...]
    decoder_settings: dict[str, Any]


@dataclass(frozen=True)
class ReleaseCheck:
    """What dropping every graph and emptying the cache gave back (``profile --check-release``)."""

    pool_bytes_before: int  # the encoder pools' reserved bytes with the graphs alive
    pool_bytes_after: int  # what the encoder pools still hold afterwards: 0 when all came back
    reserved_returned_bytes: int  # drop in the allocator's reserved counter
    nvml_returned_bytes: int | None  # drop in this process's memory as NVML reports it
    held_by: str = ""  # what still holds the bytes that did not come back, when it can be named


@dataclass(frozen=True)
class VllmEstimate:
    """What vLLM's own estimate of the encoder graphs would be (``--as vllm``): the drop in the
    device's free memory across every budget's inputs, warm-up and capture, the cache never
    emptied in between, split into its parts. The parts add up to ``free_drop_bytes``."""

    free_drop_bytes: int  # the device's free memory before minus after (cudaMemGetInfo)
    pool_bytes: int  # the encoder pools' reserved bytes: what the graphs hold
    static_input_bytes: int  # every budget's input buffers, in the default pool
    output_buffer_bytes: int  # the buffers each graph copies its outputs to, in the default pool
    # default-pool memory reserved during the captures beyond the inputs and buffers: warm-up leftovers kept
    # cached; negative where inputs and buffers took room the weights' segments already had
    cached_bytes: int
    outside_allocator_bytes: int  # the rest of the drop: graph executables, library workspaces


@dataclass(frozen=True)
class Report:
    schema_version: int
    provenance: Provenance
    settings: Settings
    model: ModelFacts
    budgets: tuple[BudgetResult, ...]  # measured budgets, ascending
    pools: tuple[PoolUsage, ...]
    graph_counts: GraphCountsReport
    process_used_bytes: int | None  # NVML, this process, at the end of the run
    wall_ms: float
    warnings: tuple[str, ...] = ()
    unmeasured: tuple[UnmeasuredBudget, ...] = ()  # requested budgets without a measurement
    stopped_by: StopReason | None = None  # when the ladder stopped early
    release: ReleaseCheck | None = None  # with --check-release
    vllm_estimate: VllmEstimate | None = None  # with --as vllm
    predicted: bool = False  # made by `encgraph predict`, without a GPU: nothing here was measured

    def pool(self, name: PoolName | str) -> PoolUsage:
        return next(p for p in self.pools if p.pool == name)

    def budget(self, budget: int) -> BudgetResult:
        return next(b for b in self.budgets if b.budget == budget)

    @property
    def complete(self) -> bool:
        """Every requested budget was measured."""
        return not self.unmeasured and self.stopped_by is None

    @property
    def replay_mismatches(self) -> tuple[str, ...]:
        return tuple(b.label for b in self.budgets if b.replay_matches_eager is False)

    @property
    def total_bytes(self) -> int | None:
        """What the process holds on the device: the pools' rows added up."""
        rows = [p.reserved_bytes for p in self.pools]
        return None if None in rows else sum(r for r in rows if r is not None)
