"""The one module that touches torch.cuda's graph and allocator APIs.

Measurement protocol (why each step is there):
- ``torch.cuda.graph`` synchronizes and empties the allocator cache on entry, so every sample here
  is taken after our own synchronize + empty_cache; otherwise the "before" figure still holds
  cached blocks that capture then frees, and a before/after delta of reserved bytes can be off by
  more than 99%.
- A graph's memory lives in its private pool. The pool's cost is the sum of ``total_size`` over
  the allocator segments whose ``segment_pool_id`` is the pool's id: after capture the
  intermediates are inactive blocks the graph replays into, so ``allocated_size`` (live outputs)
  undercounts it.
- Work is warmed up eagerly on the capture stream first, so that library workspaces (cuBLAS keeps
  one per handle and stream) are allocated in the default pool and not inside the graph's pool,
  and so that lazily loaded kernels are loaded before any sample.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from .errors import CaptureFailure, EnvironmentProblem


@dataclass(frozen=True)
class PoolBytes:
    reserved_bytes: int
    live_bytes: int
    segments: int


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise EnvironmentProblem(
            "no CUDA device is visible; `encgraph models`, `encgraph graphs`, `encgraph check` and "
            "`encgraph plan --from REPORT` work without one"
        )
    backend = torch.cuda.get_allocator_backend()
    if backend != "native":
        raise EnvironmentProblem(
            f"the CUDA allocator backend is {backend!r}: per-pool memory cannot be read from it; "
            "unset PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync (expandable_segments is fine)"
        )
    torch.cuda.init()
    return torch.device("cuda", torch.cuda.current_device())


def pci_bus_id(device: torch.device) -> str | None:
    props = torch.cuda.get_device_properties(device)
    domain, bus, dev = (getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device"))
    if None in (domain, bus, dev):
        return None
    return f"{domain:08X}:{bus:02X}:{dev:02X}.0"


def settle() -> None:
    """Synchronize and return cached free blocks, so reserved bytes mean held bytes."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def reserved_bytes() -> int:
    """Reserved by the caching allocator, all pools (private graph pools included)."""
    return int(torch.cuda.memory_stats().get("reserved_bytes.all.current", 0))


def allocated_bytes() -> int:
    return int(torch.cuda.memory_allocated())


def pool_bytes(pool) -> PoolBytes:
    """Bytes the allocator holds for one private pool, from its snapshot segments."""
    segments = [
        s for s in torch.cuda.memory_snapshot(mempool_id=pool) if tuple(s["segment_pool_id"]) == tuple(pool)
    ]
    return PoolBytes(
        reserved_bytes=sum(int(s["total_size"]) for s in segments),
        live_bytes=sum(int(s["allocated_size"]) for s in segments),
        segments=len(segments),
    )


def new_pool():
    return torch.cuda.graph_pool_handle()


def new_stream() -> torch.cuda.Stream:
    return torch.cuda.Stream()


def warm_up(fn, stream: torch.cuda.Stream, iterations: int) -> tuple[tuple[torch.Tensor, ...], float, int]:
    """Run ``fn`` eagerly on ``stream``; return the last outputs (copied to the host), the last
    run's time in ms and its peak allocated bytes above what was allocated before it."""
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(iterations - 1):
            fn()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = allocated_bytes()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        outputs = fn()
        end.record(stream)
    torch.cuda.synchronize()
    peak = int(torch.cuda.max_memory_allocated()) - baseline
    host = tuple(t.detach().to("cpu") for t in outputs)
    del outputs
    return host, start.elapsed_time(end), peak


def capture(fn, pool, stream: torch.cuda.Stream, what: str):
    """Capture ``fn`` into ``pool`` on ``stream``; return the graph, its static outputs and the
    wall time of the capture in ms. A failure names the operation when torch says which."""
    graph = torch.cuda.CUDAGraph()
    started = time.perf_counter()
    try:
        with torch.inference_mode(), torch.cuda.graph(graph, pool=pool, stream=stream):
            outputs = fn()
        torch.cuda.synchronize()
    except torch.OutOfMemoryError as err:
        raise CaptureFailure(f"out of memory while capturing {what}: {str(err).splitlines()[0]}") from err
    except RuntimeError as err:
        raise CaptureFailure(f"capture of {what} failed: {str(err).splitlines()[0]}") from err
    return graph, tuple(outputs), (time.perf_counter() - started) * 1000.0


def replay(graph, outputs, reference: tuple[torch.Tensor, ...], repeats: int = 3) -> tuple[float, bool, float]:
    """Replay once and compare with the eager outputs; then time ``repeats`` replays (median ms)."""
    graph.replay()
    torch.cuda.synchronize()
    matches, max_diff = True, 0.0
    for out, ref in zip(outputs, reference, strict=True):
        host = out.detach().to("cpu")
        matches = matches and torch.equal(host, ref)
        max_diff = max(max_diff, float((host.float() - ref.float()).abs().max()) if host.numel() else 0.0)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), matches, max_diff
