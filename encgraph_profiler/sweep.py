"""``encgraph sweep``: many profiles or predictions, models x budget ladders x strategies (x GPU
capabilities for predictions), one fresh process per cell: one cell at a time on each GPU named, or
``workers`` predictions at a time on the CPU. ``sweep_ray`` runs the same cells on a Ray cluster.

The parent validates every cell and imports torch and transformers once, without ever touching
CUDA; each cell is a process forked from it, which pins itself to its GPU (CUDA_VISIBLE_DEVICES, set
before CUDA starts) and so pays only for CUDA's start-up and the measurement. A cell that fails
(out of memory, a failed capture, anything) is recorded and the sweep goes on; a capture failure
that leaves a process unusable dies with its cell. Ctrl-C reaches the parent alone (each cell runs in
a process group of its own): it starts no more cells, interrupts the running ones once (a measurement
keeps what it measured), gives them GRACE_S to report, and records every cell.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .check import assess
from .errors import EncgraphError, EnvironmentProblem, ExitCode, UsageError
from .nvml import device_count
from .request import STRATEGIES, Prepared, ProfileRequest, prepare

if TYPE_CHECKING:
    from .device import Device
    from .schema import Report

T = TypeVar("T")

GRACE_S = 30.0  # after Ctrl-C, how long the interrupted cells have to send back what they measured
NOT_RUN = "not run: the sweep was interrupted"


@dataclass(frozen=True)
class Cell:
    model: str
    budgets: tuple[int, ...]
    strategy: str  # a name of request.STRATEGIES
    capability: tuple[int, int] | None = None  # a prediction for a GPU of this compute capability; None: measured
    gpu_type: str | None = None  # measured on Ray: the accelerator type asked for (H100, L40S); None: any GPU

    @property
    def predicted(self) -> bool:
        return self.capability is not None

    @property
    def name(self) -> str:
        """A file name for the cell's report."""
        model = self.model.replace("/", "--").replace("\\", "--").lstrip(".")
        parts = [model, "-".join(map(str, self.budgets)), self.strategy]
        if self.capability is not None:
            parts.append("cc{}.{}".format(*self.capability))
        if self.gpu_type is not None:
            parts.append(self.gpu_type)
        return ".".join(parts)


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    gpu: str | None  # the GPU index it ran on (of its node, on Ray), or None on the default device or the CPU
    exit_code: int
    report: Path | None  # the report it wrote, if any
    message: str  # one line: what went wrong, or "" when all was measured
    wall_s: float
    node: str | None = None  # on Ray: the address of the node it ran on


def check_gpus(gpus: list[int] | None, measuring: bool) -> None:
    """Refuse, before any cell runs, a measurement on a host without a GPU and a GPU index this host
    does not have (counted by NVML, without starting CUDA)."""
    count = device_count()
    if measuring and not count:
        raise EnvironmentProblem(
            "sweep measures each cell on a GPU and NVML sees none on this host; `encgraph sweep --predict` predicts "
            "the cells without one"
        )
    if not gpus:
        return
    if len(set(gpus)) != len(gpus):
        raise UsageError(f"--gpus {','.join(map(str, gpus))} names a GPU twice")
    missing = [g for g in gpus if g < 0 or (count is not None and g >= count)]
    if missing:
        have = f"this host has {count} (0 to {count - 1})" if count else "indices start at 0"
        raise UsageError(f"--gpus: no GPU {missing[0]}; {have}")


def _request(cell: Cell) -> ProfileRequest:
    return ProfileRequest(model=cell.model, budgets=cell.budgets, strategy=STRATEGIES[cell.strategy])


def prepare_cells(cells: list[Cell]) -> list[Prepared]:
    """Check every cell and import its model code before any runs (UsageError on bad input)."""
    return [prepare(_request(cell), cell.capability) for cell in cells]


def outcome(
    setup: Prepared, cell: Cell, keep: Callable[[Report], T], device: Device | None = None
) -> tuple[T | None, int, str]:
    """Run one cell in this process: measure it on ``device`` (the current CUDA device by default),
    or predict it; hand its report to ``keep``. Returns what ``keep`` returned (None when the cell
    made no report), its exit code and a one-line message ("" when all was measured). A failure of
    any kind is the cell's result, never an exception."""
    try:
        if cell.capability is not None:
            from .predict import predicted_report

            return keep(predicted_report(setup, cell.capability)), int(ExitCode.OK), ""
        from .capture import measure

        report = measure(setup, device=device)  # keeps what was measured when interrupted
        kept = keep(report)
        assessment = assess(report)
        return kept, int(assessment.exit_code), "; ".join(assessment.problems)
    except EncgraphError as error:
        return None, int(error.exit_code), str(error)
    except KeyboardInterrupt:
        return None, int(ExitCode.INTERRUPTED), "interrupted before it made a report"
    except BaseException as error:  # a cell's failure, whatever it is, is the cell's result
        traceback.print_exc()
        return None, int(ExitCode.INTERNAL), f"{type(error).__name__}: {error}".splitlines()[0]


