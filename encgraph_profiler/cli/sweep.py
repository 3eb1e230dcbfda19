"""`encgraph sweep`: models x budget ladders x strategies, one fresh process per cell, spread over
the GPUs named, over CPU workers (--predict), or over a Ray cluster (--on ray)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ExitCode, UsageError
from ..request import DEFAULT_CAPABILITY
from . import options as o
from .output import emit_json, err, handled, info, keep, make_folder, show, warn
from .predict import _capability

if TYPE_CHECKING:
    from ..sweep import Cell, CellResult
    from ..sweep_ray import OnResult

EXIT_CODES = o.returns(
    {
        ExitCode.ENVIRONMENT: (
            "measurements on a host without a GPU, --on ray without Ray, or a Ray cluster without the GPUs asked for"
        ),
        ExitCode.CAPTURE: "a cell failed",
        ExitCode.NOT_WRITTEN: "sweep.json",
    }
)

EPILOG = o.epilog(
    """\
Examples:

  encgraph sweep --model Qwen2-VL --model gemma-3-27b --budgets 1024,2048,4096 --out sweep/

  encgraph sweep --model Qwen2-VL --budgets 1024,2048 --budgets 4096,8192 --as vllm,sglang --gpus 0,1 --out sweep/

  encgraph sweep --predict --model Qwen2-VL --budgets 1024,2048 --gpu-capability 9.0,8.0 --workers 2 --out sweep/

  RAY_ADDRESS=head:6379 encgraph sweep --on ray --model Qwen2-VL --budgets 1024,2048 --gpu-type H100,L40S --out sweep/

Each cell (one model, one ladder, one strategy) runs in a process forked from this one, which has
imported torch and transformers once and never touched CUDA; with --gpus, one cell at a time runs on
each GPU named, and each report records the GPU it ran on. --predict predicts each cell without a GPU
(as `encgraph predict`), once per --gpu-capability, --workers at a time. --on ray runs each cell as a
Ray task in a fresh worker of the cluster at RAY_ADDRESS (else of a local one): measurements on one
GPU each (once per --gpu-type, where given), predictions on one CPU each; every node needs encgraph
installed, with its ray extra. Every cell's report goes to --out
(MODEL.LADDER.STRATEGY[.ccCAPABILITY][.GPU_TYPE].json) and the merged results to --out/sweep.json.
A failed cell is recorded and the sweep goes on. Ctrl-C starts no more cells, interrupts the running
ones (a measurement keeps what it measured) and writes sweep.json with every cell, those not run too.
""",
    EXIT_CODES,
)


class Backend(str, Enum):
    local = "local"
    ray = "ray"


def _check_options(
    on: Backend, predict: bool, gpus: str | None, capabilities: str | None, gpu_types: str | None, workers: int | None
) -> None:
    """Refuse an option that does not apply to this sweep, saying what to do instead."""
    if gpus is not None and (predict or on is Backend.ray):
        raise UsageError(
            "--gpus picks GPUs of this host for measurements; "
            + ("a prediction runs on CPUs" if predict else "with --on ray, Ray places each cell (--gpu-type)")
        )
    if capabilities is not None and not predict:
        raise UsageError("--gpu-capability names the GPUs a prediction is for; add --predict")
    if gpu_types is not None and (predict or on is Backend.local):
        raise UsageError(
            "--gpu-type: "
            + ("a prediction runs on CPUs; --gpu-capability names the GPUs it is for" if predict else "needs --on ray")
        )
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}: give 1 or more cells at once")
    if workers is not None and not predict and on is Backend.local:
        raise UsageError("--workers: a local measurement runs one cell at a time on each GPU of --gpus")


def _each_once(option: str, text: str, values: list) -> list:
    if len(set(values)) != len(values):
        raise UsageError(f"{option} {text!r} names one twice; list each once")
    return values


def _gpu_types(text: str | None) -> list[str | None]:
    if text is None:
        return [None]  # any GPU
    names = [name.strip() for name in text.split(",")]
    bad = next((name for name in names if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name)), None)
    if bad is not None:
        raise UsageError(f"--gpu-type {bad!r}: give Ray accelerator types, comma-separated, e.g. H100,L40S,A100-80G")
    return _each_once("--gpu-type", text, names)


def _cells(
    models: list[str], budgets: list[str], strategies: str, predict: bool, capabilities: str | None, types: str | None
) -> list[Cell]:
    from ..ladder import parse_budgets
    from ..request import parse_strategy_names
    from ..sweep import Cell

    names = parse_strategy_names(strategies)
    ladders = [parse_budgets(text) for text in budgets]
    targets: list[tuple[int, int] | None] = [None]  # a measurement
    if predict and capabilities is not None:
        if not capabilities.strip():
            raise UsageError("--gpu-capability is empty; give one such as 9.0,8.0, or leave it out (9.0)")
        targets = [_capability(text.strip()) for text in capabilities.split(",")]
        _each_once("--gpu-capability", capabilities, targets)
    elif predict:
        targets = [DEFAULT_CAPABILITY]
    gpu_types = _gpu_types(types)
    cells = [
        Cell(m, ladder, name, target, gpu_type)
        for m in models
        for ladder in ladders
        for name in names
        for target in targets
        for gpu_type in gpu_types
    ]
    if len({c.name for c in cells}) != len(cells):
        raise UsageError("two cells are the same: list each model, ladder and strategy once")
    return cells


@contextmanager
def _progress_bar(total: int) -> Iterator[OnResult]:
    """A bar on stderr from when Ray has taken the sweep, advanced as each cell comes back, naming the last."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*columns, TextColumn("{task.description}"), console=err)
    task = bar.add_task("", total=total)

    def advance(result: CellResult | None, done: int, _total: int) -> None:
        if result is None:
            bar.start()
            return
        verdict = "ok" if result.exit_code == 0 else f"exit {result.exit_code}"
        bar.update(task, completed=done, description=f"{result.cell.name}: {verdict}")

    try:
        yield advance
    finally:
        if bar.live.is_started:
            bar.stop()


