"""`encgraph profile`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import common
from .common import Format, err, handled, out, warn

EPILOG = """\
Examples:

  encgraph profile --model Qwen2-VL --budgets 1024,2048,4096

  encgraph profile --model qwen2.5-vl-7b --max-budget 8192 --json report.json

  encgraph profile --model ./my-model/config.json --budgets 4096 --baseline main.json

Budgets count vision tokens after spatial merge, as vLLM does. Dynamic-resolution towers (Qwen)
capture each budget B as k images of grid [1, m, ceil(B/k)*m]. Fixed-resolution towers (SigLIP,
CLIP) capture floor(B / tokens per image) whole images; --max-items does not apply to them.
"""


@handled
def profile(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled name, alias (Qwen2-VL), HF id or path to a config.json / model directory.")] = "qwen2-vl-7b",
    budgets: Annotated[str | None, typer.Option("--budgets", "-b", help="Token budgets, e.g. 1024,2048,4096. Default: vLLM's auto ladder.")] = None,
    max_budget: Annotated[int | None, typer.Option("--max-budget", help="Top of the auto ladder (powers of two from 64). Default 8192.")] = None,
    max_items: Annotated[int | None, typer.Option("--max-items", help="Images per captured batch. Default: min(max budget // 64, smallest budget).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="bfloat16, float16 or float32.")] = "bfloat16",
    attn: Annotated[str, typer.Option("--attn", help="Attention implementation: sdpa, eager, flash_attention_2.")] = "sdpa",
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights and dummy inputs.")] = 0,
    warmup: Annotated[int, typer.Option("--warmup", help="Eager runs per budget before capture.")] = 2,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="table, or json on stdout.")] = Format.table,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="Gate the new report against this one (as `encgraph check`).")] = None,
    max_num_seqs: common.MaxNumSeqs = 256,
    max_num_batched_tokens: common.MaxNumBatchedTokens = 8192,
    cudagraph_mode: common.CudagraphMode = "FULL_AND_PIECEWISE",
    cudagraph_capture_sizes: common.CaptureSizes = None,
    max_cudagraph_capture_size: common.MaxCaptureSize = None,
    num_speculative_tokens: common.SpecTokens = 0,
    max_loras: common.MaxLoras = 0,
    specialize_lora: common.SpecializeLora = True,
    blackwell: common.Blackwell = False,
) -> None:
    """Capture one encoder CUDA graph per budget on this GPU and report the memory each holds."""
    from ..errors import UsageError
    from ..ladder import resolve_budgets
    from ..profile import ProfileRequest

    decoder = common.decoder_settings(
        max_num_seqs, max_num_batched_tokens, cudagraph_mode, cudagraph_capture_sizes, max_cudagraph_capture_size,
        num_speculative_tokens, max_loras, specialize_lora, blackwell,
    )
    request = ProfileRequest(
        model=model, budgets=resolve_budgets(budgets, max_budget), max_items=max_items, dtype=dtype, attn=attn,
        seed=seed, warmup_iterations=warmup, decoder=decoder,
    )
    if json_path is not None and not json_path.resolve().parent.is_dir():
        raise UsageError(f"--json {json_path}: the folder {json_path.parent} does not exist; create it first")
    report = _run(request, json_path)  # profile() validates every input before any GPU work
    _show(report, output_format)
    if json_path is not None:
        err.print(f"report written to {json_path}")
    if baseline is not None:
        from .check import gate_against

        gate_against(baseline, report)


def _run(request, json_path):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import report as report_io
    from ..errors import CaptureFailure
    from ..profile import profile as run_profile

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        try:
            report = run_profile(request, progress)
        except CaptureFailure as failure:
            if failure.partial is not None and json_path is not None:
                report_io.save(failure.partial, json_path)
                err.print(f"the budgets measured before the failure are in {json_path}")
            raise
    if json_path is not None:
        report_io.save(report, json_path)
    return report


def _show(report, output_format: Format) -> None:
    from .. import render
    from ..report import to_json

    for message in report.warnings:
        warn(message)
    if output_format is Format.json:
        out.print(to_json(report), markup=False, highlight=False, soft_wrap=True, end="")
        return
    out.print(render.budget_table(report))
    out.print(render.pool_table(report))
    out.print(render.totals_line(report))
    out.print(report.graph_counts.line, markup=False)
