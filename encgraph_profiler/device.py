"""The seam between a profile's orchestration and the hardware.

``profile`` asks a ``Device`` for samples and captures and turns them into rows; it never touches
``torch.cuda`` itself. ``cuda_device.CudaDevice`` is the real one; tests use a fake with a byte
cost model, so that the per-budget and per-pool arithmetic, partial reports and interrupted runs
are checked on any machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    total_bytes: int
    driver: str | None
    cuda: str | None
    allocator_conf: str


@dataclass(frozen=True)
class PoolBytes:
    """What the allocator holds for one pool, summed over the pool's segments."""

    reserved_bytes: int  # segment sizes: what the pool costs
    live_bytes: int  # blocks in use
    segments: int


@dataclass(frozen=True)
class Sample:
    """One look at the device, taken after ``settle``."""

    reserved_bytes: int  # the allocator's counter, every pool
    allocated_bytes: int  # the allocator's counter of live blocks, every pool
    encoder: PoolBytes  # the encoder graph pool, from the allocator's segments
    process_used_bytes: int | None  # NVML, this process; None where NVML cannot say


@dataclass(frozen=True)
class WarmUp:
    reference: tuple[Any, ...]  # the last eager outputs, copied to the host
    eager_ms: float
    peak_bytes: int  # peak allocated above the level before the forward


@dataclass(frozen=True)
class Captured:
    graph: Any
    outputs: tuple[Any, ...]  # static outputs, live in the graph's pool
    capture_ms: float
    output_bytes: int


@dataclass(frozen=True)
class Replayed:
    replay_ms: float  # median of a few replays
    matches: bool  # the first replay's outputs equal the eager outputs bit for bit
    max_abs_diff: float | None  # None where the difference is not a finite number


class Device(Protocol):
    """One GPU as ``profile`` uses it. Methods that run work raise ``DeviceOutOfMemory`` when it
    does not fit and ``CaptureFailure`` when a capture fails for another reason."""

    torch_device: Any  # where towers and inputs are built
    problems: tuple[str, ...]  # what the device cannot report here (for example NVML), as warnings

    def info(self) -> DeviceInfo: ...

    def settle(self) -> None:
        """Wait for the device and return cached blocks, so that reserved bytes mean held bytes."""

    def synchronize(self) -> None:
        """Wait for the device, keeping cached blocks cached (as an engine's capture loop does)."""

    def driver_free_bytes(self) -> int:
        """The device's free memory as the driver reports it (what an engine's estimate reads)."""

    def sample(self, pools: Sequence[Any]) -> Sample:
        """The allocator's counters, NVML's figure, and the encoder bytes: ``pools`` added up."""

    def default_pool(self) -> PoolBytes:
        """The default pool, from the allocator's segments (a full snapshot: taken once, at the end)."""

    def free_bytes(self) -> int:
        """What one more allocation could still get, after ``settle``."""

    def measure_allocated(self, make: Callable[[], Any]) -> tuple[Any, int]:
        """Run ``make`` and return its result and the bytes it left allocated."""

    def new_pool(self) -> Any: ...

    def new_stream(self) -> Any: ...

    def warm_up(self, fn: Callable[[], tuple], stream: Any, iterations: int) -> WarmUp: ...

    def capture(self, fn: Callable[[], tuple], pool: Any, stream: Any, what: str) -> Captured: ...

    def replay(self, captured: Captured, reference: tuple[Any, ...]) -> Replayed: ...

    def record_history(self) -> None:
        """Start recording every allocation and free, with Python stacks (--memory-snapshot)."""

    def history(self) -> dict:
        """Stop recording; the allocator snapshot (``segments`` and ``device_traces``)."""

    def clock_us(self) -> int:
        """Now, on the clock the history stamps its events with, in microseconds."""
