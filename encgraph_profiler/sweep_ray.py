"""``encgraph sweep --on ray``: the local sweep's cells on a Ray cluster, for matrices that outgrow
one host.

Ray schedules; encgraph only submits and collects. The parent checks and prepares every cell, as the
local sweep does, and ships each cell's preparation with its task, so that a node needs encgraph
installed but neither the model's config nor the Hub. Each cell is one Ray task in a fresh worker
process (``max_calls=1``: nothing a cell leaves in CUDA or the allocator reaches the next), never
retried. A measurement takes one GPU (of ``--gpu-type`` where asked, through Ray's accelerator-type
resources), a prediction one CPU. Reports come back through Ray's object store and are written here;
a cell that fails is recorded with its exit code, a cell whose worker or node is lost with
``INTERNAL``, and the rest go on. Ctrl-C cancels the cells that have not started, interrupts the
running ones (a measurement keeps what it measured) and keeps what finished.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EnvironmentProblem, ExitCode
from .files import write_atomic
from .request import Prepared
from .sweep import GRACE_S, Cell, CellResult, not_run, outcome, prepare_cells

if TYPE_CHECKING:
    from .device import Device
    from .schema import Report

RAY_MISSING = "--on ray needs Ray, an optional extra of encgraph: pip install 'encgraph[ray]'"
ACCELERATOR = "accelerator_type:"  # the prefix of Ray's resource that names a node's GPU type
# What a cell's process reads from its environment, sent from this one: a worker's own may differ.
SENT_ENV = ("PYTORCH_CUDA_ALLOC_CONF",)

# Told once with None when the cluster has taken the sweep, then with each cell as it comes back:
# the cell's result, the cells back so far, the cells in all.
OnResult = Callable[[CellResult | None, int, int], None]


@dataclass(frozen=True)
class Sent:
    """What a cell's task sends back through the object store."""

    exit_code: int
    message: str
    report: str | None  # the report, as JSON text
    node: str  # the address of the node it ran on
    gpu: str | None  # the GPU index Ray gave it on that node
    wall_s: float  # the task's own time, from its start in the worker


def require_ray() -> Any:
    """The ``ray`` module, or an EnvironmentProblem that says how to get it."""
    try:
        import ray
    except ImportError:
        raise EnvironmentProblem(RAY_MISSING) from None
    return ray


def _cell_task(setup: Prepared, cell: Cell, env: dict[str, str | None], device: Callable[[], Device] | None) -> Sent:
    """In a fresh Ray worker: the cell's environment, then the cell, as the local sweep's child runs it."""
    started = time.perf_counter()
    import ray

    from .report_io import to_json

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    node = ray.util.get_node_ip_address()

    def with_node(report: Report) -> str:
        return to_json(replace(report, provenance=replace(report.provenance, node=node)))

    report, code, message = outcome(setup, cell, with_node, device() if device else None)
    gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU") or []
    return Sent(code, message, report, node, ",".join(gpus) or None, time.perf_counter() - started)


def _connect(ray: Any, workers: int | None) -> bool:
    """Join the cluster at RAY_ADDRESS, or the one this process already joined, or start a local one
    with ``workers`` CPUs (default: this host's). True when this call started or joined it."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": bool(os.environ.get("ENCGRAPH_DEBUG")), "logging_level": "WARNING"}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **quiet)
    else:
        ray.init(address="local", num_cpus=workers or os.cpu_count(), include_dashboard=False, **quiet)
    return True


def check_room(resources: dict[str, float], cells: list[Cell], gpu_resource: str) -> None:
    """Refuse, before any cell runs, a sweep that would wait forever: measurements on a cluster with
    no GPU, or on a GPU type no node has. ``resources`` is the cluster's (``ray.cluster_resources()``)."""
    measured = [c for c in cells if not c.predicted]
    if measured and not resources.get(gpu_resource):
        raise EnvironmentProblem(
            f"the Ray cluster has no GPU ({gpu_resource} resource); `sweep --predict` runs on its CPUs"
        )
    have = sorted(name.removeprefix(ACCELERATOR) for name in resources if name.startswith(ACCELERATOR))
    for cell in measured:
        if cell.gpu_type is not None and cell.gpu_type not in have:
            raise EnvironmentProblem(
                f"--gpu-type {cell.gpu_type}: no node of the Ray cluster has one; it has {', '.join(have) or 'none'}"
            )


def _options(cell: Cell, gpu_resource: str) -> dict[str, Any]:
    """A cell's demand: one CPU for a prediction; one GPU (of its type, where asked) for a measurement."""
    if cell.predicted:
        return {"num_cpus": 1}
    demand: dict[str, Any] = {"num_cpus": 1}
    if gpu_resource == "GPU":
        demand["num_gpus"] = 1
    else:  # a custom resource that stands for a GPU
        demand["resources"] = {gpu_resource: 1}
    if cell.gpu_type is not None:
        demand["accelerator_type"] = cell.gpu_type
    return demand


