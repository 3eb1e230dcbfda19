"""``profile --memory-snapshot``: the allocator's history of the run, as pytorch.org/memory_viz
opens it, each trace event's ``category`` naming the budget whose warm-up or capture made it. No torch.

The viewer colours events by an optional per-event category and ignores the pool ids, so the
category is what tells budgets apart; where any event has one, the viewer also expects one named
``unknown`` (events outside every phase: building inputs, emptying the cache). It unpickles with
protocol 4 at most.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

from .files import write_atomic

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Phase:
    category: str  # "budget=4096" for a capture, "warm-up budget=4096" for its warm-up
    start_us: int  # on the clock the history stamps its events with
    end_us: int


def label(snapshot: dict, phases: list[Phase]) -> dict:
    """The snapshot with every trace event's ``category`` set: the phase whose span holds its
    time, else ``unknown``."""

    def category(event: dict) -> str:
        time = event.get("time_us")
        for phase in phases:
            if time is not None and phase.start_us <= time <= phase.end_us:
                return phase.category
        return UNKNOWN

    traces = [
        [{**event, "category": category(event)} for event in device] for device in snapshot.get("device_traces", [])
    ]
    return {**snapshot, "device_traces": traces}


def save(snapshot: dict, path: Path) -> None:
    write_atomic(path, pickle.dumps(snapshot, protocol=4))
