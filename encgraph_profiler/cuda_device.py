"""The one module that touches torch.cuda's graph and allocator APIs: the real ``Device``.

Measurement protocol (why each step is there):
- ``torch.cuda.graph`` synchronizes and empties the allocator cache on entry, so every sample here
  is taken after our own synchronize + empty_cache; otherwise the "before" figure still holds
  cached blocks that capture then frees, and a before/after delta of reserved bytes can be off by
  more than 99%.
- A pool's cost is the sum of ``total_size`` over the allocator segments whose
  ``segment_pool_id`` is the pool's: after capture the intermediates are inactive blocks the graph
  replays into, so ``allocated_size`` (live outputs) undercounts it. The default pool is summed
  the same way, so that the pools' live bytes are counted once each and can be checked against
  the allocator's own counters.
- Work is warmed up eagerly on the capture stream first, so that library workspaces (cuBLAS keeps
  one per handle and stream) are allocated in the default pool and not inside the graph's pool,
  and so that lazily loaded kernels are loaded before any sample.
"""

from __future__ import annotations

import gc
import math
import re
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .allocator_model import allocator_conf
from .device import Captured, DeviceInfo, PoolBytes, Replayed, Sample, WarmUp
from .errors import CaptureFailure, DeviceOutOfMemory, EnvironmentProblem
from .nvml import Nvml

DEFAULT_POOL_ID = (0, 0)
_HISTORY_ENTRIES = 1_000_000  # trace events kept for --memory-snapshot: a ladder of large towers fits

# The last allocation the caching allocator could not get from the driver, in bytes, as its
# out-of-memory observer reports it (one observer per process: the allocator keeps them all).
_last_oom: dict[str, int] = {}
_observer_attached = False


def _attach_oom_observer() -> None:
    global _observer_attached
    attach = getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)
    if attach is None or _observer_attached:
        return

    def observer(device: int, alloc: int, device_allocated: int, device_free: int) -> None:
        _last_oom["requested_bytes"] = int(alloc)

    attach(observer)
    _observer_attached = True


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _capture_error(err: RuntimeError) -> str:
    """The first error of a failed capture and where in the model it was raised. Ending a broken
    capture raises its own, uninformative error ("operation failed due to a previous error during
    capture"); the one that broke the capture is its context."""
    while isinstance(err.__context__, RuntimeError):
        err = err.__context__
    frames = traceback.extract_tb(err.__traceback__)
    model_frames = [f for f in frames if "/torch/" not in f.filename]
    where = (
        f" (at {'/'.join(Path(model_frames[-1].filename).parts[-2:])}:{model_frames[-1].lineno})"
        if model_frames
        else ""
    )
    return _first_line(err) + where


_TRIED = re.compile(r"Tried to allocate ([\d.]+) (B|KiB|MiB|GiB|TiB)")


def _oom(what: str, message: str) -> DeviceOutOfMemory:
    """The observer's exact figure when it fired, else nothing: the message rounds its figure."""
    requested = _last_oom.pop("requested_bytes", None)
    tried = _TRIED.search(message)
    said = f" (tried to allocate {tried.group(1)} {tried.group(2)})" if tried else ""
    return DeviceOutOfMemory(f"out of memory in {what}{said}", requested)


def require_cuda() -> None:
    """Refuse, saying what works without one, where no CUDA device is visible."""
    if not torch.cuda.is_available():
        raise EnvironmentProblem(
            "no CUDA device is visible; `encgraph predict` answers without one (as do `encgraph models`, "
            "`graphs`, `check` and `plan`)"
        )


