"""``encgraph plan``: what is left for the KV cache once weights and graphs are in. No torch.

The equation follows vLLM's accounting: requested = total x utilization; minus weights, activation
peak, memory outside the allocator, decoder graphs, encoder graphs and a safety margin; what
remains is the KV cache. Every term carries its source: measured (the profile report), config
(counted from the full model config), user (an option) or preset (a GPU preset).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .report import Report
from .units import parse_size

GiB = 1024**3

# Total memory as CUDA reports it (torch.cuda.get_device_properties().total_memory, also what
# nvidia-smi prints), not the marketing figure. H100 and H200 read on the lent machines here;
# the others are the figures nvidia-smi prints for those cards.
GPU_PRESETS = {
    "H100-80GB": 81559 * 1024**2,
    "H200-141GB": 143771 * 1024**2,
    "A100-80GB": 81920 * 1024**2,
    "A100-40GB": 40960 * 1024**2,
    "L40S": 46068 * 1024**2,
    "L4": 23034 * 1024**2,
    "RTX-4090": 24564 * 1024**2,
}

KV_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


def gpu_memory(preset: str | None, size: str | None) -> tuple[str, int, str]:
    """(label, total bytes, source) from --gpu or --gpu-memory."""
    if preset and size:
        raise UsageError("give either --gpu or --gpu-memory, not both")
    if size:
        total = parse_size(size)
        if total <= 0:
            raise UsageError(f"--gpu-memory {size!r} must be more than zero")
        return size, total, "user"
    name = preset or "H100-80GB"
    match = {k.lower(): k for k in GPU_PRESETS}.get(name.lower())
    if match is None:
        raise UsageError(f"unknown --gpu {name!r}; presets: {', '.join(GPU_PRESETS)}; or give --gpu-memory 80GiB")
    return match, GPU_PRESETS[match], "preset"


def parse_utilization(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"cannot read --gpu-memory-utilization {text!r}: give a fraction such as 0.9") from None
    if not 0 < value <= 1:
        raise UsageError(f"--gpu-memory-utilization {value} must be above 0 and at most 1")
    return value


@dataclass(frozen=True)
class PlanInputs:
    gpu: str
    total_bytes: int
    total_source: str
    utilization: float = 0.9
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = None
    margin_bytes: int = 0
    decoder_graph_bytes: int | None = None
    activation_bytes: int | None = None


@dataclass(frozen=True)
class Term:
    name: str
    bytes: int
    source: str  # measured, config, user, preset, derived, not measured


@dataclass(frozen=True)
class CapacityPlan:
    model: str
    gpu: str
    budgets: tuple[int, ...]
    max_items: int
    terms: tuple[Term, ...]  # requested first, then what is subtracted
    kv_cache_bytes: int
    kv_bytes_per_token: int | None
    kv_tokens: int | None
    max_model_len: int | None
    concurrency: float | None
    tokens_per_graph_gib: int | None
    fits: bool
    verdict: str
    shortfall_bytes: int
    fitting_ladder: tuple[int, ...] | None  # largest prefix of the report's budgets that fits (estimated)
    notes: tuple[str, ...]

    @property
    def vllm_flags(self) -> str:
        config = (
            '{"cudagraph_mm_encoder": true, "encoder_cudagraph_token_budgets": ['
            + ", ".join(map(str, self.budgets))
            + f'], "encoder_cudagraph_max_vision_items_per_batch": {self.max_items}}}'
        )
        flags = [f"--kv-cache-memory={max(self.kv_cache_bytes, 0)}", f"--compilation-config '{config}'"]
        if self.max_model_len:
            flags.append(f"--max-model-len {self.max_model_len}")
        return " ".join(flags)


def _kv_per_token(report: Report, kv_cache_dtype: str) -> int | None:
    per_token = report.model.kv_bytes_per_token
    if per_token is None or kv_cache_dtype == "auto":
        return per_token
    if kv_cache_dtype not in KV_DTYPE_BYTES:
        raise UsageError(f"unknown --kv-cache-dtype {kv_cache_dtype!r}; choose auto or one of {', '.join(KV_DTYPE_BYTES)}")
    model_bytes = {"bfloat16": 2, "float16": 2, "float32": 4}[report.settings.dtype]
    return per_token // model_bytes * KV_DTYPE_BYTES[kv_cache_dtype]


def _kv_bytes(inputs: PlanInputs, report: Report, encoder_bytes: int, activation: int) -> tuple[list[Term], int]:
    requested = int(inputs.total_bytes * inputs.utilization)
    outside = report.pool("outside_allocator").reserved_bytes
    terms = [
        Term(f"requested = {inputs.gpu} total x {inputs.utilization:g}", requested, inputs.total_source),
        Term("weights (parameters x dtype)", report.model.weight_bytes or 0, "config"),
        Term("activation peak", activation, "user" if inputs.activation_bytes is not None else "measured"),
        Term("outside the allocator (context, graph executables)", outside or 0, "measured" if outside is not None else "not measured"),
        Term("decoder graphs", inputs.decoder_graph_bytes or 0, "user" if inputs.decoder_graph_bytes is not None else "not measured"),
        Term("encoder graphs", encoder_bytes, "measured"),
        Term("margin", inputs.margin_bytes, "user"),
    ]
    kv = requested - sum(t.bytes for t in terms[1:])
    return terms, kv


def plan(report: Report, inputs: PlanInputs) -> CapacityPlan:
    if inputs.max_model_len is not None and inputs.max_model_len <= 0:
        raise UsageError("--max-model-len must be a positive number of tokens")
    if inputs.margin_bytes < 0:
        raise UsageError("--margin cannot be negative")
    largest = max(report.budgets, key=lambda b: b.budget)
    activation = inputs.activation_bytes if inputs.activation_bytes is not None else largest.eager_peak_bytes
    encoder = report.pool("encoder_graphs").reserved_bytes
    terms, kv = _kv_bytes(inputs, report, encoder, activation)
    per_token = _kv_per_token(report, inputs.kv_cache_dtype)
    notes = []
    if per_token is None:
        notes.append(f"{report.settings.model} is an encoder only: the plan covers the encoder side, no KV cache")
    if inputs.decoder_graph_bytes is None:
        notes.append("decoder graph memory is not measured by encgraph: pass --decoder-graph-memory to include it")
    max_len = inputs.max_model_len or report.model.max_position_embeddings
    kv_tokens = None if per_token is None else max(kv, 0) // per_token
    concurrency = None if kv_tokens is None or not max_len else kv_tokens / max_len
    needed = 0 if per_token is None else (max_len or 1) * per_token
    fits = kv > 0 and kv >= needed
    shortfall = 0 if fits else max(needed, 1) - kv
    ladder = None
    if not fits:
        ladder = _fitting_ladder(report, inputs, activation)
        verdict = (
            f"does not fit: {'no room for the KV cache' if kv <= 0 else 'less than one max-length request'}; "
            f"short by {shortfall / GiB:.2f} GiB"
        )
    else:
        verdict = "fits" if per_token is None else f"fits: {kv_tokens:,} KV tokens, {concurrency:.2f} max-length requests"
    return CapacityPlan(
        model=report.settings.model,
        gpu=inputs.gpu,
        budgets=tuple(report.settings.budgets),
        max_items=report.settings.max_items,
        terms=tuple(terms),
        kv_cache_bytes=kv,
        kv_bytes_per_token=per_token,
        kv_tokens=kv_tokens,
        max_model_len=max_len,
        concurrency=concurrency,
        tokens_per_graph_gib=None if per_token is None else GiB // per_token,
        fits=fits,
        verdict=verdict,
        shortfall_bytes=shortfall,
        fitting_ladder=ladder,
        notes=tuple(notes),
    )


def _fitting_ladder(report: Report, inputs: PlanInputs, activation: int) -> tuple[int, ...] | None:
    """The largest prefix of the report's budgets that would fit, or () for no encoder graphs at
    all. Only the full ladder's pool was measured: a shorter ladder's pool is estimated in
    proportion to its largest budget (a largest-first ladder's pool is that of its largest
    budget). The activation term stays: batches above the top budget still run eagerly."""
    budgets = sorted(b.budget for b in report.budgets)
    full_pool = report.pool("encoder_graphs").reserved_bytes
    per_token = _kv_per_token(report, inputs.kv_cache_dtype)
    needed = (inputs.max_model_len or report.model.max_position_embeddings or 1) * (per_token or 0)
    for cut in range(len(budgets) - 1, -1, -1):
        ladder = tuple(budgets[:cut])
        encoder = full_pool * ladder[-1] // budgets[-1] if ladder else 0
        _, kv = _kv_bytes(inputs, report, encoder, activation)
        if kv > 0 and kv >= needed:
            return ladder
    return None
