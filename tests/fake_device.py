"""A fake ``Device`` with a byte cost model, so that profile's arithmetic runs on any machine.

The tower and its inputs are real (tiny configs on the CPU); what a GPU would hold is modelled:
- the default pool holds every tensor the profile keeps (weights, static inputs: tracked through
  weak references, so that a dropped tensor is freed as on the GPU) plus one library workspace
  made at the first warm-up, in 2 MiB segments;
- an eager forward peaks at ``activation_factor`` x its inputs' bytes;
- a capture of budget B needs ``scratch_per_token`` x B bytes of scratch plus its outputs, rounded
  up to 2 MiB, in the pool it is captured into, which grows only when a capture needs more than it
  has (a shared pool captured largest first: later captures reuse it; one pool per graph: each
  holds its own);
- every capture adds ``exec_per_capture`` outside the allocator; the CUDA context is ``context``;
- the device has ``capacity`` bytes; work that would go past it raises DeviceOutOfMemory.
Tests compute what the report must say from these parameters, independently of profile's code.
"""

from __future__ import annotations

import weakref

import torch

from encgraph_profiler.device import Captured, DeviceInfo, PoolBytes, Replayed, Sample, WarmUp
from encgraph_profiler.errors import CaptureFailure, DeviceOutOfMemory

KiB, MiB, GiB = 1024, 1024**2, 1024**3
SEGMENT = 2 * MiB


