"""`encgraph sweep`: models x budget ladders x strategies, one fresh process per cell, spread over
the GPUs named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import Format, err, handled, make_folder, out, warn

EPILOG = """\
Examples:

  encgraph sweep --model Qwen2-VL --model gemma-3-27b --budgets 1024,2048,4096 --out sweep/

  encgraph sweep --model Qwen2-VL --budgets 1024,2048 --budgets 4096,8192 --as vllm,sglang --gpus 0,1 --out sweep/

Each cell (one model, one ladder, one strategy) runs in a process forked from this one, which has
imported torch and transformers once and never touched CUDA; with --gpus, one cell at a time runs on
each GPU named, and each report records the GPU it ran on. Every cell writes its report to --out
(MODEL.LADDER.STRATEGY.json) and the merged results to --out/sweep.json. A failed cell is recorded
and the sweep goes on. Exit codes: 0 every cell measured, 2 bad input, 4 a cell failed.
"""


def _table(results) -> Table:
    from .. import report_io
    from ..units import mib

    table = Table(title="Sweep")
    for name in ("model", "budgets", "strategy", "GPU", "encoder pool MiB", "seconds", "result"):
        table.add_column(name, justify="right" if name in ("encoder pool MiB", "seconds") else "left")
    for r in results:
        pool = report_io.load(r.report).pool("encoder_graphs").reserved_bytes if r.report else None
        table.add_row(r.cell.model, ",".join(map(str, r.cell.budgets)), r.cell.strategy, r.gpu or "-", mib(pool),
                      f"{r.wall_s:.1f}", "ok" if r.exit_code == 0 else f"exit {r.exit_code}: {r.message}")
    return table


@handled
def sweep(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the cells' reports and sweep.json (made if missing).")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="A model, as for profile. Repeatable.")],
    budgets: Annotated[list[str], typer.Option("--budgets", "-b", help="A budget ladder, e.g. 1024,2048,4096. Repeatable.")],
    engines: Annotated[str, typer.Option("--as", help="Strategies, comma-separated: vllm, vllm-legacy, sglang, tensorrt-llm.")] = "vllm",
    gpus: Annotated[str | None, typer.Option("--gpus", help="GPU indices to spread the cells over, e.g. 0,1,2,3. Default: the current GPU.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
) -> None:
    """Profile models x budget ladders x strategies, each cell in a fresh process, over several GPUs."""
    from ..errors import ExitCode, UsageError
    from ..ladder import parse_budgets
    from ..request import parse_strategy_names
    from ..sweep import Cell, check_gpus, run
    from ..units import parse_int_list

    strategies = parse_strategy_names(engines)
    ladders = [parse_budgets(text) for text in budgets]
    gpu_list = parse_int_list(gpus, "gpus") if gpus else None
    check_gpus(gpu_list)
    cells = [Cell(m, ladder, e) for m in model for ladder in ladders for e in strategies]
    if len({c.name for c in cells}) != len(cells):
        raise UsageError("two cells are the same: list each model, ladder and strategy once")
    make_folder(out_dir, "--out")
    results = run(cells, out_dir, gpu_list, progress=lambda line: err.print(line))
    merged = [{"model": r.cell.model, "budgets": list(r.cell.budgets), "strategy": r.cell.strategy, "gpu": r.gpu,
               "exit_code": r.exit_code, "message": r.message, "report": r.report.name if r.report else None,
               "wall_s": round(r.wall_s, 3)} for r in results]
    (out_dir / "sweep.json").write_text(json.dumps({"cells": merged}, indent=2) + "\n")
    if output_format is Format.json:
        out.print(json.dumps({"cells": merged}, indent=2), markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(_table(results))
    for r in results:
        if r.exit_code != 0:
            warn(f"{r.cell.name}: exit {r.exit_code}: {r.message}")
    raise typer.Exit(int(ExitCode.OK if all(r.exit_code == 0 for r in results) else ExitCode.CAPTURE))
