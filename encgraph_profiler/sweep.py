"""``encgraph sweep``: many profiles, models x budget ladders x strategies, one fresh process per
cell, one cell at a time on each GPU named.

The parent validates every cell and imports torch and transformers once, without ever touching
CUDA; each cell is a process forked from it, which pins itself to its GPU (CUDA_VISIBLE_DEVICES, set
before CUDA starts) and so pays only for CUDA's start-up and the measurement. A cell that fails
(out of memory, a failed capture, anything) is recorded and the sweep goes on; a capture failure
that leaves a process unusable dies with its cell.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .check import assess
from .errors import EncgraphError, ExitCode, UsageError
from .nvml import device_count
from .request import STRATEGIES, Prepared, ProfileRequest, prepare


@dataclass(frozen=True)
class Cell:
    model: str
    budgets: tuple[int, ...]
    strategy: str  # a name of request.STRATEGIES

    @property
    def name(self) -> str:
        """A file name for the cell's report."""
        model = self.model.replace("/", "--").replace("\\", "--").lstrip(".")
        return f"{model}.{'-'.join(map(str, self.budgets))}.{self.strategy}"


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    gpu: str | None  # the GPU index it ran on, or None on the default device
    exit_code: int
    report: Path | None  # the report it wrote, if any
    message: str  # one line: what went wrong, or "" when all was measured
    wall_s: float


def check_gpus(gpus: list[int] | None) -> None:
    """Refuse a GPU index this host does not have (counted by NVML, without starting CUDA)."""
    if not gpus:
        return
    if len(set(gpus)) != len(gpus):
        raise UsageError(f"--gpus {','.join(map(str, gpus))} names a GPU twice")
    count = device_count()
    missing = [g for g in gpus if g < 0 or (count is not None and g >= count)]
    if missing:
        have = f"this host has {count} (0 to {count - 1})" if count else "indices start at 0"
        raise UsageError(f"--gpus: no GPU {missing[0]}; {have}")


def _request(cell: Cell) -> ProfileRequest:
    return ProfileRequest(model=cell.model, budgets=cell.budgets, strategy=STRATEGIES[cell.strategy])


def _cell_main(setup: Prepared, gpu: int | None, path: Path, status: Path, threads: int) -> None:
    """In the forked child: pin the GPU, profile, write the report and a status line."""
    import torch

    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    torch.set_num_threads(threads)
    code, message = int(ExitCode.INTERNAL), "the cell stopped before it could report"
    try:
        from .capture import measure
        from .report_io import save

        report = measure(setup)  # prepared in the parent, inherited
        save(report, path)
        assessment = assess(report)
        code, message = int(assessment.exit_code), "; ".join(assessment.problems)
    except EncgraphError as error:
        code, message = int(error.exit_code), str(error)
    except BaseException as error:  # a cell's failure, whatever it is, is the cell's result
        code, message = int(ExitCode.INTERNAL), f"{type(error).__name__}: {error}".splitlines()[0]
        traceback.print_exc()
    finally:
        status.write_text(json.dumps({"exit_code": code, "message": message}))
    os._exit(code)


def run(cells: list[Cell], out: Path, gpus: list[int] | None = None, progress=None) -> list[CellResult]:
    """Profile every cell in its own forked process, one at a time per GPU; return in cell order."""
    import torch  # imported once here, inherited by every cell

    # The parent computes nothing: with one thread it never starts OpenMP's workers, which a forked
    # child could not use (it would hang at its first parallel operator). Each cell gets them back.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # Every cell is checked, and its model code imported, before any runs; each forked cell inherits its setup.
    setups = [prepare(_request(cell)) for cell in cells]
    context = multiprocessing.get_context("fork")
    slots: list[int | None] = list(gpus) if gpus else [None]
    waiting = list(enumerate(cells))
    running: dict[int | None, tuple] = {}
    results: dict[int, CellResult] = {}
    while waiting or running:
        for slot in slots:
            if slot not in running and waiting:
                index, cell = waiting.pop(0)
                path, status = out / f"{cell.name}.json", out / f".{cell.name}.status"
                status.unlink(missing_ok=True)
                process = context.Process(
                    target=_cell_main, args=(setups[index], slot, path, status, threads), daemon=False
                )
                process.start()
                running[slot] = (index, cell, process, path, status, time.perf_counter())
                if progress:
                    progress(
                        f"cell {index + 1}/{len(cells)} {cell.name} on "
                        f"{'GPU ' + str(slot) if slot is not None else 'the GPU'}"
                    )
        for slot, (index, cell, process, path, status, started) in list(running.items()):
            if process.is_alive():
                continue
            process.join()
            try:
                told = json.loads(status.read_text())
            except (OSError, ValueError):
                told = {
                    "exit_code": process.exitcode,
                    "message": f"the cell's process ended with {process.exitcode} and said nothing",
                }
            finally:
                status.unlink(missing_ok=True)
            results[index] = CellResult(
                cell,
                None if slot is None else str(slot),
                int(told["exit_code"]),
                path if path.is_file() else None,
                told["message"],
                time.perf_counter() - started,
            )
            del running[slot]
        if running:
            time.sleep(0.05)
    return [results[i] for i in range(len(cells))]