class CudaDevice:
    """The current CUDA device, with NVML found by PCI bus id so that it is the same GPU that
    torch uses whatever CUDA_VISIBLE_DEVICES says."""

    def __init__(self) -> None:
        require_cuda()
        backend = torch.cuda.get_allocator_backend()
        if backend != "native":
            raise EnvironmentProblem(
                f"the CUDA allocator backend is {backend!r}: per-pool memory cannot be read from it; "
                "unset PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync (expandable_segments is fine)"
            )
        torch.cuda.init()
        torch.cuda.synchronize()  # makes the CUDA context, so that NVML lists this process below
        self.torch_device = torch.device("cuda", torch.cuda.current_device())
        self._nvml = Nvml(self._pci_bus_id())
        problems = [self._nvml.problem] if self._nvml.problem else []
        if self._nvml.available and self._nvml.process_used_bytes() is None:
            problems.append("NVML does not report this process's memory here; outside-allocator figures show n/a")
        self.problems = tuple(problems)
        _attach_oom_observer()

    def _pci_bus_id(self) -> str | None:
        props = torch.cuda.get_device_properties(self.torch_device)
        domain, bus, dev = (getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device"))
        if None in (domain, bus, dev):
            return None
        return f"{domain:08X}:{bus:02X}:{dev:02X}.0"

    def info(self) -> DeviceInfo:
        props = torch.cuda.get_device_properties(self.torch_device)
        return DeviceInfo(
            name=props.name,
            total_bytes=int(props.total_memory),
            driver=self._nvml.driver_version(),
            cuda=torch.version.cuda,
            allocator_conf=allocator_conf(),
        )

    # -- samples -------------------------------------------------------------------------------
    def settle(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()

    def synchronize(self) -> None:
        torch.cuda.synchronize()

    def driver_free_bytes(self) -> int:
        return int(torch.cuda.mem_get_info(self.torch_device)[0])

    def _recover(self) -> None:
        """After an out-of-memory error: drop what the failed work's frames held, then settle."""
        gc.collect()
        self.settle()

    @staticmethod
    def _pool(segments: list[dict], pool_id: tuple[int, int]) -> PoolBytes:
        mine = [s for s in segments if tuple(s["segment_pool_id"]) == pool_id]
        return PoolBytes(
            reserved_bytes=sum(int(s["total_size"]) for s in mine),
            live_bytes=sum(int(s["allocated_size"]) for s in mine),
            segments=len(mine),
        )

    def sample(self, pools) -> Sample:
        stats = torch.cuda.memory_stats()
        each = [self._pool(torch.cuda.memory_snapshot(mempool_id=pool), tuple(pool)) for pool in pools]
        return Sample(
            reserved_bytes=int(stats.get("reserved_bytes.all.current", 0)),
            allocated_bytes=int(stats.get("allocated_bytes.all.current", 0)),
            encoder=PoolBytes(
                sum(p.reserved_bytes for p in each), sum(p.live_bytes for p in each), sum(p.segments for p in each)
            ),
            process_used_bytes=self._nvml.process_used_bytes(),
        )

    def default_pool(self) -> PoolBytes:
        return self._pool(torch.cuda.memory_snapshot(), DEFAULT_POOL_ID)

    def free_bytes(self) -> int:
        free, _total = torch.cuda.mem_get_info(self.torch_device)
        stats = torch.cuda.memory_stats()
        cached = int(stats.get("reserved_bytes.all.current", 0)) - int(stats.get("allocated_bytes.all.current", 0))
        return int(free) + cached

    def measure_allocated(self, make: Callable[[], Any]) -> tuple[Any, int]:
        before = torch.cuda.memory_allocated()
        try:
            result = make()
        except torch.OutOfMemoryError as err:
            message = str(err)
        else:
            self.synchronize()  # the cache is left as it is: vLLM's capture loop never empties it
            return result, torch.cuda.memory_allocated() - before
        # Raised outside the except block, so that the frames holding the half-made tensors go.
        self._recover()
        raise _oom("allocating the inputs", message)

    # -- work ----------------------------------------------------------------------------------
    def new_pool(self):
        return torch.cuda.graph_pool_handle()

    def new_stream(self) -> torch.cuda.Stream:
        return torch.cuda.Stream()

    def warm_up(self, fn, stream, iterations: int) -> WarmUp:
        """Run ``fn`` eagerly on ``stream``; keep the last outputs (copied to the host), the last
        run's time and its peak allocated bytes above what was allocated before it."""
        message = None
        try:
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(iterations - 1):
                    fn()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                baseline = torch.cuda.memory_allocated()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(stream)
                outputs = fn()
                end.record(stream)
            torch.cuda.synchronize()
        except torch.OutOfMemoryError as err:
            message = str(err)
        if message is not None:
            self._recover()
            raise _oom("the eager warm-up", message)
        peak = int(torch.cuda.max_memory_allocated()) - baseline
        host = tuple(t.detach().to("cpu") for t in outputs)
        del outputs
        return WarmUp(host, start.elapsed_time(end), peak)

    def capture(self, fn, pool, stream, what: str) -> Captured:
        """Capture ``fn`` into ``pool`` on ``stream``. A failure names the operation when torch
        says which; an interrupt during capture stays an interrupt."""
        graph = torch.cuda.CUDAGraph()
        started = time.perf_counter()
        failure = None
        try:
            with torch.inference_mode(), torch.cuda.graph(graph, pool=pool, stream=stream):
                outputs = fn()
            torch.cuda.synchronize()
        except torch.OutOfMemoryError as err:
            failure = ("oom", str(err))
        except RuntimeError as err:
            # Ending a capture that a signal broke off raises its own error; the signal is what counts.
            if isinstance(err.__context__, KeyboardInterrupt):
                raise err.__context__ from None
            failure = ("error", _capture_error(err))
        if failure is not None:
            del graph
            self._recover()
            if failure[0] == "oom":
                raise _oom(f"the capture of {what}", failure[1])
            raise CaptureFailure(f"capture of {what} failed: {failure[1]}")
        outputs = tuple(outputs)
        capture_ms = (time.perf_counter() - started) * 1000.0
        return Captured(graph, outputs, capture_ms, sum(int(t.untyped_storage().nbytes()) for t in outputs))

    def record_history(self) -> None:
        # Python stacks only: they name the tower's line that allocated, and leave out C++ frames
        # that made a two-budget snapshot ten times larger.
        torch.cuda.memory._record_memory_history(stacks="python", max_entries=_HISTORY_ENTRIES)

    def history(self) -> dict:
        snapshot = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
        return snapshot

    def clock_us(self) -> int:
        return time.time_ns() // 1000  # trace events carry Unix time in microseconds

    def replay(self, captured: Captured, reference, repeats: int = 3) -> Replayed:
        """Replay once and compare with the eager outputs; then time ``repeats`` replays (median ms)."""
        captured.graph.replay()
        torch.cuda.synchronize()
        matches, diffs = True, [0.0]
        for out, ref in zip(captured.outputs, reference, strict=True):
            host = out.detach().to("cpu")
            matches = matches and torch.equal(host, ref)
            if host.numel():
                diffs.append(float((host.float() - ref.float()).abs().max()))
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            captured.graph.replay()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        finite = all(math.isfinite(d) for d in diffs)
        return Replayed(statistics.median(times), matches, max(diffs) if finite else None)