def run(
    cells: list[Cell],
    out: Path,
    workers: int | None = None,
    on_result: OnResult | None = None,
    gpu_resource: str = "GPU",
    device: Callable[[], Device] | None = None,
) -> list[CellResult]:
    """Run every cell as a Ray task, at most ``workers`` at once (default: as many as the cluster
    has room for); write each report to ``out`` as it comes back; return in cell order. A
    measurement takes one ``gpu_resource`` and measures on ``device()`` (default: the GPU Ray gave
    it); tests name a custom resource and a fake device."""
    ray = require_ray()
    setups = prepare_cells(cells)
    started_here = _connect(ray, workers)
    try:
        check_room(ray.cluster_resources(), cells, gpu_resource)
        return _Sweep(ray, cells, setups, out, workers, on_result, gpu_resource, device).run()
    finally:
        if started_here:
            ray.shutdown()


class _Sweep:
    """One sweep on Ray: the cells waiting to be submitted, the tasks in flight, the results so far."""

    def __init__(
        self,
        ray: Any,
        cells: list[Cell],
        setups: list[Prepared],
        out: Path,
        workers: int | None,
        on_result: OnResult | None,
        gpu_resource: str,
        device: Callable[[], Device] | None,
    ):
        self.ray, self.cells, self.setups, self.out = ray, cells, setups, out
        self.workers, self.on_result = workers, on_result
        self.task = ray.remote(max_calls=1, max_retries=0)(_cell_task)
        self.env = {name: os.environ.get(name) for name in SENT_ENV}
        self.gpu_resource, self.device = gpu_resource, device
        self.waiting = list(range(len(cells)))
        self.running: dict[Any, tuple[int, float]] = {}  # task -> cell index, when it was submitted
        self.results: dict[int, CellResult] = {}

    def run(self) -> list[CellResult]:
        if self.on_result:
            self.on_result(None, 0, len(self.cells))
        try:
            while self.waiting or self.running:
                while self.waiting and (self.workers is None or len(self.running) < self.workers):
                    self._submit()
                # A short wait, so that Ctrl-C is seen between two.
                done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=0.5)
                for task in done:
                    self._record(task)
        except KeyboardInterrupt:
            self._cancel()
        return [self.results[i] for i in range(len(self.cells))]

    # Each cell's index is, at every moment Ctrl-C can come, in ``waiting``, in ``running`` or in
    # ``results``: an index leaves one only once it is in the next.
    def _submit(self) -> None:
        index = self.waiting[0]
        cell = self.cells[index]
        task = self.task.options(**_options(cell, self.gpu_resource), name=f"encgraph {cell.name}")
        self.running[task.remote(self.setups[index], cell, self.env, self.device)] = (index, time.perf_counter())
        self.waiting.pop(0)

    def _record(self, task: Any) -> None:
        index, submitted = self.running[task]
        cell = self.cells[index]
        try:
            sent = self.ray.get(task)
        except self.ray.exceptions.TaskCancelledError:
            words = "cancelled (Ctrl-C) before it reported"
            result = CellResult(cell, None, int(ExitCode.INTERRUPTED), None, words, 0.0)
        except self.ray.exceptions.RayError as lost:
            cause = getattr(lost, "cause", None) or lost
            words = f"{type(cause).__name__}: {str(cause).strip()}".splitlines()[0]
            elapsed = time.perf_counter() - submitted
            result = CellResult(cell, None, int(ExitCode.INTERNAL), None, f"lost on Ray ({words})", elapsed)
        else:
            path = None
            if sent.report is not None:
                path = self.out / f"{cell.name}.json"
                write_atomic(path, sent.report)
            result = CellResult(cell, sent.gpu, sent.exit_code, path, sent.message, sent.wall_s, sent.node)
        self.results[index] = result
        del self.running[task]
        if self.on_result:
            self.on_result(result, len(self.results), len(self.cells))

    def _cancel(self) -> None:
        """Ctrl-C: tasks not started are cancelled; running ones are interrupted and get GRACE_S to
        send back what they measured; every other cell is recorded as not run."""
        if self.running:
            self._stop_running()
        for index in self.waiting:
            self.results.setdefault(index, not_run(self.cells[index]))
        self.waiting = []

    def _stop_running(self) -> None:
        for task in self.running:
            self.ray.cancel(task)
        done, late = self.ray.wait(list(self.running), num_returns=len(self.running), timeout=GRACE_S)
        for task in done:
            self._record(task)
        for task in late:
            self.ray.cancel(task, force=True)
            index, submitted = self.running.pop(task)
            self.results[index] = CellResult(
                self.cells[index],
                None,
                int(ExitCode.INTERRUPTED),
                None,
                f"interrupted; sent nothing back within {GRACE_S:.0f} s",
                time.perf_counter() - submitted,
            )
