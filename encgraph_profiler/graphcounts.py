"""How many CUDA graphs vLLM captures, and the largest of each kind. Pure logic, no torch.

Each rule below names the vLLM behaviour it follows (vLLM v1 engine, ``CompilationConfig`` and the
CUDA-graph dispatcher), so that it can be updated in one place when vLLM changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

MODES = ("NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE")

# vLLM caps the default capture range at 512 tokens, 1024 on Blackwell GPUs.
DEFAULT_CAPTURE_CEILING = 512
BLACKWELL_CAPTURE_CEILING = 1024


@dataclass(frozen=True)
class DecoderSettings:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    cudagraph_mode: str = "FULL_AND_PIECEWISE"
    cudagraph_capture_sizes: tuple[int, ...] | None = None
    max_cudagraph_capture_size: int | None = None
    num_speculative_tokens: int = 0
    max_loras: int = 0
    specialize_lora: bool = True
    blackwell: bool = False


@dataclass(frozen=True)
class GraphGroup:
    """One kind of graph: PIECEWISE, FULL or ENCODER, with the sizes it is captured at."""

    kind: str
    count: int
    sizes: tuple[int, ...]  # ascending; for ENCODER the token budgets
    cases: int = 1  # LoRA cases each size is captured for

    @property
    def largest(self) -> int:
        return max(self.sizes)

    @property
    def smallest(self) -> int:
        return min(self.sizes)


@dataclass(frozen=True)
class GraphCounts:
    groups: tuple[GraphGroup, ...]

    @property
    def line(self) -> str:
        """vLLM's start-up log line, in its exact format."""
        body = ", ".join(f"{g.kind}={g.count} (largest={g.largest})" for g in self.groups)
        return f"Profiling CUDA graph memory: {body}" if body else "Profiling CUDA graph memory: no CUDA graphs"

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups)


def validate(settings: DecoderSettings) -> None:
    for name in ("max_num_seqs", "max_num_batched_tokens"):
        if getattr(settings, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive number, not {getattr(settings, name)}")
    if settings.num_speculative_tokens < 0:
        raise UsageError("--num-speculative-tokens cannot be negative")
    if settings.max_loras < 0:
        raise UsageError("--max-loras cannot be negative")
    if settings.cudagraph_mode not in MODES:
        raise UsageError(f"unknown --cudagraph-mode {settings.cudagraph_mode!r}; choose one of {', '.join(MODES)}")
    if settings.max_cudagraph_capture_size is not None and settings.max_cudagraph_capture_size <= 0:
        raise UsageError("--max-cudagraph-capture-size must be a positive number")
    sizes, largest = settings.cudagraph_capture_sizes, settings.max_cudagraph_capture_size
    if sizes and largest is not None and largest != max(sizes):
        # vLLM (config/vllm.py, _set_cudagraph_sizes) raises for this pair rather than pick one.
        raise UsageError(
            f"--max-cudagraph-capture-size {largest} is not the largest of --cudagraph-capture-sizes ({max(sizes)}); "
            "vLLM refuses the pair: give one of them, or make them agree"
        )
    for size in settings.cudagraph_capture_sizes or ():
        if size <= 0:
            raise UsageError(f"capture size {size} must be a positive number of tokens")
        if size > settings.max_num_batched_tokens:
            raise UsageError(
                f"capture size {size} is larger than --max-num-batched-tokens "
                f"({settings.max_num_batched_tokens}); vLLM never runs a batch that large"
            )


def max_capture_size(settings: DecoderSettings) -> int:
    """vLLM: an explicit max wins; else the largest explicit size; else
    min(max_num_seqs * (1 + spec tokens) * 2, 512 or 1024 on Blackwell, max_num_batched_tokens)."""
    if settings.max_cudagraph_capture_size is not None:
        return min(settings.max_cudagraph_capture_size, settings.max_num_batched_tokens)
    if settings.cudagraph_capture_sizes:
        return max(settings.cudagraph_capture_sizes)
    ceiling = BLACKWELL_CAPTURE_CEILING if settings.blackwell else DEFAULT_CAPTURE_CEILING
    tokens_per_seq = 1 + settings.num_speculative_tokens
    return min(settings.max_num_seqs * tokens_per_seq * 2, ceiling, settings.max_num_batched_tokens)


def capture_sizes(settings: DecoderSettings) -> tuple[int, ...]:
    """vLLM: explicit sizes are de-duplicated, sorted and cut at the max capture size. The default
    list is 1, 2, 4, then multiples of 8 below 256, then multiples of 16 from 256, up to the max;
    max_num_batched_tokens is added when it is within the max and the steps miss it."""
    limit = max_capture_size(settings)
    if settings.cudagraph_capture_sizes:
        return tuple(sorted({s for s in settings.cudagraph_capture_sizes if s <= limit}))
    sizes = [1, 2, 4, *range(8, min(limit + 1, 256), 8), *range(256, limit + 1, 16)]
    sizes = [s for s in sizes if s <= limit]
    if settings.max_num_batched_tokens <= limit and settings.max_num_batched_tokens not in sizes:
        sizes.append(settings.max_num_batched_tokens)
    return tuple(sorted(sizes))


def lora_cases(settings: DecoderSettings) -> int:
    """vLLM's dispatcher keys graphs on whether LoRA is active. With LoRA enabled and
    ``cudagraph_specialize_lora`` on (its default) each size is captured with and without LoRA;
    with specialisation off, only the LoRA variant. Without LoRA: one case."""
    if settings.max_loras == 0:
        return 1
    return 2 if settings.specialize_lora else 1


def decoder_groups(settings: DecoderSettings) -> tuple[GraphGroup, ...]:
    """PIECEWISE graphs cover every capture size (mixed prefill-decode batches). FULL graphs cover
    every size under FULL; under FULL_DECODE_ONLY and FULL_AND_PIECEWISE only uniform-decode
    batches, the sizes s with q <= s <= q * max_num_seqs where q = 1 + speculative tokens."""
    validate(settings)
    mode = settings.cudagraph_mode
    if mode == "NONE":
        return ()
    sizes = capture_sizes(settings)
    cases = lora_cases(settings)
    groups = []
    if mode in ("PIECEWISE", "FULL_AND_PIECEWISE"):
        groups.append(GraphGroup("PIECEWISE", len(sizes) * cases, sizes, cases))
    if mode == "FULL":
        groups.append(GraphGroup("FULL", len(sizes) * cases, sizes, cases))
    if mode in ("FULL_DECODE_ONLY", "FULL_AND_PIECEWISE"):
        q = 1 + settings.num_speculative_tokens
        decode = tuple(s for s in sizes if q <= s <= q * settings.max_num_seqs)
        if decode:
            groups.append(GraphGroup("FULL", len(decode) * cases, decode, cases))
    return tuple(groups)


def encoder_group(budgets: tuple[int, ...]) -> GraphGroup:
    """vLLM captures one encoder graph per token budget."""
    return GraphGroup("ENCODER", len(budgets), tuple(sorted(budgets)))


def graph_counts(settings: DecoderSettings, budgets: tuple[int, ...] | None) -> GraphCounts:
    groups = decoder_groups(settings)
    if budgets:
        groups = (*groups, encoder_group(budgets))
    return GraphCounts(groups)
