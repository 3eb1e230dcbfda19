"""`encgraph sweep`: models x budget ladders x strategies, one fresh process per cell, spread over
the GPUs named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ExitCode
from . import options as o
from .output import emit_json, handled, info, keep, make_folder, show, warn

EXIT_CODES = o.returns(
    {ExitCode.ENVIRONMENT: "", ExitCode.CAPTURE: "a cell failed", ExitCode.NOT_WRITTEN: "sweep.json"}
)

EPILOG = o.epilog(
    """\
Examples:

  encgraph sweep --model Qwen2-VL --model gemma-3-27b --budgets 1024,2048,4096 --out sweep/

  encgraph sweep --model Qwen2-VL --budgets 1024,2048 --budgets 4096,8192 --as vllm,sglang --gpus 0,1 --out sweep/

Each cell (one model, one ladder, one strategy) runs in a process forked from this one, which has
imported torch and transformers once and never touched CUDA; with --gpus, one cell at a time runs on
each GPU named, and each report records the GPU it ran on. Every cell writes its report to --out
(MODEL.LADDER.STRATEGY.json) and the merged results to --out/sweep.json. A failed cell is recorded
and the sweep goes on.
""",
    EXIT_CODES,
)


@handled
def sweep(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the cells' reports and sweep.json (made if missing).")
    ],
    model: o.Models,
    budgets: o.BudgetLadders,
    strategies: o.StrategyNames = "vllm",
    gpus: Annotated[
        str | None,
        typer.Option("--gpus", help="GPU indices to spread the cells over, e.g. 0,1,2,3. Default: the current GPU."),
    ] = None,
    output_format: o.OutputFormat = o.Format.table,
) -> None:
    """Profile models x budget ladders x strategies, each cell in a fresh process, over several GPUs."""
    from .. import render, report_io
    from ..check import runs_exit_code
    from ..errors import UsageError
    from ..ladder import parse_budgets
    from ..request import parse_strategy_names
    from ..schema import PoolName
    from ..sweep import Cell, check_gpus, run
    from ..units import parse_int_list

    names = parse_strategy_names(strategies)
    ladders = [parse_budgets(text) for text in budgets]
    gpu_list = list(parse_int_list(gpus, "--gpus", example="0,1,2,3")) if gpus is not None else None
    check_gpus(gpu_list)
    cells = [Cell(m, ladder, name) for m in model for ladder in ladders for name in names]
    if len({c.name for c in cells}) != len(cells):
        raise UsageError("two cells are the same: list each model, ladder and strategy once")
    make_folder(out_dir, "--out")
    results = run(cells, out_dir, gpu_list, progress=info)
    merged = {
        "cells": [
            {
                "model": r.cell.model,
                "budgets": list(r.cell.budgets),
                "strategy": r.cell.strategy,
                "gpu": r.gpu,
                "exit_code": r.exit_code,
                "message": r.message,
                "report": r.report.name if r.report else None,
                "wall_s": round(r.wall_s, 3),
            }
            for r in results
        ]
    }
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
    raise typer.Exit(int(runs_exit_code([r.exit_code for r in results]) or written))
