"""What a vLLM start-up log says about memory, read from its lines. No torch.

vLLM logs its own accounting as it starts: the weights it loaded, the activation peak and the memory
outside PyTorch its profiling run saw, the KV cache it allocated, the CUDA-graph memory it estimated
and the pool its graphs took. The line formats moved between releases (V0's worker, V1's
gpu_worker and gpu_model_runner, Model Runner V2's model_runner); each figure is read from every
format that carries it, and the first line found wins (with tensor parallelism every worker logs the
same figures). vLLM prints sizes as GiB (older releases wrote "GB" for the same 2^30 bytes), rounded
to two or four decimals, so bytes read from a log are exact only to that precision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .units import GiB

_SIZE = r"([\d.]+)\s*(?:GiB|GB)"


@dataclass(frozen=True)
class VllmLog:
    """The figures a log states; None where it has no line for one."""

    source: str
    model: str | None = None  # the model the log served, where it names one
    total_bytes: int | None = None  # the GPU's memory, as vLLM saw it
    utilization: float | None = None  # --gpu-memory-utilization
    weights_bytes: int | None = None
    activation_bytes: int | None = None  # the profiling run's PyTorch activation peak
    non_torch_bytes: int | None = None  # memory outside PyTorch's allocator (context, NCCL, ...)
    graph_estimate_bytes: int | None = None  # CUDA-graph memory vLLM estimated before capture
    graph_actual_bytes: int | None = None  # what its graph capture took
    consumed_bytes: int | None = None  # weights and non-torch memory together (newer summary lines)
    kv_cache_bytes: int | None = None  # the KV cache vLLM sized
    kv_cache_suggested_bytes: int | None = None  # vLLM's --kv-cache-memory "to fit into requested memory"
    kv_tokens: int | None = None
    max_model_len: int | None = None
    concurrency: float | None = None
    graph_counts: str | None = None  # "PIECEWISE=51 (largest=512), FULL=35 (largest=256)"
    encoder_graphs: bool = False  # the graph figures include encoder CUDA graphs
    lines: dict[str, str] = field(default_factory=dict)  # figure -> the log line it came from


def _bytes(value: str) -> int:
    return round(float(value) * GiB)


# figure -> patterns (any format); the first group is the value. Sizes become bytes.
_PATTERNS: dict[str, tuple[str, ...]] = {
    "model": (r"Starting to load model (\S+?)\.\.\.", r"vllm serve (\S+)", r"model='([^']+)'"),
    "total_bytes": (r"total_gpu_memory \(" + _SIZE + r"\)", r"Free memory on device \([\d.]+/" + _SIZE + r"\)"),
    "utilization": (
        r"gpu_memory_utilization \(([\d.]+)\)",
        r"current --gpu-memory-utilization=([\d.]+)",
        r"--gpu-memory-utilization[ =]([\d.]+)",
        r"Desired GPU memory utilization is \(([\d.]+),",
        r"gpu_memory_utilization'?:\s*([\d.]+)",
    ),
    "weights_bytes": (
        r"Model loading took " + _SIZE,
        r"Loading model weights took " + _SIZE,
        r"model weights take " + _SIZE,
        r"Actual usage is " + _SIZE + r" for weight",
    ),
    "activation_bytes": (r"activation peak memory takes " + _SIZE, _SIZE + r" for peak activation"),
    "non_torch_bytes": (r"non_torch_memory takes " + _SIZE, _SIZE + r" for non-torch memory"),
    "graph_estimate_bytes": (r"Estimated CUDA graph memory: " + _SIZE, r"\(actual\), " + _SIZE + r" \(estimated\)"),
    "graph_actual_bytes": (
        r"CUDA graph pool memory: " + _SIZE + r" \(actual\)",
        r"Graph capturing finished in .*?took " + _SIZE,
        _SIZE + r" for CUDAGraph memory",
    ),
    "consumed_bytes": (r"Actual usage is " + _SIZE + r" for consumed memory",),
    "kv_cache_bytes": (
        r"Available KV cache memory: " + _SIZE,
        r"reserved for KV Cache is " + _SIZE,
        r"Current kv cache memory in use is " + _SIZE,
        r"Current kv cache memory in use is (\d+) bytes",
    ),
    "kv_cache_suggested_bytes": (r"--kv-cache-memory=(\d+)`[^`]*to fit into requested memory",),
    "kv_tokens": (r"GPU KV cache size: ([\d,]+) tokens",),
    "max_model_len": (
        r"Maximum concurrency for ([\d,]+) tokens per request",
        r"max_seq_len=(\d+)",
        r"--max-model-len[ =](\d+)",
        r"max_model_len'?:\s*(\d+)",
    ),
    "concurrency": (r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x",),
    "graph_counts": (r"Profiling CUDA graph memory: (.+?)\s*$",),
}
_CONVERT: dict[str, Callable[[str], Any]] = {
    "kv_cache_suggested_bytes": int,
    "model": str,
    "utilization": float,
    "concurrency": float,
    "kv_tokens": lambda v: int(v.replace(",", "")),
    "max_model_len": lambda v: int(v.replace(",", "")),
    "graph_counts": str,
}


_COMPILED = {name: [re.compile(p) for p in patterns] for name, patterns in _PATTERNS.items()}


def parse(text: str, source: str = "log") -> VllmLog:
    found: dict[str, Any] = {}
    lines: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # a fixture's or a user's comment
            continue
        for name, patterns in _COMPILED.items():
            if name in found:
                continue
            for pattern in patterns:
                match = pattern.search(line)
                if match:
                    value = match.group(1)
                    exact = name == "kv_cache_bytes" and match.re.pattern.endswith("bytes")
                    found[name] = int(value) if exact else _CONVERT.get(name, _bytes)(value)
                    lines[name] = line.strip(" │\t")
                    break
    encoder = "ENCODER=" in str(found.get("graph_counts", "")) or "encoder CUDA graph memory" in text
    if "non_torch_bytes" not in found and "consumed_bytes" in found and "weights_bytes" in found:
        # Newer summary lines give weights and non-torch memory together; the loading line, the weights.
        found["non_torch_bytes"] = found["consumed_bytes"] - found["weights_bytes"]
        lines["non_torch_bytes"] = f"{lines['consumed_bytes']}  (less the weights of: {lines['weights_bytes']})"
    return VllmLog(source=source, encoder_graphs=encoder, lines=lines, **found)


def read(path: Path) -> VllmLog:
    """A vLLM log file, refused in one line when it cannot be read or holds no memory figure."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise UsageError(f"cannot read --vllm-log {path}: {err.strerror or err}") from None
    if text.lstrip().startswith(("{", "[")) and _is_json(text):
        what = "an encgraph report" if '"schema_version"' in text else "a JSON file"
        raise UsageError(
            f"--vllm-log {path} is {what}, not a vLLM log; a report goes to --from, and --vllm-log takes the text "
            "log of a vLLM server's start-up"
        )
    log = parse(text, str(path))
    if not log.lines:
        raise UsageError(
            f"--vllm-log {path} has no line vLLM logs about memory (model loading, KV cache, CUDA graphs); "
            "give the log of a vLLM server's start-up"
        )
    return log


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