def round_up(n: int, unit: int = SEGMENT) -> int:
    return -(-n // unit) * unit


def tensor_bytes(obj) -> int:
    """Bytes the allocator would hand out for obj's tensors: each block rounded up to 512."""
    return sum(round_up(t.untyped_storage().nbytes(), 512) for t in _tensors(obj))


def _tensors(obj):
    if isinstance(obj, torch.nn.Module):
        return [*obj.parameters(), *obj.buffers()]
    if isinstance(obj, dict):
        return [t for t in obj.values() if isinstance(t, torch.Tensor)]
    return [t for t in obj if isinstance(t, torch.Tensor)]


class FakeDevice:
    torch_device = torch.device("cpu")

    def __init__(
        self,
        *,
        context=500 * MiB,
        workspace=32 * MiB,
        activation_factor=3,
        scratch_per_token=64 * KiB,
        exec_per_capture=2 * MiB,
        capacity=80 * GiB,
        nvml=True,
        stop_at_capture=None,
        fail_capture=(),
        mismatch=(),
        on_capture=None,
        keep_graphs=False,
    ):
        self.context, self.workspace, self.activation_factor = context, workspace, activation_factor
        self.scratch_per_token, self.exec_per_capture, self.capacity = scratch_per_token, exec_per_capture, capacity
        self.nvml = nvml
        self.stop_at_capture = stop_at_capture  # (n, exception): raise it when the n-th capture starts
        self.fail_capture, self.mismatch, self.on_capture = set(fail_capture), set(mismatch), on_capture
        self.problems = () if nvml else ("NVML is not available (fake); NVML columns show n/a",)
        self._kept: list[weakref.ref] = []  # tensors in the default pool
        self._workspace_made = False
        self._last_inputs_bytes = 0
        self.graph_pools: dict[int, dict] = {}  # pool -> its reserved bytes, segments and graphs (weakly)
        self.keep_graphs = keep_graphs  # hold every graph, as a leak elsewhere would: no pool comes back
        self._held: list = []
        self.captures = 0
        self.captured: list[str] = []  # what each capture was, in order
        self.graph_exec = 0

    # -- the ledger ---------------------------------------------------------------------------
    @property
    def default_live(self) -> int:
        alive = {id(t.untyped_storage()): t for t in (r() for r in self._kept) if t is not None}
        return sum(round_up(t.untyped_storage().nbytes(), 512) for t in alive.values()) + (
            self.workspace if self._workspace_made else 0
        )

    @property
    def default_reserved(self) -> int:
        return round_up(self.default_live)

    def _live(self, pools) -> int:
        """The outputs of the pools' graphs still alive."""
        graphs = [g() for p in pools for g in self.graph_pools[p]["graphs"]]
        return sum(
            round_up(t.untyped_storage().nbytes(), 512)
            for g in graphs
            if g is not None
            for t in self._in_pool(g.outputs)
        )

    def _in_pool(self, outputs):
        """The outputs the graph's pool holds: not those made in the default pool beforehand."""
        kept = {id(t.untyped_storage()) for t in (r() for r in self._kept) if t is not None}
        return [t for t in outputs if id(t.untyped_storage()) not in kept]

    @property
    def pool_reserved(self) -> int:
        """Every graph pool's reserved bytes."""
        return sum(p["reserved"] for p in self.graph_pools.values())

    @property
    def reserved(self) -> int:
        return self.default_reserved + self.pool_reserved

    # -- Device ---------------------------------------------------------------------------------
    def info(self) -> DeviceInfo:
        return DeviceInfo("Fake GPU 80GB", self.capacity, "0.0", "0.0", "")

    def settle(self) -> None:
        """Emptying the cache: a pool none of whose graphs is alive goes back to the driver."""
        self._event("segment_free", 0)  # outside every warm-up and capture
        for mine in self.graph_pools.values():
            if mine["graphs"] and all(g() is None for g in mine["graphs"]):
                mine.update(reserved=0, segments=0, graphs=[])

    def synchronize(self) -> None:
        pass

    def driver_free_bytes(self) -> int:
        return self.capacity - self.context - self.graph_exec - self.reserved

    def sample(self, pools) -> Sample:
        return Sample(
            reserved_bytes=self.reserved,
            allocated_bytes=self.default_live + self._live(self.graph_pools),
            encoder=PoolBytes(
                sum(self.graph_pools[p]["reserved"] for p in pools),
                self._live(pools),
                sum(self.graph_pools[p]["segments"] for p in pools),
            ),
            process_used_bytes=self.context + self.reserved + self.graph_exec if self.nvml else None,
        )

    def default_pool(self) -> PoolBytes:
        return PoolBytes(self.default_reserved, self.default_live, self.default_reserved // SEGMENT)

    def free_bytes(self) -> int:
        return self.capacity - self.context - self.graph_exec - self.reserved

    def measure_allocated(self, make):
        before = self.default_live
        result = make()
        self._kept += [weakref.ref(t) for t in _tensors(result)]
        self._last_inputs_bytes = tensor_bytes(result)
        return result, self.default_live - before

    def new_pool(self):
        pool = len(self.graph_pools)
        self.graph_pools[pool] = {"reserved": 0, "segments": 0, "graphs": []}
        return pool

    def new_stream(self):
        return None

    def warm_up(self, fn, stream, iterations) -> WarmUp:
        peak = self.activation_factor * self._last_inputs_bytes
        if peak + (0 if self._workspace_made else self.workspace) > self.free_bytes():
            raise DeviceOutOfMemory("out of memory in the eager warm-up (fake)", peak)
        self._workspace_made = True
        with torch.inference_mode():
            outputs = fn()
        self._event("alloc", peak)
        self._event("free_completed", peak)
        return WarmUp(tuple(t.clone() for t in outputs), 1.0, peak)

    def capture(self, fn, pool, stream, what: str) -> Captured:
        self.captures += 1
        if self.stop_at_capture and self.stop_at_capture[0] == self.captures:
            raise self.stop_at_capture[1]()
        if self.on_capture:
            self.on_capture(self.captures)
        self.captured.append(what)
        budget = int(what.split()[-1].split(":")[-1])  # "budget 4096", or "budget local:4096" on a path
        if budget in self.fail_capture:
            raise CaptureFailure(f"capture of {what} failed: operation not permitted when stream is capturing (fake)")
        with torch.inference_mode():
            outputs = tuple(fn())
        need = round_up(self.scratch_per_token * budget + tensor_bytes(self._in_pool(outputs)))
        mine = self.graph_pools[pool]
        growth = max(0, need - mine["reserved"])
        if growth > self.free_bytes():
            raise DeviceOutOfMemory(f"out of memory in the capture of {what} (fake)", growth)
        mine["reserved"] += growth
        mine["segments"] += growth // SEGMENT
        self._event("segment_alloc", growth)
        captured = Captured(budget, outputs, 1.0, sum(t.untyped_storage().nbytes() for t in outputs))
        self.graph_exec += self.exec_per_capture
        mine["graphs"].append(weakref.ref(captured))
        if self.keep_graphs:
            self._held.append(captured)
        return captured

    # The allocator history: an event per warm-up and capture, stamped by a clock that ticks per call.
    def record_history(self):
        self.events = []

    def history(self):
        events, self.events = self.events, None
        return {"segments": [], "device_traces": [events]}

    def clock_us(self):
        self.clock = getattr(self, "clock", 0) + 1
        return self.clock

    def _event(self, action, size):
        if getattr(self, "events", None) is not None:
            self.events.append(
                {
                    "action": action,
                    "addr": len(self.events),
                    "size": size,
                    "stream": 0,
                    "time_us": self.clock_us(),
                    "frames": [],
                }
            )

    def replay(self, captured: Captured, reference) -> Replayed:
        if captured.graph in self.mismatch:
            return Replayed(0.5, False, 0.25)
        matches = all(torch.equal(a, b) for a, b in zip(captured.outputs, reference, strict=True))
        return Replayed(0.5, matches, 0.0)
