"""``encgraph profile`` on the device: capture one encoder graph per budget and account for every byte.

Flow: build the tower on the device -> make each budget's static inputs and warm it up on the
capture stream, smallest first, skipping a budget that the smaller ones show cannot fit -> for each
budget, in the strategy's order, settle, sample, capture into the pool, settle, sample, replay and
compare -> final per-pool accounting (``accounting``). Only the ``Device`` touches the hardware;
what to capture and in which order was decided beforehand (``request.prepare``).

Capturing as vLLM does (``Capture.VLLM``): its capture inputs (the adapter's ``vllm_layout``; for
the families vLLM normalizes on the device, uint8 pixels that each graph normalizes first), then
budget after budget its inputs, one warm-up and its capture, the outputs copied to buffers outside
the pool, the cache never emptied; and vLLM's own estimate (the drop in free memory across it all)
beside the pool, split into its parts.

Nothing measured is lost: a budget that runs out of memory is recorded and the ladder goes on; a
capture failure or a signal (SIGINT, SIGTERM) stops the ladder, and the report still holds every
budget measured before it, marked incomplete.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import accounting
from .accounting import Warmed
from .device import Device, Sample
from .errors import CaptureFailure, DeviceOutOfMemory, Terminated
from .memory_snapshot import Phase, label
from .memory_snapshot import save as save_snapshot
from .models.base import Layout
from .reporting import assemble, provenance, visible_devices
from .request import Prepared
from .schema import BudgetResult, BudgetStatus, Capture, Pool, Report, StopReason, UnmeasuredBudget
from .units import gib

# (what is happening, steps done, steps in all)
Progress = Callable[[str, int, int], None]


def measure(setup: Prepared, progress: Progress | None = None, device: Device | None = None) -> Report:
    """Profile ``setup`` on ``device`` (the current CUDA device by default); see the module
    docstring for the protocol. Always returns a report once the tower is built:
    ``report.complete`` says whether every budget was measured."""
    if device is None:
        from .cuda_device import CudaDevice

        device = CudaDevice()
    return Ladder(setup, device, progress or (lambda *_: None)).run()


class Ladder:
    """One profile run. Its state is explicit: what was warmed up, measured, left unmeasured and
    captured so far, each graph kept referenced until the final sample (each one holds its pool)."""

    def __init__(self, setup: Prepared, device: Device, progress: Progress):
        self.setup, self.device, self.progress = setup, device, progress
        self.request = setup.request
        self.as_vllm = self.request.strategy.capture is Capture.VLLM
        self.steps, self.done = 1 + 2 * len(setup.layouts), 0
        self.pools: list[Any] = []  # the encoder pools, one shared or one per graph
        self.warmed: list[Warmed] = []
        self.results: list[BudgetResult] = []
        self.unmeasured: dict[str, UnmeasuredBudget] = {}  # by graph label
        self.graphs: list[Any] = []
        self.phases: list[Phase] = []  # what each stretch of the allocator history belongs to
        self.captures_started: list[str] = []  # graph labels, in the order their captures started
        self.failed_captures: list[str] = []  # captures that ran out of memory, leaving blocks in the pool
        self.warnings: list[str] = list(device.problems)
        self.stream: Any = None  # the capture stream, made with the tower
        self.generator: Any = None  # the host generator every budget's inputs are drawn from

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> Report:
        started = time.perf_counter()
        tower, weights_bytes, context_bytes = self._build()
        origin = self._provenance()
        if self.request.memory_snapshot is not None:
            self.device.record_history()
        estimate_start = (self.device.sample(self.pools), self.device.driver_free_bytes()) if self.as_vllm else None
        stopped_by = self._capture_ladder(tower)
        estimate = None
        if estimate_start is not None and stopped_by is None:
            sample, free = self.device.sample(self.pools), self.device.driver_free_bytes()
            estimate = accounting.vllm_estimate(*estimate_start, sample, free, self.warmed)
        self._record_unrun(stopped_by)
        if self.request.memory_snapshot is not None:
            self._save_snapshot(self.request.memory_snapshot)
        self.progress("accounting", self.steps, self.steps)
        self.device.settle()
        final = self.device.sample(self.pools)
        pools, pool_warnings = accounting.pool_rows(
            final,
            self.device.default_pool(),
            weights_bytes,
            sum(w.io_bytes for w in self.warmed),
            context_bytes,
            self.results,
        )
        release = self._release() if self.request.check_release else None
        mismatched = [
            f"replay differs from eager for budget {b.label}" for b in self.results if not b.replay_matches_eager
        ]
        return assemble(
            self.setup,
            origin,
            budgets=tuple(sorted(self.results, key=lambda r: r.key)),
            pools=pools,
            process_used_bytes=final.process_used_bytes,
            wall_ms=(time.perf_counter() - started) * 1000.0,
            warnings=self.warnings + pool_warnings + mismatched,
            unmeasured=tuple(sorted(self.unmeasured.values(), key=lambda u: u.key)),
            stopped_by=stopped_by,
            release=release,
            vllm_estimate=estimate,
        )

    def _build(self) -> tuple[Any, int, int | None]:
        """The tower on the device, from the weights alone: (tower, weight bytes, CUDA context bytes)."""
        import torch

        self.progress(f"building the {self.setup.spec.name} tower", 0, self.steps)
        self.stream = self.device.new_stream()
        if self.request.strategy.pool is Pool.SHARED:  # per-graph: one more before each capture
            self.pools.append(self.device.new_pool())
        self.device.settle()
        start = self.device.sample(self.pools)
        torch.manual_seed(self.request.seed)
        # Inputs are drawn on the host: a failed capture cannot spoil the generator.
        self.generator = torch.Generator().manual_seed(self.request.seed)
        settings, adapter = self.setup.settings, self.setup.adapter
        with torch.device(self.device.torch_device):
            tower, weights_bytes = self.device.measure_allocated(lambda: self._tower(adapter, settings))
        self.device.settle()  # what building left cached goes back: every strategy starts from the weights alone
        return tower, weights_bytes, accounting.difference(start.process_used_bytes, start.reserved_bytes)

    def _tower(self, adapter, settings) -> Any:
        tower = adapter.build_tower(self.setup.tower_config, settings.dtype, settings.attn)
        if self.setup.pixel_norm is not None:  # its scale and shift are the tower's, as vLLM's: with the weights
            adapter.normalize_pixels_in(tower, self.setup.pixel_norm)
        return tower

    def _provenance(self):
        info = self.device.info()
        return provenance(info.name, info.total_bytes, info.driver, info.cuda, info.allocator_conf, visible_devices())

    def _between_steps(self) -> None:
        """vLLM's capture loop never empties the cache; encgraph's own settles before each step, so
        that every warm-up starts from what is held, not what is cached."""
        if self.as_vllm:
            self.device.synchronize()
        else:
            self.device.settle()

    def _capture_ladder(self, tower: Any) -> StopReason | None:
        """Warm up and capture every layout in the strategy's order; why the ladder stopped, if it did."""
        order = self.setup.capture_order()
        try:
            if self.as_vllm:  # vLLM's loop: each budget's inputs, one warm-up, its capture, budget after budget
                for layout in order:
                    item = self._warm(tower, layout)
                    if item is not None and not self._capture(item):
                        return StopReason.CAPTURE_FAILURE
                return None
            for layout in reversed(self.setup.layouts):  # smallest first, so that each can judge the next
                self._warm(tower, layout)
            position = {layout.label: i for i, layout in enumerate(order)}
            for item in sorted(self.warmed, key=lambda w: position[w.layout.label]):
                if not self._capture(item):
                    return StopReason.CAPTURE_FAILURE
        except KeyboardInterrupt as signal:
            return StopReason.SIGTERM if isinstance(signal, Terminated) else StopReason.SIGINT
        return None

    # -- one budget -------------------------------------------------------------------------------
    def _step(self, what: str) -> None:
        self.done += 1
        self.progress(what, self.done, self.steps)

    def _unmeasured(self, layout: Layout, status: BudgetStatus, reason: str, requested: int | None = None) -> None:
        self.unmeasured[layout.label] = UnmeasuredBudget(layout.budget, status, reason, requested, layout.path)

    def _warm(self, tower: Any, layout: Layout) -> Warmed | None:
        """Make the budget's inputs and warm it up; None (recorded) where it cannot fit."""
        self._step(f"warming up budget {layout.label}")
        self._between_steps()
        needed, free = accounting.fit_estimate(self.warmed, layout), self.device.free_bytes()
        if needed is not None and needed > free:
            self._unmeasured(
                layout,
                BudgetStatus.OUT_OF_MEMORY,
                f"not run: the smaller budgets scale to at least {gib(needed)} GiB for its inputs and eager "
                f"forward, and {gib(free)} GiB is free",
            )
            return None
        began = self.device.clock_us()
        try:
            item = self._inputs_and_warm_up(tower, layout)
        except DeviceOutOfMemory as oom:  # its memory goes back at the next settle
            self._unmeasured(layout, BudgetStatus.OUT_OF_MEMORY, str(oom), oom.requested_bytes)
            return None
        finally:
            self.phases.append(Phase(f"warm-up budget={layout.label}", began, self.device.clock_us()))
        self.warmed.append(item)
        return item

    def _inputs_and_warm_up(self, tower: Any, layout: Layout) -> Warmed:
        import torch

        setup, device, adapter = self.setup, self.device, self.setup.adapter
        inputs, io_bytes = device.measure_allocated(
            lambda: adapter.make_inputs(
                tower, setup.tower_config, layout, setup.settings.dtype, device.torch_device, self.generator
            )
        )

        def run() -> tuple:
            return adapter.forward(tower, inputs)

        eager = device.warm_up(run, self.stream, self.request.warmup_iterations)
        if not self.as_vllm:
            return Warmed(layout, run, io_bytes, eager.reference, eager.eager_ms, eager.peak_bytes)
        # vLLM copies each graph's outputs to buffers made beside its inputs: the graph's own are freed in its pool.
        buffers, buffer_bytes = device.measure_allocated(
            lambda: tuple(torch.empty_like(r, device=device.torch_device) for r in eager.reference)
        )

        def copied() -> tuple:
            return tuple(b.copy_(o) for b, o in zip(buffers, run(), strict=True))

        return Warmed(
            layout, copied, io_bytes + buffer_bytes, eager.reference, eager.eager_ms, eager.peak_bytes, buffer_bytes
        )

    def _capture(self, item: Warmed) -> bool:
        """Capture one budget and measure it; False where the ladder must stop."""
        layout = item.layout
        self._step(f"capturing budget {layout.label}")
        if self.request.strategy.pool is Pool.PER_GRAPH:
            self.pools.append(self.device.new_pool())
        self._between_steps()
        before: Sample = self.device.sample(self.pools)
        began = self.device.clock_us()
        self.captures_started.append(layout.label)
        try:
            captured = self.device.capture(item.run, self.pools[-1], self.stream, f"budget {layout.label}")
        except DeviceOutOfMemory as oom:
            self._unmeasured(layout, BudgetStatus.OUT_OF_MEMORY, str(oom), oom.requested_bytes)
            self.failed_captures.append(layout.label)
            return True
        except CaptureFailure as failure:
            self._unmeasured(layout, BudgetStatus.CAPTURE_FAILED, str(failure))
            return False
        finally:
            self.phases.append(Phase(f"budget={layout.label}", began, self.device.clock_us()))
        self._between_steps()
        after = self.device.sample(self.pools)
        replayed = self.device.replay(captured, item.reference)
        self.graphs.append(captured)
        self.results.append(
            accounting.budget_row(
                item,
                before,
                after,
                captured.output_bytes,
                captured.capture_ms,
                replayed.replay_ms,
                replayed.matches,
                replayed.max_abs_diff,
            )
        )
        self.progress(f"captured budget {layout.label}", self.done, self.steps)
        return True

    # -- the end --------------------------------------------------------------------------------
    def _record_unrun(self, stopped_by: StopReason | None) -> None:
        """Every layout neither measured nor recorded is not_run; a capture that ran out of memory
        taints the pool figures of the captures after it, which a warning says."""
        measured = {r.label for r in self.results}
        for layout in self.setup.layouts:
            if layout.label not in measured and layout.label not in self.unmeasured:
                reason = f"not run: the ladder stopped ({stopped_by}) before this budget" if stopped_by else "not run"
                self._unmeasured(layout, BudgetStatus.NOT_RUN, reason)
        if not self.failed_captures:
            return
        first_failed = min(self.failed_captures, key=self.captures_started.index)
        later = self.captures_started[self.captures_started.index(first_failed) + 1 :]
        after_failure = [label for label in later if label in measured]
        if after_failure:
            self.warnings.append(
                f"the capture of budget {first_failed} ran out of memory; the pool figures of budgets "
                f"{', '.join(after_failure)}, captured after it, include what it left in the encoder pools"
            )

    def _save_snapshot(self, path: Path) -> None:
        """Write the labelled allocator history; a failure to write is a warning: the measurements stand."""
        try:
            save_snapshot(label(self.device.history(), self.phases), path)
        except OSError as error:
            self.warnings.append(f"the memory snapshot could not be written to {path} ({error.strerror or error})")

    def _release(self):
        """Drop every graph, its outputs and inputs, empty the cache, and say what came back."""
        held = self.device.sample(self.pools)
        self.graphs.clear()
        self.warmed.clear()
        gc.collect()
        self.device.settle()
        return accounting.release_check(held, self.device.sample(self.pools))