def _merged(results: list[CellResult]) -> dict:
    return {
        "cells": [
            {
                "model": r.cell.model,
                "budgets": list(r.cell.budgets),
                "strategy": r.cell.strategy,
                "gpu_capability": None if r.cell.capability is None else "{}.{}".format(*r.cell.capability),
                "gpu_type": r.cell.gpu_type,
                "node": r.node,
                "gpu": r.gpu,
                "exit_code": r.exit_code,
                "message": r.message,
                "report": r.report.name if r.report else None,
                "wall_s": round(r.wall_s, 3),
            }
            for r in results
        ]
    }


def _folder(text: str) -> Path:
    if not text.strip():
        raise typer.BadParameter("is empty; give a folder for the reports, e.g. sweep/")
    return Path(text)


OutDir = Annotated[
    Path,
    typer.Option(
        "--out",
        parser=_folder,
        metavar="FOLDER",
        help="Folder for the cells' reports and sweep.json (made if missing).",
    ),
]
Gpus = Annotated[
    str | None,
    typer.Option("--gpus", help="GPU indices to spread the cells over, e.g. 0,1,2,3. Default: the current GPU."),
]
Predict = Annotated[
    bool, typer.Option("--predict", help="Predict each cell on the CPU (as `encgraph predict`) instead.")
]
Capabilities = Annotated[
    str | None,
    typer.Option(
        "--gpu-capability", help="With --predict: compute capabilities to predict for, e.g. 9.0,8.0. Default 9.0."
    ),
]
On = Annotated[Backend, typer.Option("--on", help="local (this host), or ray (a Ray cluster).")]
GpuTypes = Annotated[
    str | None, typer.Option("--gpu-type", help="With --on ray: measure each cell on each GPU type, e.g. H100,L40S.")
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        click_type=o.WHOLE,
        help="Cells at once with --predict or --on ray. Default: one per CPU core, or what the cluster holds.",
    ),
]


def _run(
    cells: list[Cell], out_dir: Path, on: Backend, gpus: list[int] | None, workers: int | None
) -> list[CellResult]:
    """Every cell, here or on Ray, its report in ``out_dir``; in cell order."""
    import os

    from .. import sweep as local

    if on is Backend.ray:
        from .. import sweep_ray

        sweep_ray.require_ray()
        make_folder(out_dir, "--out")
        # Ray prints what its nodes report (a worker that died, a slow start) on stdout: stderr here.
        with redirect_stdout(sys.stderr), _progress_bar(len(cells)) as on_result:
            return sweep_ray.run(cells, out_dir, workers, on_result)
    make_folder(out_dir, "--out")
    at_once = (workers or os.cpu_count() or 1) if cells[0].predicted else 1  # measurements: one per GPU
    return local.run(cells, out_dir, gpus, progress=info, workers=at_once)


@handled
def sweep(
    out_dir: OutDir,
    model: o.Models,
    budgets: o.BudgetLadders,
    strategies: o.StrategyNames = "vllm",
    gpus: Gpus = None,
    predict: Predict = False,
    capabilities: Capabilities = None,
    on: On = Backend.local,
    gpu_types: GpuTypes = None,
    workers: Workers = None,
    output_format: o.OutputFormat = o.Format.table,
) -> None:
    """Profile or predict models x budget ladders x strategies, each cell in a fresh process, here or on Ray."""
    from .. import render, report_io
    from ..check import runs_exit_code
    from ..schema import PoolName
    from ..sweep import check_gpus
    from ..units import parse_int_list

    _check_options(on, predict, gpus, capabilities, gpu_types, workers)
    gpu_list = list(parse_int_list(gpus, "--gpus", example="0,1,2,3")) if gpus is not None else None
    check_gpus(gpu_list, measuring=on is Backend.local and not predict)
    results = _run(_cells(model, budgets, strategies, predict, capabilities, gpu_types), out_dir, on, gpu_list, workers)
    merged = _merged(results)
    written = keep(out_dir / "sweep.json", json.dumps(merged, indent=2) + "\n", "the merged results", "encgraph-sweep")
    if output_format is o.Format.json:
        emit_json(merged)
    else:
        pools = [
            report_io.load(r.report).pool(PoolName.ENCODER_GRAPHS).reserved_bytes if r.report else None for r in results
        ]
        show(render.sweep_table(results, pools))
    for r in results:
        if r.exit_code != 0:
            warn(f"{r.cell.name}: exit {r.exit_code}: {r.message}")
    if any(r.exit_code == ExitCode.INTERRUPTED for r in results):
        raise typer.Exit(int(ExitCode.INTERRUPTED))  # Ctrl-C: what finished is kept
    raise typer.Exit(int(runs_exit_code([r.exit_code for r in results]) or written))
