"""``encgraph plan``: what is left for the KV cache once weights and graphs are in. No torch.

The equation follows vLLM's accounting: requested = total x utilization; minus weights, activation
peak, memory outside the allocator, decoder graphs, encoder graphs and a safety margin; what
remains is the KV cache. Every term carries its source: measured (the profile report), config
(counted from the full model config), user (an option), preset (a GPU preset) or vLLM log (what a
vLLM start-up log states about the real deployment, which wins over measurement and config).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import ReportError, UsageError
from .gpus import GPU_PRESETS, preset_named
from .models.base import DTYPES
from .schema import PoolName, Report
from .units import GiB, gib, parse_size
from .vllm_log import VllmLog

LOG = "vLLM log"
DEFAULT_UTILIZATION = 0.9  # vLLM's --gpu-memory-utilization

KV_DTYPE_BYTES = {**DTYPES, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


def gpu_memory(preset: str | None, size: str | None, report: Report | None = None) -> tuple[str, int, str]:
    """(label, total bytes, source) from --gpu or --gpu-memory; without either, the GPU the
    report was measured on."""
    if preset and size:
        raise UsageError("give either --gpu or --gpu-memory, not both")
    if size:
        total = parse_size(size, "--gpu-memory")
        if total <= 0:
            raise UsageError(f"--gpu-memory {size!r} must be more than zero")
        return size, total, "user"
    if preset:
        name = preset_named(preset)
        return name, GPU_PRESETS[name], "preset"
    if report is None:
        raise UsageError("give --gpu or --gpu-memory: there is no report to take the GPU from")
    if report.predicted:
        raise UsageError("give --gpu or --gpu-memory: the report is a prediction, made for no particular GPU")
    return report.provenance.gpu_name, report.provenance.gpu_total_bytes, "report"


def parse_utilization(text: str) -> float:
    try:
        value = float(text if text.isascii() else "not ASCII")  # float() also reads other scripts' digits
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
    utilization: float = DEFAULT_UTILIZATION
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = None
    margin_bytes: int = 0
    decoder_graph_bytes: int | None = None
    activation_bytes: int | None = None
    log: VllmLog | None = None  # a vLLM start-up log: its figures replace measured and counted ones
    utilization_source: str = "user"  # user, default or vLLM log

    def scenario(self, gpu: tuple[str, int, str] | None, utilization: float) -> PlanInputs:
        """The same plan on another GPU (None: this one), at a utilization the user gave (--what-if)."""
        label, total, source = gpu or (self.gpu, self.total_bytes, self.total_source)
        return replace(
            self, gpu=label, total_bytes=total, total_source=source, utilization=utilization, utilization_source="user"
        )


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
    max_model_len_source: str  # "user", "vLLM log" or "config"
    concurrency: float | None
    tokens_per_graph_gib: int | None
    fits: bool
    verdict: str
    shortfall_bytes: int
    fitting_ladder: tuple[int, ...] | None  # largest prefix of the report's budgets that fits (estimated)
    notes: tuple[str, ...]
    kv_is_upper_bound: bool  # the language model's activation peak is not in the equation

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


def check_kv_cache_dtype(kv_cache_dtype: str) -> None:
    if kv_cache_dtype != "auto" and kv_cache_dtype not in KV_DTYPE_BYTES:
        raise UsageError(
            f"unknown --kv-cache-dtype {kv_cache_dtype!r}; choose auto or one of {', '.join(KV_DTYPE_BYTES)}"
        )


def _kv_per_token(report: Report, kv_cache_dtype: str) -> int | None:
    per_token = report.model.kv_bytes_per_token
    check_kv_cache_dtype(kv_cache_dtype)
    if per_token is None or kv_cache_dtype == "auto":
        return per_token
    return per_token // DTYPES[report.settings.dtype] * KV_DTYPE_BYTES[kv_cache_dtype]


def _logged_graph_bytes(log: VllmLog) -> int | None:
    """The CUDA-graph memory a vLLM log gives: what its capture took, else its estimate."""
    return log.graph_actual_bytes if log.graph_actual_bytes is not None else log.graph_estimate_bytes


def _encoder_bytes(report: Report) -> int:
    return report.pool(PoolName.ENCODER_GRAPHS).reserved_bytes or 0


def _source(report: Report) -> str:
    return "predicted" if report.predicted else "measured"


def _log_terms(inputs: PlanInputs, report: Report, encoder_bytes: int, activation: int) -> list[Term]:
    """Weights, activation, outside the allocator, decoder graphs and encoder graphs, each from the
    user, else the vLLM log, else the report or the config."""
    log = inputs.log or VllmLog(source="")
    outside = report.pool(PoolName.OUTSIDE_ALLOCATOR).reserved_bytes
    if inputs.activation_bytes is not None:
        activation_term = Term("activation peak", activation, "user")
    elif log.activation_bytes is not None:
        activation_term = Term("activation peak (vLLM's profiling run)", log.activation_bytes, LOG)
    else:
        activation_term = Term(
            "activation peak: the encoder's alone (the language model's is not included)", activation, _source(report)
        )
    if inputs.decoder_graph_bytes is not None:
        decoder = Term("decoder graphs", inputs.decoder_graph_bytes, "user")
    elif (logged := _logged_graph_bytes(log)) is not None:
        what = "graphs vLLM captured" if log.graph_actual_bytes is not None else "graphs vLLM estimated"
        name = f"{what} (decoder and encoder)" if log.encoder_graphs else f"decoder {what}"
        decoder = Term(name, logged, LOG)
    else:
        decoder = Term("decoder graphs", 0, "not measured")
    encoder = (
        Term("encoder graphs: inside vLLM's logged graph memory", 0, LOG)
        if log.encoder_graphs and decoder.source == LOG
        else Term("encoder graphs", encoder_bytes, _source(report))
    )
    return [
        Term("weights", log.weights_bytes, LOG)
        if log.weights_bytes is not None
        else Term("weights (parameters x dtype)", report.model.weight_bytes or 0, "config"),
        activation_term,
        Term("outside the allocator (vLLM's non-torch memory)", log.non_torch_bytes, LOG)
        if log.non_torch_bytes is not None
        else Term(
            "outside the allocator (context, graph executables)",
            outside or 0,
            "measured" if outside is not None else "not measured",
        ),
        decoder,
        encoder,
    ]


def _kv_bytes(inputs: PlanInputs, report: Report, encoder_bytes: int, activation: int) -> tuple[list[Term], int]:
    requested = int(inputs.total_bytes * inputs.utilization)
    source = (
        inputs.total_source
        if inputs.utilization_source != LOG or inputs.total_source == LOG
        else f"{inputs.total_source}; utilization: {LOG}"
    )
    terms = [
        Term(f"requested = {inputs.gpu} total x {inputs.utilization:g}", requested, source),
        *_log_terms(inputs, report, encoder_bytes, activation),
        Term("margin", inputs.margin_bytes, "user"),
    ]
    kv = requested - sum(t.bytes for t in terms[1:])
    return terms, kv


def _check_log_model(report: Report, log: VllmLog | None) -> None:
    """A log that loaded more weights than the report's model holds even in float32 is another model's."""
    parameters = report.model.total_parameters
    if log is None or log.weights_bytes is None or parameters is None or log.weights_bytes <= parameters * 4:
        return
    named = f" ({log.model})" if log.model else ""
    raise UsageError(
        f"--vllm-log: its model{named} loaded {gib(log.weights_bytes)} GiB of weights, more than "
        f"{report.settings.model}'s {parameters / 1e9:.2f} B parameters hold even in float32 "
        f"({gib(parameters * 4)} GiB): it is another model's log; give the log of the model the report is of"
    )


def _log_notes(inputs: PlanInputs, report: Report, kv: int) -> list[str]:
    """Which terms the log did not give and what they fell back to; what the log corrects; and the
    log's own KV cache beside the plan's."""
    log = inputs.log
    if log is None:
        return []
    notes = (
        [f"the vLLM log is of {log.model}; this plan's encoder graphs are {report.settings.model}'s"]
        if log.model
        else []
    )
    outside = report.pool(PoolName.OUTSIDE_ALLOCATOR).reserved_bytes
    fallbacks = [
        ("total GPU memory", log.total_bytes, f"{inputs.total_source} ({inputs.gpu})"),
        ("gpu_memory_utilization", log.utilization, f"{inputs.utilization_source} ({inputs.utilization:g})"),
        ("model loading", log.weights_bytes, "config"),
        ("activation peak", log.activation_bytes, "user" if inputs.activation_bytes is not None else "measured"),
        ("non-torch memory", log.non_torch_bytes, "measured" if outside is not None else "not measured"),
        (
            "CUDA graph memory",
            _logged_graph_bytes(log),
            "user" if inputs.decoder_graph_bytes is not None else "not measured (0)",
        ),
    ]
    missing = [f"{what} (took {fallback})" for what, value, fallback in fallbacks if value is None]
    if missing:
        notes.append(f"the vLLM log has no line for: {'; '.join(missing)}")
    corrections = [
        ("weights", log.weights_bytes, report.model.weight_bytes, "counted from the config"),
        (
            "activation peak",
            log.activation_bytes,
            None
            if inputs.activation_bytes is not None
            else max((b.eager_peak_bytes for b in report.budgets), default=None),
            "the encoder's measured peak alone",
        ),
        ("outside the allocator", log.non_torch_bytes, outside, "measured here"),
    ]
    for name, logged, otherwise, how in corrections:
        if logged is not None and otherwise is not None and logged != otherwise:
            notes.append(
                f"the log sets {name} to {gib(logged)} GiB where a plan without it takes {gib(otherwise)} GiB ({how}): "
                f"{'+' if logged > otherwise else '-'}{gib(abs(logged - otherwise))} GiB"
            )
    encoder = _encoder_bytes(report)
    if log.kv_cache_suggested_bytes is not None and not log.encoder_graphs:
        notes.append(
            f"vLLM suggested --kv-cache-memory={log.kv_cache_suggested_bytes} for that deployment; with the "
            f"encoder graphs measured here it becomes --kv-cache-memory={log.kv_cache_suggested_bytes - encoder}"
        )
    if log.kv_cache_bytes is not None:
        notes.append(
            f"vLLM itself sized the KV cache at {gib(log.kv_cache_bytes)} GiB; this plan, with the encoder graphs "
            f"measured here, leaves {gib(kv)} GiB ({'+' if kv >= log.kv_cache_bytes else '-'}"
            f"{gib(abs(kv - log.kv_cache_bytes))} GiB)"
        )
    return notes


def plan(report: Report, inputs: PlanInputs) -> CapacityPlan:
    if inputs.max_model_len is not None and inputs.max_model_len <= 0:
        raise UsageError("--max-model-len must be a positive number of tokens")
    if inputs.margin_bytes < 0:
        raise UsageError("--margin cannot be negative")
    if not report.budgets:
        raise ReportError(f"the {report.settings.model} report has no measured budgets to plan with; profile again")
    _check_log_model(report, inputs.log)
    largest = max(report.budgets, key=lambda b: b.budget)
    activation = inputs.activation_bytes if inputs.activation_bytes is not None else largest.eager_peak_bytes
    terms, kv = _kv_bytes(inputs, report, _encoder_bytes(report), activation)
    per_token = _kv_per_token(report, inputs.kv_cache_dtype)
    upper_bound = (
        per_token is not None
        and inputs.activation_bytes is None
        and (inputs.log is None or inputs.log.activation_bytes is None)
    )
    max_len, max_len_source = _max_len(inputs, report)
    kv_tokens = None if per_token is None else max(kv, 0) // per_token
    concurrency = None if kv_tokens is None or not max_len else kv_tokens / max_len
    needed = 0 if per_token is None else (max_len or 1) * per_token
    fits = kv > 0 and kv >= needed
    shortfall = 0 if fits else max(needed, 1) - kv
    if fits:
        at_most = "at most " if upper_bound else ""
        verdict = (
            "fits"
            if per_token is None
            else f"fits: {at_most}{kv_tokens:,} KV tokens, {concurrency:.2f} max-length requests"
        )
    else:
        room = "no room for the KV cache" if kv <= 0 else "less than one max-length request"
        verdict = f"does not fit: {room}; short by {shortfall / GiB:.2f} GiB"
    return CapacityPlan(
        model=report.settings.model,
        gpu=inputs.gpu,
        budgets=tuple(sorted({b.budget for b in report.budgets})),  # each once, whatever the encoder paths
        max_items=report.settings.max_items,
        terms=tuple(terms),
        kv_cache_bytes=kv,
        kv_bytes_per_token=per_token,
        kv_tokens=kv_tokens,
        max_model_len=max_len,
        max_model_len_source=max_len_source,
        concurrency=concurrency,
        tokens_per_graph_gib=None if per_token is None else GiB // per_token,
        fits=fits,
        verdict=verdict,
        shortfall_bytes=shortfall,
        fitting_ladder=None if fits else _fitting_ladder(report, inputs, activation, needed),
        notes=_notes(report, inputs, kv, per_token is None, upper_bound),
        kv_is_upper_bound=upper_bound,
    )


def _notes(report: Report, inputs: PlanInputs, kv: int, encoder_only: bool, upper_bound: bool) -> tuple[str, ...]:
    """What the plan cannot see or takes from elsewhere, each in one line."""
    notes = []
    if report.predicted:
        notes.append(
            "the encoder graphs and the activation peak are predicted without a GPU (`encgraph predict`), and "
            "nothing outside the allocator is counted: the CUDA context alone takes hundreds of MiB"
        )
    if encoder_only:
        notes.append(f"{report.settings.model} is an encoder only: the plan covers the encoder side, no KV cache")
    if inputs.log is None and inputs.decoder_graph_bytes is None:
        notes.append(
            "decoder graph memory is not measured by encgraph: pass --decoder-graph-memory or --vllm-log to include it"
        )
    notes.extend(_log_notes(inputs, report, kv))
    if upper_bound:
        notes.append(
            "the activation term is the encoder's eager peak alone; vLLM's profiling run also holds the language "
            "model's activations at max_num_batched_tokens, so this KV cache is an upper bound: pass "
            "--activation-memory with the peak vLLM logs to plan it exactly"
        )
    if not report.complete:
        notes.append("the report is incomplete: budgets it did not measure are not in the encoder term")
    return tuple(notes)


def _max_len(inputs: PlanInputs, report: Report) -> tuple[int | None, str]:
    """Tokens per request and where they come from: the user's, else the logged deployment's, else
    the model's positions."""
    logged = inputs.log.max_model_len if inputs.log else None
    if inputs.max_model_len:
        return inputs.max_model_len, "user"
    if logged:
        return logged, LOG
    return report.model.max_position_embeddings, "config"