def _cell_main(setup: Prepared, cell: Cell, gpu: int | None, path: Path, status: Path, threads: int) -> None:
    """In the forked child: pin the GPU, profile or predict, write the report and a status line."""
    import torch

    from .report_io import save

    os.setpgrp()  # a terminal's Ctrl-C reaches the parent only, which interrupts each cell once

    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    torch.set_num_threads(threads)
    code, message = int(ExitCode.INTERNAL), "the cell stopped before it could report"
    try:
        _, code, message = outcome(setup, cell, lambda report: save(report, path))
    finally:
        status.write_text(json.dumps({"exit_code": code, "message": message}))
    os._exit(code)


@dataclass(frozen=True)
class _Running:
    index: int
    process: multiprocessing.process.BaseProcess
    path: Path
    status: Path
    started: float


def _finished(cell: Cell, gpu: int | None, running: _Running) -> CellResult:
    """The result of a cell whose process has ended: its status line, or how the process ended."""
    running.process.join()
    try:
        told = json.loads(running.status.read_text())
    except (OSError, ValueError):
        code = running.process.exitcode
        told = {"exit_code": code, "message": f"the cell's process ended with {code} and said nothing"}
    finally:
        running.status.unlink(missing_ok=True)
    return CellResult(
        cell,
        None if gpu is None else str(gpu),
        int(told["exit_code"]),
        running.path if running.path.is_file() else None,
        told["message"],
        time.perf_counter() - running.started,
    )


def run(
    cells: list[Cell], out: Path, gpus: list[int] | None = None, progress=None, workers: int = 1
) -> list[CellResult]:
    """Run every cell in its own forked process, one at a time per GPU of ``gpus`` (measurements),
    or ``workers`` at a time (predictions); return in cell order."""
    import torch  # imported once here, inherited by every cell

    # The parent computes nothing: with one thread it never starts OpenMP's workers, which a forked
    # child could not use (it would hang at its first parallel operator). Each cell gets them back.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    setups = prepare_cells(cells)  # each forked cell inherits its setup
    context = multiprocessing.get_context("fork")
    slots: list[int | None] = list(gpus) if gpus else [None] * workers
    # Each cell's index is, at every moment Ctrl-C can come, in ``waiting``, in ``running`` or in
    # ``results``: it leaves one only once it is in the next.
    waiting = list(range(len(cells)))
    running: dict[int, _Running] = {}  # by slot
    results: dict[int, CellResult] = {}
    try:
        while waiting or running:
            for slot, gpu in enumerate(slots):
                if slot not in running and waiting:
                    index = waiting[0]
                    cell = cells[index]
                    path, status = out / f"{cell.name}.json", out / f".{cell.name}.status"
                    status.unlink(missing_ok=True)
                    process = context.Process(
                        target=_cell_main, args=(setups[index], cell, gpu, path, status, threads), daemon=False
                    )
                    process.start()
                    running[slot] = _Running(index, process, path, status, time.perf_counter())
                    waiting.pop(0)
                    if progress:
                        where = "the CPU" if cell.predicted else "the GPU" if gpu is None else f"GPU {gpu}"
                        progress(f"cell {index + 1}/{len(cells)} {cell.name} on {where}")
            for slot, cell_run in list(running.items()):
                if not cell_run.process.is_alive():
                    results[cell_run.index] = _finished(cells[cell_run.index], slots[slot], cell_run)
                    del running[slot]
            if running:
                time.sleep(0.05)
    except KeyboardInterrupt:
        _interrupt(cells, slots, running, results)
        for index in waiting:
            results.setdefault(index, not_run(cells[index]))
    return [results[i] for i in range(len(cells))]


def not_run(cell: Cell) -> CellResult:
    """A cell that Ctrl-C kept from starting."""
    return CellResult(cell, None, int(ExitCode.INTERRUPTED), None, NOT_RUN, 0.0)


def _interrupt(cells: list[Cell], slots: list[int | None], running: dict[int, _Running], results: dict) -> None:
    """Ctrl-C: interrupt each running cell once, wait up to GRACE_S for all of them, then end any
    still running; record each one's result (a measurement interrupted reports what it measured)."""
    for cell_run in running.values():
        if cell_run.process.is_alive():
            os.kill(cell_run.process.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE_S
    for slot, cell_run in running.items():
        cell_run.process.join(max(0.0, deadline - time.monotonic()))
        if cell_run.process.is_alive():
            cell_run.process.kill()
        if cell_run.index not in results:
            results[cell_run.index] = _finished(cells[cell_run.index], slots[slot], cell_run)