def _fitting_ladder(report: Report, inputs: PlanInputs, activation: int, needed: int) -> tuple[int, ...] | None:
    """The largest prefix of the report's budgets that would fit, or () for no encoder graphs at
    all. Only the full ladder's pool was measured: a shorter ladder's pool is estimated in
    proportion to its largest budget (a largest-first ladder's pool is that of its largest
    budget). The activation term stays: batches above the top budget still run eagerly. ``needed``:
    the KV bytes of one max-length request, as the plan counts them."""
    budgets = sorted({b.budget for b in report.budgets})
    full_pool = _encoder_bytes(report)
    for cut in range(len(budgets) - 1, -1, -1):
        ladder = tuple(budgets[:cut])
        encoder = full_pool * ladder[-1] // budgets[-1] if ladder else 0
        _, kv = _kv_bytes(inputs, report, encoder, activation)
        if kv > 0 and kv >= needed:
            return ladder
    return None


def parse_what_if(text: str, utilization: float) -> list[tuple[tuple[str, int, str] | None, float]]:
    """--what-if "H100-80GB,L4,0.8": each item a GPU (at the plan's utilization) or a utilization (on
    the plan's GPU, None here)."""
    return [
        (None, parse_utilization(item)) if item.replace(".", "", 1).isdigit() else (gpu_memory(item, None), utilization)
        for item in (part.strip() for part in text.split(","))
    ]
